"""``meterlink read``: every point of some meters, once, now."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from meterlink.core.config import Config, Meter
from meterlink.core.errors import MeterlinkError
from meterlink.core.reading import Reading, decimal_text, format_ts
from meterlink.core.registry import create_driver
from meterlink.engine.scheduler import to_readings


async def _read_link(cfg: Config, link_id: str, meters: list[Meter], points: list[str] | None,
                     out: dict[str, list[Reading] | str]) -> None:
    link = cfg.links[link_id]
    driver = create_driver(link)
    try:
        await driver.open()
    except MeterlinkError as exc:
        for m in meters:
            out[m.id] = f"link {link_id} ({link.describe()}): {exc}"
        return
    try:
        for m in meters:
            wanted = [p for p in m.points if points is None or p.obis in points]
            if not wanted:
                out[m.id] = f"has none of the points {', '.join(points or [])}"
                continue
            ts = datetime.now(UTC)
            try:
                results = await driver.read(m, wanted)
            except MeterlinkError as exc:
                out[m.id] = f"{exc} (link {link_id}, {link.describe()}, address {m.address})"
                continue
            readings = to_readings(cfg.gateway.id, m, ts, results)
            out[m.id] = readings
            if readings and all(r.value is None for r in readings):
                out[m.id + "\0why"] = f"no valid value: {readings[0].error} (link {link_id}, address {m.address})"
    finally:
        await driver.close()


async def read_once(cfg: Config, meter_ids: list[str], fmt: str, points: list[str] | None) -> int:
    by_link: dict[str, list[Meter]] = {}
    for mid in meter_ids:
        m = cfg.meters[mid]
        by_link.setdefault(m.link, []).append(m)
    out: dict[str, list[Reading] | str] = {}
    await asyncio.gather(*(_read_link(cfg, lid, ms, points, out) for lid, ms in by_link.items()))
    failed = 0
    rows: list[Reading] = []
    for mid in meter_ids:
        result = out.get(mid, "not read")
        if isinstance(result, str):
            failed += 1
            print(f"{mid}: {result}", file=sys.stderr)
        else:
            rows.extend(result)
            why = out.get(mid + "\0why")
            if isinstance(why, str):
                failed += 1
                print(f"{mid}: {why}", file=sys.stderr)
    if fmt == "json":
        sys.stdout.write("".join(r.to_json() + "\n" for r in rows))
    else:
        _table(rows)
    sys.stdout.flush()
    return 1 if failed else 0


def _table(rows: list[Reading]) -> None:
    header = ("meter", "obis", "name", "value", "unit", "quality")
    lines = [header] + [(r.meter, r.obis, r.name, "-" if r.value is None else decimal_text(r.value), r.unit,
                         r.quality.value if r.error is None else f"{r.quality.value}: {r.error}") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=False))]
        print("  ".join([*cells, line[-1]]))
    if rows:
        print(f"read at {format_ts(rows[0].ts)}")


async def sync_once(cfg: Config, meter_ids: list[str]) -> int:
    """``meterlink sync-time``: one guarded time sync per meter, results as JSON lines."""
    import getpass
    import json

    from meterlink.engine.timesync import sync_time

    failed = 0
    by_link: dict[str, list[Meter]] = {}
    for mid in meter_ids:
        by_link.setdefault(cfg.meters[mid].link, []).append(cfg.meters[mid])
    for link_id, meters in by_link.items():
        driver = create_driver(cfg.links[link_id])
        try:
            await driver.open()
            for m in meters:
                try:
                    result = await sync_time(driver, m, requester=f"cli:{getpass.getuser()}")
                except MeterlinkError as exc:
                    failed += 1
                    print(f"{m.id}: {exc}", file=sys.stderr)
                    continue
                print(json.dumps(result))
                if not result["synced"] and "within tolerance" not in str(result.get("reason")):
                    failed += 1
        except MeterlinkError as exc:
            failed += len(meters)
            print(f"link {link_id}: {exc}", file=sys.stderr)
        finally:
            await driver.close()
    return 1 if failed else 0
