"""``meterlink scan``: which meters answer on a link, printed as config snippets.

With no ``--protocol`` the cheap probe goes first: one DL/T 645 read-address
broadcast (13H) settles a DL/T 645 bus in a fraction of a second; only a bus
where no DL/T 645 meter answered is then swept for Modbus unit ids.  Each probe
waits a few reply times at the link's baud rate (``--timeout`` overrides), and
progress with an ETA goes to stderr: a live bar on a terminal, a plain line
every few seconds otherwise, so a technician knows the scan is alive.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from gateway.config import Config, Link
from gateway.durations import parse_duration
from gateway.errors import MeterlinkError

PLAIN_EVERY_S = 5.0


class Progress:
    """Probes done of ``total``, found so far, and the time left, on stderr."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.found = label, total, 0, 0
        self._t0 = self._last = time.monotonic()
        self._bar = None
        if sys.stderr.isatty():
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeRemainingColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def __call__(self, found: int) -> None:
        self.done += 1
        self.found = found
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=f"{self.label}: {found} found")
            return
        now = time.monotonic()
        if now - self._last >= PLAIN_EVERY_S and self.done < self.total:
            self._last = now
            left = (now - self._t0) / self.done * (self.total - self.done)
            print(f"# {self.label}: {self.done}/{self.total} probed, {found} found, about {left:.0f} s left",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        print(f"# {self.label}: {self.done} probed in {time.monotonic() - self._t0:.1f} s, {self.found} found",
              file=sys.stderr)


def _note(text: str) -> None:
    print(f"# {text}", file=sys.stderr)


async def _scan_dlt645(link: Link, id_range: str | None, addresses_file: str | None,
                       timeout: float | None) -> list[tuple[str, str, str]]:
    from drivers.dlt645.scan import candidates, find_meters, probe_timeout

    addresses = candidates(id_range, addresses_file)
    t = timeout or probe_timeout(link)
    what = f"{len(addresses)} DL/T 645 address(es)" if addresses else "DL/T 645 read-address (13H)"
    _note(f"probing {link.id} ({link.describe()}) for {what}, {t * 1000:.0f} ms per probe")
    progress = Progress(f"{link.id} dlt645", len(addresses) or 1)
    try:
        found = await find_meters(link, addresses, t, progress, _note)
    finally:
        progress.close()
    return [(f"m-{a}", f'"{a}"', how) for a, how in found]


async def _scan_modbus(link: Link, id_range: str | None, timeout: float | None) -> list[tuple[str, str, str]]:
    from drivers.modbus.scan import find_units, parse_ids, probe_timeout

    ids = parse_ids(id_range or "1-247")
    t = timeout or probe_timeout(link)
    _note(f"probing {link.id} ({link.describe()}) for Modbus unit ids {ids[0]}-{ids[-1]}, {t * 1000:.0f} ms per probe")
    progress = Progress(f"{link.id} modbus", len(ids))
    try:
        found = await find_units(link, ids, t, progress)
    finally:
        progress.close()
    return [(f"m-{link.id}-{uid}", str(uid), how) for uid, how in found]


PROFILE_HINT = {"modbus": "eastron-sdm630   # set the profile of this meter model",
                "dlt645": "dlt645-generic-3phase   # or dlt645-generic-1phase"}


async def scan_link(cfg: Config, link_id: str, id_range: str | None, addresses_file: str | None = None, *,
                    protocol: str | None = None, timeout: str | None = None) -> int:
    """Print the meters found on ``link_id`` as config snippets; exit code 0 when any answered."""
    link = cfg.links[link_id]
    probe = parse_duration(timeout) if timeout else None
    if probe is not None and not 0 < probe <= 10:
        raise MeterlinkError(f"--timeout {timeout}: write a probe timeout between 1ms and 10s, e.g. 200ms")
    if not protocol and (addresses_file or (id_range and len(id_range.partition("-")[0]) == 12)):
        protocol = "dlt645"  # 12-digit addresses are DL/T 645's
    elif not protocol and id_range:
        protocol = "modbus"
    order = [protocol] if protocol else ["dlt645", "modbus"]
    for proto in order:
        if proto not in PROFILE_HINT:
            raise MeterlinkError(f"scan of {proto} links is not supported; scan finds modbus and dlt645 meters")
        this = dataclasses.replace(link, protocol=proto)
        if proto == "dlt645":
            found = await _scan_dlt645(this, id_range, addresses_file, probe)
        else:
            found = await _scan_modbus(this, id_range, probe)
        if found:
            if len(order) > 1 and proto == "dlt645":
                _note("DL/T 645 meters answered: Modbus not probed (add --protocol modbus to probe it too)")
            return _report(link_id, proto, found)
    return _report(link_id, order[-1], [])


def _report(link_id: str, protocol: str, found: list[tuple[str, str, str]]) -> int:
    """The meters found, as configuration snippets (id, address as YAML, how it answered); exit code."""
    for meter_id, address, how in found:
        print(f"  {meter_id}:   # {how}\n    link: {link_id}\n    protocol: {protocol}\n    address: {address}\n"
              f"    profile: {PROFILE_HINT[protocol]}")
    _note(f"{len(found)} meter(s) found" if found else
          "no meter answered: check the wiring (A/B swapped?), the line settings, or name --protocol and --range")
    return 0 if found else 1
