"""Finding DL/T 698.45 meters on a link (not wired into ``meterlink scan`` yet).

A single-meter bus answers a GET of 40010200 (通信地址) sent to the wildcard
address AAAAAAAAAAAA (通配地址, DL/T 698.45 clause 7.1 "地址域"), and the reply
frame carries the meter's own server address.  On a multi-drop bus every
meter would answer at once and the replies collide, so there listed addresses
(``--range``, ``--addresses``, the same forms as DL/T 645's) are tried one by
one.  Replies that arrive whole (a quiet adapter, a simulated bus) are each
taken.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from meterlink.core.config import Link
from meterlink.core.errors import FrameError, MeterRejected, MeterTimeout
from meterlink.drivers.dlt698 import apdu as A
from meterlink.drivers.dlt698 import frame as F
from meterlink.drivers.dlt698.data import Oad
from meterlink.drivers.dlt698.driver import Dlt698Driver
from meterlink.drivers.nameplate import scan_bus

ADDRESS_OAD = Oad(0x4001, 2, 0)
EXCHANGE_CHARS = 60  # GET 40010200 with FE preambles, about 25 + 32 characters
TURNAROUND_S = 0.100


def probe_timeout(link: Link) -> float:
    baud = link.baudrate if link.serial else 9600
    return round(EXCHANGE_CHARS * 11 / baud + TURNAROUND_S, 3)


async def _wildcard(driver: Dlt698Driver, timeout: float) -> tuple[list[str], bool]:
    """Addresses of every whole reply to the wildcard read, and whether garbage (a collision) came too."""
    request = A.GetRequestNormal(driver._next_piid(), ADDRESS_OAD)
    await driver.open()
    await driver.channel.send(F.encode_frame(F.request(F.ServerAddress.wildcard(), A.encode_apdu(request))))
    found: list[str] = []
    garbled = False
    wait = timeout
    while True:
        try:
            frame = await driver.channel.receive(F.decode, lambda f: f.from_server and not f.segmented, wait)
        except MeterTimeout as exc:
            garbled = garbled or "check" in str(exc)
            break
        except FrameError:
            garbled = True
            break
        if frame.server.address not in found:
            found.append(frame.server.address)
        wait = timeout / 2  # another meter answering the same wildcard follows at once
    return found, garbled


async def find_meters(link: Link, addresses: Sequence[str], timeout: float | None,
                      progress: Callable[[int], None], note: Callable[[str], None]) -> list[tuple[str, str]]:
    """(address, how it answered) of the meters on ``link``."""
    quick = timeout or probe_timeout(link)
    driver = Dlt698Driver(link.for_probing(quick))
    found: list[tuple[str, str]] = []
    try:
        if addresses:
            for address in addresses:
                try:
                    await driver.get(address, F.ServerAddress(address=address),
                                     A.GetRequestNormal(driver._next_piid(), ADDRESS_OAD))
                    found.append((address, "answers"))
                except MeterRejected as exc:
                    found.append((address, f"answers, with {exc}"))
                except MeterTimeout:
                    pass
                except FrameError as exc:
                    found.append((address, f"garbled answer ({exc}): check the line settings"))
                progress(len(found))
            return found
        heard, garbled = await _wildcard(driver, quick)
        progress(len(heard))
        if garbled:
            note("several meters share this bus (their answers to the wildcard read collided): "
                 "give --range or --addresses")
        elif len(heard) > 1:
            note(f"several meters share this bus: {len(heard)} answered the wildcard read whole")
        return [(a, "answers the wildcard read of 40010200") for a in heard]
    finally:
        await driver.close()


PROFILE_HINT = "dlt698-generic-3phase   # or dlt698-generic-1phase"


async def scan(link: Link, *, id_range: str | None, addresses_file: str | None, timeout: float | None,
               progress: Callable[[str, int], Any], note: Callable[[str], None]) -> list[tuple[str, str, str, str]]:
    """The plug-in's scan: (meter id, address as YAML, how it answered, profile hint) per meter found."""
    return await scan_bus(link, protocol="DL/T 698.45", broadcast="wildcard read of 40010200", hint=PROFILE_HINT,
                          id_range=id_range, addresses_file=addresses_file, timeout=timeout or probe_timeout(link),
                          progress=progress, note=note, find=find_meters)
