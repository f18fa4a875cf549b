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

from meterlink.core.config import Config
from meterlink.core.durations import parse_duration
from meterlink.core.errors import MeterlinkError
from meterlink.core.registry import load, protocols

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


async def scan_link(cfg: Config, link_id: str, id_range: str | None, addresses_file: str | None = None, *,
                    protocol: str | None = None, timeout: str | None = None) -> int:
    """Print the meters found on ``link_id`` as config snippets; exit code 0 when any answered.

    With no ``protocol`` every installed protocol that can scan is tried, cheapest first (its
    ``scan_order``: one DL/T 645 broadcast settles a bus in a fraction of a second, 247 Modbus
    ids take seconds), until one finds meters.
    """
    link = cfg.links[link_id]
    probe = parse_duration(timeout) if timeout else None
    if probe is not None and not 0 < probe <= 10:
        raise MeterlinkError(f"--timeout {timeout}: write a probe timeout between 1ms and 10s, e.g. 200ms")
    scanners = {name: p for name, p in protocols().items() if p.scan}
    if protocol is not None and protocol not in scanners:
        raise MeterlinkError(f"scan of {protocol} links is not supported; scan finds {', '.join(scanners)} meters")
    order = [protocol] if protocol else sorted(scanners, key=lambda n: scanners[n].scan_order)
    tried: list[str] = []
    for name in order:
        plugin = scanners[name]
        scan = load(plugin.scan)  # type: ignore[arg-type]
        try:
            found = await scan(dataclasses.replace(link, protocol=name, protocols=(name,), mixed=False),
                               id_range=id_range, addresses_file=addresses_file, timeout=probe,
                               progress=Progress, note=_note)
        except MeterlinkError:
            if protocol is not None or not (id_range or addresses_file):
                raise
            continue  # the range is written for another protocol's addresses
        tried.append(name)
        if found:
            rest = [n for n in order if n not in tried]
            if rest and protocol is None:
                _note(f"{plugin.title} meters answered: {', '.join(rest)} not probed (name --protocol to probe it)")
            return _report(link_id, name, found)
    return _report(link_id, tried[-1] if tried else order[-1], [])


def _report(link_id: str, protocol: str, found: list[tuple[str, str, str, str]]) -> int:
    """The meters found, as configuration snippets (id, address as YAML, how it answered, profile); exit code."""
    for meter_id, address, how, profile in found:
        print(f"  {meter_id}:   # {how}\n    link: {link_id}\n    protocol: {protocol}\n    address: {address}\n"
              f"    profile: {profile}")
    _note(f"{len(found)} meter(s) found" if found else
          "no meter answered: check the wiring (A/B swapped?), the line settings, or name --protocol and --range")
    return 0 if found else 1
