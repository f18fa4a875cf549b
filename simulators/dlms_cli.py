"""``meterlink simulate dlms ...``: simulated DLMS/COSEM meters on a pty or a TCP port, polled or pushing."""

from __future__ import annotations

import argparse
import asyncio
import sys

from meterlink.core.config import profile_points
from meterlink.core.config.profiles import ProfileError, load_profile
from meterlink.core.durations import parse_duration
from meterlink.core.meterclock import check_zone
from meterlink.simulators.dlms_meter import SimMeter
from meterlink.simulators.faults import FaultPlan, parse_fault
from meterlink.simulators.serve import PtyServer, Reply, add_line_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    m = sub.add_parser("dlms", help="DLMS/COSEM meters: HDLC (pty or TCP), IEC 62056-47 wrapper (TCP), push (pty)")
    where = m.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal (prints its path)")
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT (0: any free port)")
    framing = m.add_mutually_exclusive_group()
    framing.add_argument("--hdlc", action="store_true", help="HDLC framing (default on a pty)")
    framing.add_argument("--wrapper", action="store_true", help="IEC 62056-47 wrapper (default on TCP)")
    m.add_argument("--push", action="store_true", help="with --pty: push DataNotifications instead of answering")
    m.add_argument("--push-interval", default="2s", help="time between pushed notifications (default 2s)")
    m.add_argument("--push-gbt", type=int, default=0, metavar="BYTES",
                   help="wrap pushed notifications in general-block-transfer blocks of BYTES")
    m.add_argument("--push-cipher", action="store_true", help="cipher pushed notifications (--enc-key, --auth-key)")
    m.add_argument("--link", help="with --pty: also make this symlink to the pty")
    m.add_argument("--profile", default="dlms-generic-3phase", help="built-in profile name or profile file")
    m.add_argument("--auth", choices=("none", "lls", "hls-gmac"), default="none",
                   help="what the management client (SAP 1) must use; the public client (16) always uses none")
    m.add_argument("--password", default="12345678", help="the LLS password (default 12345678)")
    m.add_argument("--enc-key", default="000102030405060708090A0B0C0D0E0F", help="encryption key, 32 hex digits")
    m.add_argument("--auth-key", default="D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF", help="authentication key, 32 hex digits")
    m.add_argument("--system-title", default="53494D0000000001", help="the meter's system title, 16 hex digits")
    m.add_argument("--logical", type=int, default=1, help="logical device (server upper address / wrapper wPort)")
    m.add_argument("--physical", type=int, action="append",
                   help="physical (lower HDLC) address; repeat for several meters on one bus (default 17)")
    m.add_argument("--no-physical", action="store_true", help="HDLC server address without a lower address")
    m.add_argument("--serial", default="12345678", help="the serial number (0.0.96.1.0.255)")
    m.add_argument("--clock-offset", default="0", help="the meter's clock runs this far ahead of real time, e.g. "
                                                        "90s; behind: --clock-offset=-2h")
    m.add_argument("--clock-start", help="the meter's time at start, ISO 8601 (e.g. 2026-01-05T10:00:00Z)")
    m.add_argument("--time-speed", type=float, default=1.0, help="meter seconds per real second (default 1)")
    m.add_argument("--utc-offset", type=int, default=0, help="the meter's local time zone in minutes east of UTC")
    m.add_argument("--zone", help="the meter keeps wall time in this IANA zone and sends date-times without a "
                                  "deviation (\"not specified\"), e.g. Asia/Shanghai")
    m.add_argument("--days", type=int, default=10, help="days of load profile the meter keeps (default 10)")
    m.add_argument("--max-pdu", type=int, default=512, help="the meter's maximum APDU size (block transfer above)")
    m.add_argument("--max-info", type=int, default=128, help="HDLC maximum information field length")
    m.add_argument("--no-with-list", action="store_true", help="the meter does not offer GET-with-list")
    m.add_argument("--no-general-protection", action="store_true",
                   help="the meter does not grant general-protection: ciphered requests must be glo-get/glo-action")
    m.add_argument("--drop-after", type=int, metavar="N", help="drop the association after N GET requests")
    m.add_argument("--missing", action="append", default=[], metavar="OBIS", help="an object the meter lacks")
    m.add_argument("--fault", action="append", default=[], metavar="KIND[:P][@ADDRESS]",
                   help="inject a fault: silent|late|crc|exception|truncate|garbage, probability P, one meter "
                        "(ADDRESS: logical/physical, e.g. 1/17)")
    m.add_argument("--late-delay", default="2s", help="how late a 'late' fault answers (default 2s)")
    m.add_argument("--freeze", action="store_true", help="values and clock do not change (exact comparisons)")
    m.add_argument("--seed", type=int, default=1)
    add_line_arguments(m)
    m.set_defaults(sim_run=run)


def run(args: argparse.Namespace) -> int:
    from meterlink.simulators.dlms_meter import parse_instant

    try:
        faults = FaultPlan([parse_fault(f) for f in args.fault])
        late = parse_duration(args.late_delay)
        offset = _signed_duration(args.clock_offset)
        interval = parse_duration(args.push_interval)
        start = parse_instant(args.clock_start) if args.clock_start else None
        load_profile(args.profile)
        if args.zone is not None:
            check_zone(args.zone)
        points = profile_points(args.profile)
        keys = {"enc_key": bytes.fromhex(args.enc_key), "auth_key": bytes.fromhex(args.auth_key)}
        title = bytes.fromhex(args.system_title)
        if len(title) != 8 or any(len(k) != 16 for k in keys.values()):
            raise ValueError("keys have 16 bytes (32 hex digits), the system title 8 (16 hex digits)")
        if args.push and not args.pty:
            raise ValueError("--push needs --pty (a P1/HAN port is a serial line)")
    except (ValueError, ProfileError) as exc:
        print(f"meterlink simulate: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args, points, faults, late, offset, start, interval, keys, title))


def _signed_duration(text: str) -> float:
    """A duration that may be zero or negative: ``0``, ``90s``, ``-2h``."""
    text = text.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    if text.rstrip("mshd") in ("0", "0.0", ""):
        return 0.0
    return sign * parse_duration(text)


async def _serve(args: argparse.Namespace, points: list, faults: FaultPlan, late: float, offset: float,
                 start: float | None, interval: float, keys: dict[str, bytes], title: bytes) -> int:
    from meterlink.simulators.dlms import make_meter
    from meterlink.simulators.dlms_meter import SimClock
    from meterlink.simulators.dlms_server import HdlcServer, WrapperServer
    from meterlink.simulators.serve import serve_until_signal, with_line_quirks

    physicals: list[int | None] = [None] if args.no_physical else (args.physical or [17])
    meters = []
    for n, physical in enumerate(physicals):
        clock = SimClock(offset=offset, speed=args.time_speed, start=start, frozen=args.freeze)
        meters.append(make_meter(
            points=points, seed=args.seed + n, frozen=args.freeze, clock=clock, auth=args.auth,
            password=args.password.encode("latin-1"), encryption_key=keys["enc_key"],
            authentication_key=keys["auth_key"], system_title=title, logical=args.logical, physical=physical,
            serial=args.serial if n == 0 else str(int(args.serial) + n) if args.serial.isdigit() else args.serial,
            utc_offset=args.utc_offset, zone=args.zone, days=args.days, max_pdu=args.max_pdu,
            with_list=not args.no_with_list,
            drop_after=args.drop_after, missing=frozenset(args.missing),
            general_protection=not args.no_general_protection))
    wrapper = args.wrapper or (args.tcp is not None and not args.hdlc)

    def factory() -> HdlcServer | WrapperServer:
        if wrapper:
            return WrapperServer(meters[0], faults=faults, late_delay=late)
        return HdlcServer(meters, faults=faults, late_delay=late, max_info=args.max_info)

    addresses = ",".join(m.address for m in meters)
    mode = "push" if args.push else ("wrapper" if wrapper else "hdlc")
    what = f"dlms {mode} meter {addresses} (auth {args.auth}, {args.profile})"

    async def push(pty: PtyServer) -> None:
        assert isinstance(pty, PushPty)
        await pty.push_loop(meters[0], interval, cipher=args.push_cipher, gbt=args.push_gbt, max_info=args.max_info)

    return await serve_until_signal(what, with_line_quirks(factory, args), pty=args.pty, link=args.link, tcp=args.tcp,
                                    pty_server=PushPty(args.link) if args.pty and args.push else None,
                                    with_pty=push if args.push else None)


class _Silent:
    """A P1 port's meter ignores whatever the reader sends."""

    def feed(self, data: bytes) -> list[Reply]:
        return []


class PushPty(PtyServer):
    """A pty the meter writes to on its own schedule (a P1/HAN port never waits for a request)."""

    def __init__(self, link: str | None = None) -> None:
        super().__init__(_Silent, link)

    async def push_loop(self, meter: SimMeter, interval: float, *, cipher: bool, gbt: int, max_info: int) -> None:
        from meterlink.simulators.dlms_push import push_frames

        invoke = 0
        while True:
            invoke += 1
            for frame in push_frames(meter, invoke, cipher=cipher, gbt=gbt, max_info=max_info):
                self._write(frame)
            await asyncio.sleep(interval)
