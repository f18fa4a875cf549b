"""Finding Modbus meters on a link: which unit ids answer a one-register read.

A probe reads holding register 0 of one unit id.  Any answer counts, an
exception reply included (a meter that does not map register 0 still says
"illegal data address" in its own voice), so the meter is described neutrally
("answers: unit 3").  A probe waits a few reply times at the link's baud rate,
not the link's poll timeout: 247 silent ids at 1 s each would take four
minutes, at 9600 baud they take about 20 s.  TCP links are probed over a few
connections at once, where the device server accepts them.

After a unit answered, the same connection reads the few registers in which
some makers keep a model code (``identify.PROBES``); a known code puts that
profile into the snippet with a comment saying where it was read, otherwise the
generic hint stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from meterlink.core.config import Link, Meter
from meterlink.core.errors import LinkError, MeterlinkError, MeterRejected, MeterTimeout
from meterlink.drivers.modbus.driver import ModbusDriver
from meterlink.drivers.modbus.identify import identify
from meterlink.drivers.modbus.points import ModbusPoint
from meterlink.drivers.modbus.schema import ModbusMeterConfig

PROBE = ModbusPoint(obis="0.0.96.1.0.255", name="probe", unit="", interval=60, register=0, function="holding",
                    type="uint16")
PROFILE_HINT = "eastron-sdm630   # set the profile of this meter model"
# request 8 + reply 7 characters, two t3.5 silences, and 50 ms for the meter to turn around
PROBE_CHARS = 8 + 7 + 7
TURNAROUND_S = 0.050
TCP_PROBE_TIMEOUT_S = 0.3
TCP_CONNECTIONS = 4


def probe_timeout(link: Link) -> float:
    """A few reply times at the link's speed: long enough for a meter, short for 247 silent ids."""
    if link.serial or link.config.framing == "rtu":
        baud = link.baudrate if link.serial else 9600
        return round(PROBE_CHARS * 11 / baud + TURNAROUND_S, 3)
    return TCP_PROBE_TIMEOUT_S


def parse_ids(text: str) -> list[int]:
    ids: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise MeterlinkError(f"--range {text!r}: write unit ids like 1-32 or 1,5,7") from None
        if not (1 <= a <= b <= 247):
            raise MeterlinkError(f"--range {text!r}: unit ids are 1-247")
        ids.extend(range(a, b + 1))
    return ids


async def _probe(driver: ModbusDriver, link: Link, uid: int) -> str | None:
    meter = Meter(id=f"probe-{uid}", link=link.id, protocol="modbus", address=uid, points=(PROBE,),
                  config=ModbusMeterConfig(link=link.id, protocol="modbus", address=uid))
    try:
        await driver.read(meter, [PROBE])
    except MeterTimeout:
        return None
    except LinkError:
        raise
    except MeterlinkError as exc:
        return f"garbled answer at unit {uid} ({exc}): check the line settings, or two meters share this id"
    return f"answers: unit {uid}"


async def read_raw(driver: ModbusDriver, link: Link, uid: int, function: str, address: int,
                   count: int) -> list[int]:
    """Register words of one unit through the driver (one block of uint16 points); a refusal raises MeterRejected."""
    points = tuple(ModbusPoint(obis=f"0.0.96.1.{i}.255", name=f"word{i}", unit="", interval=60, register=address + i,
                               function=function, type="uint16") for i in range(count))  # type: ignore[arg-type]
    meter = Meter(id=f"identify-{uid}", link=link.id, protocol="modbus", address=uid, points=points,
                  config=ModbusMeterConfig(link=link.id, protocol="modbus", address=uid))
    results = await driver.read(meter, list(points))
    bad = next((r for r in results if r.value is None), None)
    if bad is not None:
        raise MeterRejected(bad.error or "no value")
    return [int(r.value) for r in sorted(results, key=lambda r: r.point.register or 0)]  # type: ignore[arg-type]


async def _hint(driver: ModbusDriver, link: Link, uid: int) -> str:
    """The snippet's profile line: the identified profile, or the generic hint."""
    found = await identify(lambda fn, address, count: read_raw(driver, link, uid, fn, address, count))
    return f"{found.profile}   # {found.describe()}" if found else PROFILE_HINT


async def find_units(link: Link, ids: Sequence[int], timeout: float | None,
                     progress: Callable[[int], None]) -> list[tuple[int, str, str]]:
    """(unit id, how it answered, profile hint) per id in ``ids`` that answered; ``progress(found)`` after each."""
    quick = link.for_probing(timeout or probe_timeout(link))
    tcp = not link.serial
    found: list[tuple[int, str, str]] = []
    todo: asyncio.Queue[int] = asyncio.Queue()
    for uid in ids:
        todo.put_nowait(uid)

    async def worker(driver: ModbusDriver) -> None:
        try:
            while not todo.empty():
                uid = todo.get_nowait()
                how = await _probe(driver, quick, uid)
                if how:
                    found.append((uid, how, await _hint(driver, quick, uid) if how.startswith("answers") else
                                  PROFILE_HINT))
                progress(len(found))
        finally:
            await driver.close()

    first = ModbusDriver(quick)
    await first.open()
    drivers = [first]
    if tcp:  # more connections where the device server takes them; one is enough where it does not
        for _ in range(TCP_CONNECTIONS - 1):
            extra = ModbusDriver(quick)
            try:
                await extra.open()
            except MeterlinkError:
                break
            drivers.append(extra)
    await asyncio.gather(*(worker(d) for d in drivers))
    return sorted(found)


async def scan(link: Link, *, id_range: str | None, addresses_file: str | None, timeout: float | None,
               progress: Callable[[str, int], Any], note: Callable[[str], None]) -> list[tuple[str, str, str, str]]:
    """The plug-in's scan: (meter id, address as YAML, how it answered, profile hint) per meter found."""
    if addresses_file:
        raise MeterlinkError("--addresses lists DL/T 645 addresses; Modbus takes --range 1-32 or 1,5,7")
    ids = parse_ids(id_range or "1-247")
    t = timeout or probe_timeout(link)
    note(f"probing {link.id} ({link.describe()}) for Modbus unit ids {ids[0]}-{ids[-1]}, {t * 1000:.0f} ms per probe")
    bar = progress(f"{link.id} modbus", len(ids))
    try:
        found = await find_units(link, ids, t, bar)
    finally:
        bar.close()
    return [(f"m-{link.id}-{uid}", str(uid), how, hint) for uid, how, hint in found]
