"""Which built-in profile a Modbus meter most likely needs, from the registers that name its model.

``meterlink scan`` finds unit ids; a technician then has to know each meter's
model to pick a profile.  Several makers keep a model code in a fixed
register, so after a unit answered, the scan reads those few registers and
suggests a profile.  This module is the pure half: a table of probes (what to
read, how to decode it, which code means which profile, and where that is
documented) and the decision from the answers.  It does no I/O: the caller
passes ``read_registers(function, address, count)``, an awaitable that
returns the register words or raises :class:`MeterlinkError`.

A suggestion is only ever a hint for the snippet's comment and ``profile:``
line: a code that is not in the table suggests nothing (the generic hint
stays), because a wrong profile reads wrong values as good.

Meters without an identifying register here: the CHINT DTSU666 (none of the
public maps read -- volkszaehler/mbmd dtsu666.go, cg-ite/dtsu666-mqtt-gateway,
elfabriceu/DTSU666-Modbus -- has a model-code register; its 0x0000 block holds
settings such as IrAt/UrAt), and the Eastron SDM120 (no meter code for it was
found documented; nmakel/sdm_modbus lists only its serial number at 0xFC00).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from meterlink.core.errors import LinkError, MeterlinkError

ReadRegisters = Callable[[str, int, int], Awaitable[Sequence[int]]]


@dataclass(frozen=True)
class Probe:
    """One identifying register of one maker, and the codes it may hold."""

    maker: str
    function: str                 # "holding" (FC 03) or "input" (FC 04)
    register: int                 # 0-based protocol address
    count: int                    # registers to read
    decode: str                   # "uint16": first word; "uint32": two words, high word first; "ascii": 2 chars/word
    models: Mapping[int | str, tuple[str, str]]  # decoded code -> (model name, built-in profile)
    source: str


@dataclass(frozen=True)
class Identification:
    profile: str
    model: str
    probe: Probe
    code: int | str

    def describe(self) -> str:
        """For the snippet's comment: what was read, where, and that it is a suggestion."""
        code = f"{self.code:#06x}" if isinstance(self.code, int) else repr(self.code)
        return (f"{self.probe.maker} {self.model}: model code {code} in {self.probe.function} register "
                f"{self.probe.register:#06x} (suggested; check the nameplate)")


PROBES: tuple[Probe, ...] = (
    Probe(
        maker="Eastron", function="holding", register=0xFC02, count=1, decode="uint16",
        # 112 = 0x0070 and 121 = 0x0079 both name the SDM630-Modbus V2
        models={0x0070: ("SDM630-Modbus V2", "eastron-sdm630"), 0x0079: ("SDM630-Modbus V2", "eastron-sdm630")},
        source=("community VenusOS module 'Eastron SDM630-Modbus v2' for victronenergy/dbus-modbus-client: "
                "ModelRegister(Reg_u16(0xfc02)), models 112 and 121 = SDM630Modbusv2 (first word of the 32-bit "
                "meter-code register; its sibling SDM230 module cites the Eastron SDM630MCT-ML User Manual V1.2 "
                "for the meter code at holding 0xFC02)"),
    ),
    Probe(
        maker="ABB", function="holding", register=0x8960, count=2, decode="ascii",
        models={"B21 ": ("B21", "abb-b21"), "B23 ": ("B23", "abb-b23"), "B24 ": ("B24", "abb-b23")},
        source=("victronenergy/dbus-modbus-client abb.py @ 026a3606204871de1af5b408ee9265f8dadb5910: "
                "ModelRegister(Reg_u32b(0x8960)), 0x42323120 'B21 ' (1-phase), 0x42323320 'B23 ', "
                "0x42323420 'B24 ' (3-phase, same map as B23)"),
    ),
    Probe(
        maker="Carlo Gavazzi", function="holding", register=0x000B, count=1, decode="uint16",
        models={code: (name, "carlo-gavazzi-em24") for code, name in (
            (1648, "EM24DINAV23XE1X"), (1649, "EM24DINAV23XE1PFA"), (1650, "EM24DINAV23XE1PFB"),
            (1651, "EM24DINAV53XE1X"), (1652, "EM24DINAV53XE1PFA"), (1653, "EM24DINAV53XE1PFB"))},
        source=("victronenergy/dbus-modbus-client carlo_gavazzi.py @ 08361f485c71cb315664068f69741af817759ea4: "
                "ModelRegister(Reg_u16(0x000b)), EM24 Ethernet codes 1648-1653 (other EM24 variants' codes are "
                "not listed there, so they get the generic hint)"),
    ),
)


def decode_code(probe: Probe, words: Sequence[int]) -> int | str | None:
    """The code the words hold as the probe reads it; None when the answer is too short to hold one."""
    if len(words) < probe.count:
        return None
    if probe.decode == "uint16":
        return words[0] & 0xFFFF
    if probe.decode == "uint32":
        return (words[0] & 0xFFFF) << 16 | (words[1] & 0xFFFF)
    if probe.decode == "ascii":
        raw = b"".join((w & 0xFFFF).to_bytes(2, "big") for w in words[:probe.count])
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            return None
    raise ValueError(f"probe {probe.maker} {probe.register:#06x}: unknown decode {probe.decode!r}")


def match(probe: Probe, words: Sequence[int]) -> Identification | None:
    """The identification the words of one probe give, or None when the code is not in its table."""
    code = decode_code(probe, words)
    if code is None or code not in probe.models:
        return None
    model, profile = probe.models[code]
    return Identification(profile=profile, model=model, probe=probe, code=code)


async def identify(read_registers: ReadRegisters, probes: Sequence[Probe] = PROBES) -> Identification | None:
    """Try each probe in turn; the first known code wins.  A refused or silent register just means "not this maker".

    A :class:`LinkError` (the link itself went away) is not a no: it is raised.
    """
    for probe in probes:
        try:
            words = await read_registers(probe.function, probe.register, probe.count)
        except LinkError:
            raise
        except MeterlinkError:
            continue
        found = match(probe, words)
        if found is not None:
            return found
    return None


async def suggest_profile(read_registers: ReadRegisters) -> str | None:
    """The built-in profile the meter's identifying registers point to, or None."""
    found = await identify(read_registers)
    return found.profile if found else None


def identity_registers(profile: str) -> dict[int, int]:
    """Holding registers a meter of ``profile`` answers to its maker's probe (for the simulator); {} when none is known."""
    for probe in PROBES:
        for code, (_model, prof) in probe.models.items():
            if prof != profile:
                continue
            if isinstance(code, str):
                raw = code.encode("ascii").ljust(2 * probe.count, b"\0")
                words = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, 2 * probe.count, 2)]
            elif probe.decode == "uint32":
                words = [code >> 16 & 0xFFFF, code & 0xFFFF]
            else:
                words = [code] + [0] * (probe.count - 1)
            return {probe.register + i: w for i, w in enumerate(words)}
    return {}
