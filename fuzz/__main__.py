"""``make fuzz``: a long fuzzing run of the codecs that take bytes from outside.

Why besides the hypothesis property tests: those run a few hundred examples
per test so ``make test`` stays fast; this runs millions (default one million
inputs per codec) to find the rare input a property test does not reach.  A
codec may only raise its own error types for bad input; anything else
(``IndexError``, ``struct.error``, ``UnicodeDecodeError``, ``RecursionError``)
would be a traceback in the gateway where CONTRACT section 2 promises a one-line
error, and possibly a lost poll.

Inputs are mostly structure-aware: valid frames and requests built with the
codecs' own encoders, then mutated (bit flips, interesting bytes, insertions,
deletions, truncation, splices of two seeds, garbage around them), plus plain
random bytes.  Each input goes through every function of its codec the way
the gateway uses it (a frame decoder is fed the whole buffer and then the rest
after each frame, as a stream).

Targets and the errors each may raise:

``modbus``     ``meterlink.drivers.modbus.codec.decode_*``: ``FrameError``; ``decode_value`` also
               ``ImpossibleValue`` (NaN/infinity registers, the codec's documented answer)
``dlt645``     ``meterlink.drivers.dlt645.codec.decode``, ``parse_read_reply``, ``parse_read_address_reply``,
               ``decode_value``, ``meterlink.drivers.dlt645.dis.decode_item``: ``FrameError``, ``MeterRejected``
``commands``   ``meterlink.engine.commands.parse_request``: ``CommandError``
``dlms``       ``meterlink.drivers.dlms``: ``hdlc.decode``, ``wrapper.decode``, the ``apdu`` decoders, ``axdr.decode*``,
               ``HdlcParameters.from_bytes``, as far as they exist: ``FrameError``, ``MeterRejected``

Usage: ``python -m fuzz [--inputs N] [--jobs J] [--seed S] [--target NAME ...]``.
Prints inputs/s per target and every distinct unexpected exception (type and
place, with the input in hex); exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import multiprocessing
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from meterlink.core.errors import FrameError, MeterRejected

Runner = Callable[[Any], None]
Generator = Callable[[random.Random], Any]

INTERESTING = (0x00, 0x01, 0x02, 0x03, 0x04, 0x7F, 0x80, 0x81, 0x83, 0x84, 0xFE, 0xFF, 0x68, 0x16, 0x33, 0xAA,
               0x7D, 0x7E, 0xC0, 0xD1)


# --------------------------------------------------------------------------- mutation


def quiet(allowed: tuple[type[BaseException], ...], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)``, None if it raised one of ``allowed`` (a plain try: contextlib.suppress costs more per call)."""
    try:
        return fn(*args, **kwargs)
    except allowed:
        return None


def mutate(rng: random.Random, seed: bytes, seeds: list[bytes]) -> bytes:
    """A byte-level mutation of ``seed``: 1-4 edits, sometimes garbage or another seed around it."""
    buf = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        i = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[i % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[i % len(buf)] = rng.choice(INTERESTING)
        elif op == 2:
            buf[i:i] = bytes([rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)])
        elif op == 3 and buf:
            del buf[i % len(buf): i % len(buf) + rng.randint(1, 4)]
        elif op == 4:
            del buf[i:]
        elif op == 5:
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 6 and buf:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j: j + rng.randint(1, 16)]
        elif op == 7:
            other = rng.choice(seeds)
            buf = buf[:i] + bytearray(other[rng.randrange(len(other) + 1):])
        elif op == 8 and buf:
            buf[i % len(buf)] = (buf[i % len(buf)] + rng.choice((1, -1, 0x10, -0x10))) & 0xFF
    return bytes(buf)


def byte_inputs(seeds: list[bytes], max_random: int = 300) -> Generator:
    def gen(rng: random.Random) -> bytes:
        r = rng.random()
        if r < 0.15:
            return rng.randbytes(rng.randrange(max_random))
        if r < 0.25:  # several frames back to back, the way a bus delivers them
            return b"".join(mutate(rng, rng.choice(seeds), seeds) if rng.random() < 0.5 else rng.choice(seeds)
                            for _ in range(rng.randint(2, 4)))
        return mutate(rng, rng.choice(seeds), seeds)
    return gen


def stream(decode: Callable[[bytes], tuple[int, Any]], buf: bytes, on_frame: Callable[[Any], None] | None = None,
           allowed: tuple[type[BaseException], ...] = (FrameError,)) -> None:
    """Feed ``buf`` to a ``decode(buf) -> (consumed, frame | None)`` as a reader would, checking ``consumed``."""
    for _ in range(len(buf) + 1):
        try:
            used, frame = decode(buf)
        except allowed as exc:
            used, frame = max(int(getattr(exc, "consumed", 1) or 1), 1), None
            buf = buf[used:]
            if not buf:
                return
            continue
        if not 0 <= used <= len(buf):
            raise AssertionError(f"{decode.__name__} consumed {used} of {len(buf)} bytes")
        if frame is None:
            return
        if used == 0:
            raise AssertionError(f"{decode.__name__} returned a frame but consumed nothing")
        if on_frame is not None:
            on_frame(frame)
        buf = buf[used:]


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    functions: str
    allowed: tuple[type[BaseException], ...]
    make: Callable[[], tuple[Generator, Runner]]  # built in each worker process


def _modbus() -> tuple[Generator, Runner]:
    from meterlink.drivers.modbus import codec as mb

    seeds: list[bytes] = []
    for uid in (1, 17, 247, 0):
        for fc in (3, 4):
            regs = tuple(range(0, 2 * random.Random(uid + fc).randint(1, 20)))
            for msg in (mb.ReadRequest(device_id=uid, function_code=fc, address=0x0156, count=2, transaction_id=7),
                        mb.ReadResponse(device_id=uid, function_code=fc, registers=regs, transaction_id=9),
                        mb.ExceptionResponse(device_id=uid, function_code=fc, exception_code=2, transaction_id=3)):
                seeds += [mb.encode_rtu(msg), mb.encode_tcp(msg)]
    frames = byte_inputs(seeds)
    types = list(mb.WORDS)
    scales = [Decimal(1), Decimal("0.1"), Decimal("0.001"), Decimal(10), Decimal("-1"), Decimal("1E-6"), Decimal("3.3")]

    def gen(rng: random.Random) -> tuple[bytes, str, str, list[int], Decimal]:
        type_ = rng.choice(types)
        n = mb.WORDS[type_] if rng.random() < 0.9 else rng.randrange(6)
        words = [rng.choice((0, 0xFFFF, 0x7FC0, 0x7F80, 0xFF80, 0x8000)) if rng.random() < 0.2 else rng.randrange(65536)
                 for _ in range(n)]
        return frames(rng), type_, rng.choice(("big", "little")), words, rng.choice(scales)

    decoders = (mb.decode_rtu_request, mb.decode_rtu_response, mb.decode_tcp_request, mb.decode_tcp_response)

    def run(case: tuple[bytes, str, str, list[int], Decimal]) -> None:
        data, type_, order, words, scale = case
        for decode in decoders:
            stream(decode, data)
        quiet((FrameError, mb.ImpossibleValue), mb.decode_value, words, type_, order, scale)

    return gen, run


def _dlt645() -> tuple[Generator, Runner]:
    from meterlink.drivers.dlt645 import codec as dl
    from meterlink.drivers.dlt645 import dis

    rng0 = random.Random(645)
    items = list(dis.DATA_ITEMS.values())
    addresses = ["123456789012", "000000000001", "999999999999", "AAAAAAAAAAAA", "AAAA56789012"]
    seeds: list[bytes] = []
    for item in rng0.sample(items, min(len(items), 40)):
        addr = rng0.choice(addresses[:3])
        length = dis.item_length(item.di)
        payload = bytes(rng0.choice((0x00, 0x12, 0x99, 0x45, 0x80)) for _ in range(length))
        seeds.append(dl.encode_frame(dl.read_reply(addr, item.di, payload), wakeup=rng0.randint(0, 4)))
        seeds.append(dl.encode_frame(dl.read_follow_up_reply(addr, item.di, payload[:20], 1, more=True)))
        seeds.append(dl.encode_frame(dl.read_request(addr, item.di)))
    for addr in addresses[:3]:
        seeds.append(dl.encode_frame(dl.read_address_reply(addr)))
        seeds.append(dl.encode_frame(dl.error_reply(addr, dl.Function.READ_DATA, 0x02)))
    frames = byte_inputs(seeds)
    formats = list(dl.FORMATS.items())

    def on_frame(frame: dl.Frame) -> None:
        own_di = frame.data[:4][::-1].hex() if len(frame.data) >= 4 else "00010000"
        seq = frame.data[-1] if frame.data else 0
        for address, di, expected_seq in ((frame.address, "00010000", None), ("AAAAAAAAAAAA", own_di, None),
                                          (frame.address, own_di, seq)):
            try:
                reply = dl.parse_read_reply(frame, address, di, expected_seq=expected_seq)
            except (FrameError, MeterRejected):
                continue
            if reply.di in dis.DATA_ITEMS:
                quiet((FrameError,), dis.decode_item, reply.di, reply.payload)
            for name, spec in formats:
                quiet((FrameError,), dl.decode_value, name, reply.payload[: spec.length])
        quiet((FrameError, MeterRejected), dl.parse_read_address_reply, frame)

    def gen(rng: random.Random) -> tuple[bytes, bytes, bool | None]:
        return frames(rng), rng.randbytes(rng.randrange(8)), rng.choice((None, True, False))

    def run(case: tuple[bytes, bytes, bool | None]) -> None:
        data, raw, signed = case
        stream(dl.decode, data, on_frame)
        for name, spec in formats:  # values straight from bytes, right length and wrong
            for payload in (raw[: spec.length], raw):
                quiet((FrameError,), dl.decode_value, name, payload, signed=signed)

    return gen, run


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.5:
        return rng.choice([None, True, False, 0, -1, 1.5, 1e308, "", "m-0001", "1.0.1.8.0.255", "\u0000", "é",
                           "9" * 30, rng.randrange(-2**70, 2**70), rng.random()])
    if r < 0.75:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["id", "meter", "points", "x", ""]): _json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _commands() -> tuple[Generator, Runner]:
    from meterlink.engine import commands

    docs: list[dict[str, Any]] = [{"id": "1", "meter": "m-0001"}, {"id": 2}, {"id": "3", "meter": "m-0001",
                                  "points": ["1.0.1.8.0.255", "1.0.32.7.0.255"]}, {}]
    seeds = [json.dumps(d).encode() for d in docs]
    names = [*commands.COMMANDS, "sync_time", "", "read/result", "x" * 100, "\u00e9"]

    def gen(rng: random.Random) -> tuple[str, bytes]:
        r = rng.random()
        if r < 0.3:
            doc = dict(rng.choice(docs))
            for _ in range(rng.randint(1, 3)):
                doc[rng.choice(["id", "meter", "points", "extra"])] = _json_value(rng)
            payload = json.dumps(doc).encode()
        elif r < 0.4:
            payload = json.dumps(_json_value(rng)).encode()
        elif r < 0.45:
            n = rng.choice((10, 1000, 100000))
            payload = (b"[" * n + b"]" * n) if rng.random() < 0.5 else (b'{"id":' * n)
        elif r < 0.55:
            payload = rng.randbytes(rng.randrange(64))
        else:
            payload = mutate(rng, rng.choice(seeds), seeds)
        return rng.choice(names), payload

    def run(case: tuple[str, bytes]) -> None:
        quiet((commands.CommandError,), commands.parse_request, *case)

    return gen, run


def _dlms() -> tuple[Generator, Runner]:
    """The DLMS codec as the driver meets bytes: HDLC and wrapper frames, then the APDU and A-XDR inside.

    ``drivers/dlms`` is being written; a function that is not there yet is left out (and not listed).
    """
    mods = {name: importlib.import_module(f"meterlink.drivers.dlms.{name}") for name in ("hdlc", "wrapper", "apdu", "axdr")
            if importlib.util.find_spec(f"meterlink.drivers.dlms.{name}") is not None}

    def fn(mod: str, name: str) -> Callable[..., Any] | None:
        return getattr(mods[mod], name, None) if mod in mods else None

    streams = [f for f in (fn("hdlc", "decode"), fn("wrapper", "decode")) if f is not None]
    apdu_fns = [f for f in (fn("apdu", n) for n in ("decode_get_response", "decode_get_request", "parse_list_results",
                                                     "decode_exception_response", "decode_ciphered",
                                                     "decode_block_transfer", "decode_data_notification"))
                if f is not None]
    axdr_all, axdr_one = fn("axdr", "decode_all"), fn("axdr", "decode")
    params = getattr(fn("hdlc", "HdlcParameters") or object, "from_bytes", None)
    # HDLC SNRM/UA, an I frame with a GET.response, a wrapper GET.request, GET.responses (normal, with a
    # data-access-result, with-list), an exception response, a block transfer: bytes from the Green Book examples
    seeds = [bytes.fromhex(h) for h in (
        "7ea0070393100e7e", "7ea01e0303731c0f818012050180060180070400000001080400000001a9db7e",
        "7ea01c0303521e74e6e700c401c1000600000d4a1a4b7e", "000100100001000de6e700c001c100030100010800ff0200",
        "c401c1000600000d4a", "c401c1010b", "c403c1010206000000010b", "d80102", "c401c10009060100010800ff",
        "e0c000000001000000000600000d4a", "0f0000000100020206000000010600000002", "0101020309060100010800ff")]
    frames = byte_inputs(seeds)

    def apdu(data: bytes) -> None:
        for f in apdu_fns:
            quiet((FrameError, MeterRejected), f, data)
        for f in (axdr_all, axdr_one):
            if f is not None:
                quiet((FrameError, MeterRejected), f, data)

    def on_frame(frame: Any) -> None:
        info = bytes(getattr(frame, "info", b"") or getattr(frame, "apdu", b""))
        apdu(info[3:] if info[:2] in (b"\xe6\xe6", b"\xe6\xe7") else info)

    def run(data: bytes) -> None:
        for decode in streams:
            stream(decode, data, on_frame)
        apdu(data)
        if params is not None:
            quiet((FrameError, MeterRejected), params, data)

    names = [f"{f.__module__}.{f.__qualname__}" for f in (*streams, *apdu_fns, axdr_all, axdr_one, params) if f]
    run.functions = names  # type: ignore[attr-defined]
    return frames, run


TARGETS = {
    "modbus": Target("modbus", "meterlink.drivers.modbus.codec decode_rtu_request/_response, decode_tcp_request/_response, "
                     "decode_value", (FrameError,), _modbus),
    "dlt645": Target("dlt645", "meterlink.drivers.dlt645.codec decode, parse_read_reply, parse_read_address_reply, "
                     "decode_value; dis.decode_item", (FrameError, MeterRejected), _dlt645),
    "commands": Target("commands", "meterlink.engine.commands.parse_request", (), _commands),
    "dlms": Target("dlms", "meterlink.drivers.dlms codec decode*/parse* functions", (FrameError, MeterRejected), _dlms),
}


def dlms_available() -> bool:
    return importlib.util.find_spec("meterlink.drivers.dlms") is not None and any(
        importlib.util.find_spec(f"meterlink.drivers.dlms.{m}") is not None for m in ("hdlc", "wrapper", "apdu", "axdr"))


# --------------------------------------------------------------------------- running


@dataclass
class Finding:
    target: str
    kind: str
    where: str
    message: str
    input_repr: str
    count: int = 1


@dataclass
class Result:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    functions: list[str] = field(default_factory=list)


def _where(exc: BaseException) -> str:
    """The codec function the harness called and the line that raised: ``decode_tcp_response -> file:line in f``."""
    tb = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith(os.path.join("bench", "fuzz.py"))]
    if not tb:
        return "?"
    last = tb[-1]
    where = f"{os.path.relpath(last.filename)}:{last.lineno} in {last.name}"
    return where if tb[0] is last else f"{tb[0].name} -> {where}"


def shrink(run: Runner, case: Any, key: tuple[str, str], budget: int = 3000) -> Any:
    """A smaller input failing the same way: drop chunks of the bytes while the same exception is raised there."""
    data, rest = (case[0], case[1:]) if isinstance(case, tuple) else (case, None)
    if not isinstance(data, bytes):
        return case

    def same(candidate: bytes) -> bool:
        try:
            run(candidate if rest is None else (candidate, *rest))
        except Exception as exc:
            return (type(exc).__name__, _where(exc)) == key
        return False

    chunk = max(len(data) // 2, 1)
    while chunk >= 1 and budget > 0:
        i, shrunk = 0, False
        while i < len(data) and budget > 0:
            budget -= 1
            candidate = data[:i] + data[i + chunk:]
            if same(candidate):
                data, shrunk = candidate, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return data if rest is None else (data, *rest)


def _repr_input(case: Any) -> str:
    def one(x: Any) -> str:
        if isinstance(x, bytes | bytearray):
            return x[:200].hex() + ("…" if len(x) > 200 else "")
        return repr(x)[:200]
    return ", ".join(one(x) for x in case) if isinstance(case, tuple) else one(case)


def work(job: tuple[str, int, int]) -> Result:
    """One worker's share: ``n`` inputs of one target from its own seed."""
    name, n, seed = job
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    gen, run = TARGETS[name].make()
    rng = random.Random(seed)
    res = Result(name, functions=list(getattr(run, "functions", [])))
    t0 = time.perf_counter()
    for _ in range(n):
        case = gen(rng)
        try:
            run(case)
        except Exception as exc:  # the finding: anything the target's own checks let through
            key = (type(exc).__name__, _where(exc))
            if key in res.findings:
                res.findings[key].count += 1
            else:
                small = shrink(run, case, key)
                res.findings[key] = Finding(name, key[0], key[1], str(exc)[:300], _repr_input(small))
    res.inputs = n
    res.seconds = time.perf_counter() - t0
    return res


def _shares(total: int, jobs: int) -> Iterator[int]:
    for i in range(jobs):
        yield total // jobs + (1 if i < total % jobs else 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target (default 1,000,000)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    p.add_argument("--seed", type=int, default=int(time.time()), help="base random seed (default: now)")
    p.add_argument("--target", action="append", choices=sorted(TARGETS), help="default: every available target")
    args = p.parse_args(argv)
    names = args.target or [t for t in TARGETS if t != "dlms" or dlms_available()]
    if "dlms" not in names and args.target is None:
        print("dlms: drivers/dlms has no codec modules yet: skipped")
    print(f"fuzzing {', '.join(names)}: {args.inputs:,} inputs each, {args.jobs} worker(s), seed {args.seed}",
          flush=True)
    found = 0
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ctx.Pool(args.jobs) as pool:
        for name in names:
            jobs = [(name, n, args.seed * 1000 + i) for i, n in enumerate(_shares(args.inputs, args.jobs)) if n]
            t0 = time.perf_counter()
            results = pool.map(work, jobs)
            wall = time.perf_counter() - t0
            inputs = sum(r.inputs for r in results)
            merged: dict[tuple[str, str], Finding] = {}
            for r in results:
                for key, f in r.findings.items():
                    if key in merged:
                        merged[key].count += f.count
                    else:
                        merged[key] = f
            functions = results[0].functions if results else []
            what = ", ".join(functions) if functions else TARGETS[name].functions
            print(f"{name:9} {inputs:>11,} inputs in {wall:7.1f} s = {inputs / wall:>9,.0f} inputs/s  "
                  f"unexpected exceptions: {len(merged)}   [{what}]", flush=True)
            for f in merged.values():
                found += 1
                print(f"  {f.kind} at {f.where} ({f.count:,}x): {f.message}\n    smallest input found: {f.input_repr}",
                      flush=True)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
