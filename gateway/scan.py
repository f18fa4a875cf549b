"""``meterlink scan``: which addresses answer on a link, printed as config snippets."""

from __future__ import annotations

import sys
from pathlib import Path

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


async def scan_link(cfg: Config, link_id: str, id_range: str | None, addresses_file: str | None = None) -> int:
    link = cfg.links[link_id]
    if link.protocol == "dlt645":
        return await scan_dlt645(cfg, link_id, id_range, addresses_file)
    if link.protocol != "modbus":
        raise MeterlinkError(f"scan of {link.protocol} links is not supported by this build yet")
    ids = _parse_range(id_range or "1-247")
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
    return _report(link_id, "modbus", [(f"m-{link_id}-{uid}", str(uid), how) for uid, how in found],
                   "eastron-sdm630   # set the profile of this meter model")


def _dlt645_candidates(id_range: str | None, addresses_file: str | None) -> list[str]:
    out: list[str] = []
    if addresses_file:
        try:
            lines = Path(addresses_file).read_text(encoding="utf-8").split()
        except OSError as exc:
            raise MeterlinkError(f"--addresses {addresses_file}: {exc.strerror}") from None
        for a in lines:
            if not (len(a) == 12 and a.isdigit()):
                raise MeterlinkError(f"--addresses {addresses_file}: {a!r} is not a 12-digit address")
            out.append(a)
    if id_range:
        lo, _, hi = id_range.partition("-")
        if not (len(lo) == 12 and lo.isdigit() and len(hi or lo) == 12 and (hi or lo).isdigit()):
            raise MeterlinkError(f"--range {id_range!r}: write 12-digit addresses, e.g. 000000000001-000000000032")
        a, b = int(lo), int(hi or lo)
        if not 0 <= b - a < 10000:
            raise MeterlinkError(f"--range {id_range!r}: at most 10,000 addresses, in increasing order")
        out.extend(f"{n:012d}" for n in range(a, b + 1))
    return out


async def scan_dlt645(cfg: Config, link_id: str, id_range: str | None, addresses_file: str | None) -> int:
    """13H to AAAAAAAAAAAA finds a single meter; for a multi-drop bus, listed addresses are tried with 04000401."""
    from drivers.dlt645 import codec
    from drivers.dlt645.driver import Dlt645Driver
    from gateway.errors import FrameError, MeterRejected

    link = cfg.links[link_id]
    driver = create_driver(link)
    assert isinstance(driver, Dlt645Driver)
    candidates = _dlt645_candidates(id_range, addresses_file)
    found: list[tuple[str, str]] = []
    await driver.open()
    try:
        if not candidates:
            print(f"# asking {link_id} ({link.describe()}) for its meter's address (13H, single-meter bus)",
                  file=sys.stderr)
            try:
                reply = await driver.request(codec.read_address_request(), codec.WILDCARD_ADDRESS,
                                             codec.Function.READ_ADDRESS)
                found.append((codec.parse_read_address_reply(reply), "answered the read-address request"))
            except MeterTimeout:
                pass
            except FrameError as exc:
                print(f"# garbled answer ({exc}): several meters on the bus? try --range or --addresses",
                      file=sys.stderr)
        else:
            print(f"# trying {len(candidates)} address(es) on {link_id} ({link.describe()})", file=sys.stderr)
            for address in candidates:
                try:
                    await driver.read_di(address, "04000401")
                    found.append((address, "answered"))
                except MeterRejected as exc:
                    found.append((address, f"answered with {exc}"))
                except MeterTimeout:
                    continue
                except FrameError as exc:
                    found.append((address, f"garbled answer: {exc}"))
    finally:
        await driver.close()
    return _report(link_id, "dlt645", [(f"m-{a}", f'"{a}"', how) for a, how in found],
                   "dlt645-generic-3phase   # or dlt645-generic-1phase")


def _report(link_id: str, protocol: str, found: list[tuple[str, str, str]], profile: str) -> int:
    """The meters found, as configuration snippets (id, address as YAML, how it answered); exit code."""
    for meter_id, address, how in found:
        print(f"  {meter_id}:   # {how}\n    link: {link_id}\n    protocol: {protocol}\n    address: {address}\n"
              f"    profile: {profile}")
    print(f"# {len(found)} meter(s) found", file=sys.stderr)
    return 0 if found else 1
