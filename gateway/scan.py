"""``meterlink scan``: which addresses answer on a link, printed as config snippets."""

from __future__ import annotations

import sys

from drivers import create_driver
from gateway.config import Config, Meter, MeterConfig, Point
from gateway.errors import MeterlinkError, MeterTimeout


def _parse_range(text: str) -> list[int]:
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


async def scan_link(cfg: Config, link_id: str, id_range: str) -> int:
    link = cfg.links[link_id]
    if link.protocol != "modbus":
        raise MeterlinkError(f"scan of {link.protocol} links is not supported by this build yet")
    ids = _parse_range(id_range)
    driver = create_driver(link)
    await driver.open()
    probe = Point(obis="0.0.96.1.0.255", name="probe", unit="", interval=60, register=0, function="holding",
                  type="uint16")
    found: list[tuple[int, str]] = []
    print(f"# scanning {link_id} ({link.describe()}), unit ids {ids[0]}-{ids[-1]}", file=sys.stderr)
    try:
        for uid in ids:
            mc = MeterConfig(link=link_id, protocol="modbus", address=uid)
            meter = Meter(id=f"probe-{uid}", link=link_id, protocol="modbus", address=uid, points=(probe,),
                          config=mc)
            try:
                (result,) = await driver.read(meter, [probe])
                found.append((uid, f"answered with {result.error}" if result.error else "answered"))
            except MeterTimeout:
                continue
            except MeterlinkError as exc:
                found.append((uid, f"garbled answer: {exc}"))
    finally:
        await driver.close()
    for uid, how in found:
        print(f"  m-{link_id}-{uid}:   # {how}\n    link: {link_id}\n    protocol: modbus\n    address: {uid}\n"
              f"    profile: eastron-sdm630   # set the profile of this meter model")
    print(f"# {len(found)} meter(s) found", file=sys.stderr)
    return 0 if found else 1
