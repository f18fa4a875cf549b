"""Finding DL/T 645 meters on a link.

A single-meter bus answers "read communication address" (13H) sent to the
all-wildcard address AAAAAAAAAAAA.  On a multi-drop bus every meter answers it
at once: on a real RS-485 line the replies collide into garbage, so the scan
says that several meters share the bus and searches by abbreviated address
(DL/T 645-2007 4.1.3: "地址域支持缩位寻址，即从若干低位起，剩余高位补AAH作为通配符进行读表操作"):
a read of 04000401 (communication address) to ``AAAAAAAAAAdd`` is answered
only by the meters whose address ends in ``dd``, and a collision there is
resolved one byte further up.  Replies that arrive whole (a quiet adapter, a
simulated bus) are each taken at once.  Listed addresses (``--range``,
``--addresses``) are tried one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from meterlink.core.config import Link
from meterlink.core.errors import FrameError, MeterRejected, MeterTimeout
from meterlink.drivers.dlt645 import codec
from meterlink.drivers.dlt645.driver import Dlt645Driver
from meterlink.drivers.nameplate import scan_bus

# a read-address exchange is about 16 + 18 characters with FE preambles; 100 ms for the meter to turn around
EXCHANGE_CHARS = 40
TURNAROUND_S = 0.100
ADDRESS_DI = "04000401"


def probe_timeout(link: Link) -> float:
    baud = link.baudrate if link.serial else 9600
    return round(EXCHANGE_CHARS * 11 / baud + TURNAROUND_S, 3)


async def _replies(driver: Dlt645Driver, frame: codec.Frame, function: int, timeout: float) -> tuple[list[str], bool]:
    """Addresses of every whole reply to ``frame`` within ``timeout``, and whether garbage (a collision) came too."""
    channel = driver.channel
    await driver.open()
    await channel.send(codec.encode_frame(frame))
    found: list[str] = []
    garbled = False
    wait = timeout
    while True:
        try:
            reply = await channel.receive(codec.decode, lambda f: f.is_reply and f.function == function, wait)
        except MeterTimeout as exc:
            garbled = garbled or "checksum" in str(exc) or "garbled" in str(exc)
            break
        except FrameError:
            garbled = True
            break
        if reply.address not in found:
            found.append(reply.address)
        wait = timeout / 2  # another meter answering the same broadcast follows at once
    return found, garbled


async def find_meters(link: Link, addresses: Sequence[str], timeout: float | None,
                      progress: Callable[[int], None], note: Callable[[str], None]) -> list[tuple[str, str]]:
    """(address, how it answered) of the meters on ``link``."""
    quick = timeout or probe_timeout(link)
    driver = Dlt645Driver(link.for_probing(quick))
    found: list[tuple[str, str]] = []
    try:
        if addresses:
            for address in addresses:
                try:
                    await driver.read_di(address, ADDRESS_DI)
                    found.append((address, "answers"))
                except MeterRejected as exc:
                    found.append((address, f"answers, with {exc}"))
                except MeterTimeout:
                    pass
                except FrameError as exc:
                    found.append((address, f"garbled answer ({exc}): check the line settings"))
                progress(len(found))
            return found
        heard, garbled = await _replies(driver, codec.read_address_request(), codec.Function.READ_ADDRESS, quick)
        progress(len(heard))
        if not garbled:
            if len(heard) > 1:
                note(f"several meters share this bus: {len(heard)} answered the read-address request whole")
            return [(a, "answers the read-address request (13H)") for a in heard]
        note("several meters share this bus (their answers to the read-address request collided); "
             "searching by abbreviated address, or give --range / --addresses")
        seen = {a: "answers the read-address request (13H)" for a in heard}
        await _search(driver, "", quick, seen, progress)
        return sorted(seen.items())
    finally:
        await driver.close()


async def _search(driver: Dlt645Driver, low: str, timeout: float, seen: dict[str, str],
                  progress: Callable[[int], None]) -> None:
    """Every meter whose address ends in ``low``, one BCD byte further up per collision."""
    for byte in range(100):
        suffix = f"{byte:02d}{low}"
        pattern = "AA" * (6 - len(suffix) // 2) + suffix
        heard, garbled = await _replies(driver, codec.read_request(pattern, ADDRESS_DI), codec.Function.READ_DATA,
                                        timeout)
        for a in heard:
            seen.setdefault(a, f"answers at {pattern} (abbreviated address)")
        progress(len(seen))
        if (garbled or len(heard) > 1) and len(suffix) < 12:
            await _search(driver, suffix, timeout, seen, progress)


PROFILE_HINT = "dlt645-generic-3phase   # or dlt645-generic-1phase, dlt645-1997-generic"


async def scan(link: Link, *, id_range: str | None, addresses_file: str | None, timeout: float | None,
               progress: Callable[[str, int], Any], note: Callable[[str], None]) -> list[tuple[str, str, str, str]]:
    """The plug-in's scan: (meter id, address as YAML, how it answered, profile hint) per meter found."""
    return await scan_bus(link, protocol="DL/T 645", broadcast="read-address (13H)", hint=PROFILE_HINT, id_range=id_range,
                          addresses_file=addresses_file, timeout=timeout or probe_timeout(link), progress=progress,
                          note=note, find=find_meters)
