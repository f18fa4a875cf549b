"""DL/T 645-1997 requests, replies and error words on the shared DL/T 645 frame, no I/O.

DL/T 645-1997 "多功能电能表通信规约" is what the oldest State Grid meters
speak.  Its frame is the one ``meterlink.drivers.dlt645.codec`` already decodes
(``68 A0..A5 68 C L DATA CS 16``, the 33H offset on every data byte, FE
wake-up bytes, AA wildcards and the 999999999999 broadcast address), so this
module reuses ``codec.Frame``, ``codec.decode`` and ``codec.encode_frame``
and only adds what the 1997 edition does differently:

* 控制码 C (same bit layout: D7 direction, D6 abnormal reply, D5 follow-up
  frames) with the 1997 function codes: 00001 读数据 (read, reply 81H,
  error C1H), 00010 读后续数据 (read follow-up, reply 82H, error C2H),
  00011 重读数据, 00100 写数据, 01000 广播校时, 01010 写设备地址,
  01100 更改通信速率, 01111 更改密码, 10000 最大需量清零;
* 数据标识 (data identifier) of 2 bytes DI1 DI0, written as 4 hex digits
  (``"9010"``) and sent DI0 first ("先传低字节"), each byte +33H like all data:
  ``9010`` goes out as ``43 C3``;
* no frame sequence number: a 读后续数据 request carries the identifier only;
* the error word bits (``ERROR_BITS``) differ from the 2007 edition's.

Sources cross-checked (the vectors in ``tests/drivers/dlt645/vectors/1997``
cite theirs): the standard's clause text as quoted in public copies
("DL/T645-1997通讯规约", renrendoc.com/p-9959533; "常用规约时的流程及示例分析",
m.31doc.com/p-2104912 for the function codes), the State Grid research
institute's C implementation bobyuxinyang/dlt645_1997 (``dlt645_api_97.h``
function codes, ``trans_d97_format_err_word`` error bits) and the captures of
Heyuan Intelligence's ASDU-LS manual (page 18).
"""

from __future__ import annotations

import enum
from typing import Final

from meterlink.core.errors import FrameError, MeterRejected
from meterlink.drivers.dlt645.codec import (
    ABNORMAL_REPLY,
    DIRECTION_REPLY,
    FOLLOW_UP,
    FUNCTION_MASK,
    Frame,
    ReadReply,
    address_matches,
    error_reply,
    time_sync_request,
)
from meterlink.drivers.dlt645.codec import (
    normalize_di as normalize_di_2007,
)

__all__ = [
    "ERROR_BITS",
    "Function",
    "decode_di",
    "describe_error",
    "encode_di",
    "error_reply",
    "is_di",
    "normalize_di",
    "parse_read_reply",
    "read_follow_up_reply",
    "read_follow_up_request",
    "read_reply",
    "read_request",
    "time_sync_request",
]


class Function(enum.IntEnum):
    """功能码 D4..D0 of DL/T 645-1997, in the standard's order."""

    READ_DATA = 0x01  # 00001 读数据
    READ_FOLLOW_UP = 0x02  # 00010 读后续数据
    REREAD_DATA = 0x03  # 00011 重读数据
    WRITE_DATA = 0x04  # 00100 写数据
    BROADCAST_TIME_SYNC = 0x08  # 01000 广播校时 (the same 08H frame as DL/T 645-2007)
    WRITE_ADDRESS = 0x0A  # 01010 写设备地址
    CHANGE_BAUD_RATE = 0x0C  # 01100 更改通信速率
    CHANGE_PASSWORD = 0x0F  # 01111 更改密码
    CLEAR_MAX_DEMAND = 0x10  # 10000 最大需量清零


ERROR_BITS: Final[tuple[tuple[int, str], ...]] = (
    # DL/T 645-1997 异常应答帧 (C = C1H for 读数据, L = 01H), 错误信息字 ERR:
    # Bit0 非法数据, Bit1 数据标识错, Bit2 密码错, Bit3 保留, Bit4 年时区数超,
    # Bit5 日时段数超, Bit6 费率数超, Bit7 保留 (bobyuxinyang/dlt645_1997,
    # trans_d97_format_err_word: 0x01 非法数据 .. 0x40 费率数超).  The 2007
    # edition moved them: there Bit0 is "other error" and Bit1 "no requested data".
    (0x01, "illegal data"),
    (0x02, "unknown data identifier"),
    (0x04, "password error"),
    (0x08, "reserved bit 3"),
    (0x10, "annual time zone count exceeded"),
    (0x20, "daily time slot count exceeded"),
    (0x40, "rate/tariff count exceeded"),
    (0x80, "reserved bit 7"),
)

_HEX = frozenset("0123456789abcdefABCDEF")


def is_di(di: object) -> bool:
    """Whether ``di`` has the 1997 shape: 4 hex digits DI1DI0 (``"9010"``)."""
    return isinstance(di, str) and len(di) == 4 and all(c in _HEX for c in di)


def normalize_di(di: str) -> str:
    """A 1997 data identifier as the standard writes it: 4 hex digits DI1 DI0, upper case."""
    if not is_di(di):
        hint = ""
        try:
            normalize_di_2007(di)
            hint = " (8 digits is a DL/T 645-2007 identifier)"
        except FrameError:
            pass
        raise FrameError(f"data identifier {di!r}: need 4 hex digits DI1DI0, e.g. '9010'{hint}")
    return di.upper()


def encode_di(di: str) -> bytes:
    """``"9010"`` to the 2 bytes DI0 DI1 (``10 90``), without the 33H offset: low byte first."""
    return bytes(reversed(bytes.fromhex(normalize_di(di))))


def decode_di(raw: bytes) -> str:
    """The 2 bytes DI0 DI1 (offset already removed) to ``"DI1DI0"``."""
    if len(raw) != 2:
        raise FrameError(f"DL/T 645-1997 data identifier needs 2 bytes, got {len(raw)}")
    return bytes(reversed(raw)).hex().upper()


# --- requests (master -> meter) -------------------------------------------------


def read_request(address: str, di: str) -> Frame:
    """读数据 (C=01H, L=02H): "DI0 DI1"."""
    return Frame(address=address, control_code=Function.READ_DATA, data=encode_di(di))


def read_follow_up_request(address: str, di: str) -> Frame:
    """读后续数据 (C=02H, L=02H): "DI0 DI1" again; the 1997 edition numbers no frames (no SEQ)."""
    return Frame(address=address, control_code=Function.READ_FOLLOW_UP, data=encode_di(di))


# --- replies (meter -> master), for the simulator --------------------------------


def read_reply(address: str, di: str, payload: bytes, *, more: bool = False) -> Frame:
    """读数据 normal reply: C=81H (A1H with follow-up frames), "DI0 DI1 N1..Nm"."""
    control = DIRECTION_REPLY | Function.READ_DATA | (FOLLOW_UP if more else 0)
    return Frame(address=address, control_code=control, data=encode_di(di) + bytes(payload))


def read_follow_up_reply(address: str, di: str, payload: bytes, *, more: bool = False) -> Frame:
    """读后续数据 normal reply: C=82H (A2H while more follow), "DI0 DI1 N1..Nm"."""
    control = DIRECTION_REPLY | Function.READ_FOLLOW_UP | (FOLLOW_UP if more else 0)
    return Frame(address=address, control_code=control, data=encode_di(di) + bytes(payload))


# --- reply parsing --------------------------------------------------------------


def describe_error(err: int) -> str:
    """The 1997 error word ERR in words, every set bit, e.g. ``"unknown data identifier"``."""
    texts = [text for bit, text in ERROR_BITS if err & bit]
    return ", ".join(texts) if texts else "no error bit set"


def parse_read_reply(
    frame: Frame, expected_address: str, expected_di: str, *, follow_up: bool = False
) -> ReadReply:
    """Match ``frame`` to a 1997 读数据 request (or, with ``follow_up``, a 读后续数据 request).

    Raises ``FrameError`` if the frame answers something else (a request,
    another function, another meter or identifier) and ``MeterRejected`` with
    ``code`` = ERR for an abnormal reply (C1H / C2H), its bits in the 1997
    edition's words.
    """
    want_di = normalize_di(expected_di)
    function = Function.READ_FOLLOW_UP if follow_up else Function.READ_DATA
    if not frame.control_code & DIRECTION_REPLY:
        raise FrameError(f"control code {frame.control_code:02X}H is a master's request, not a reply")
    if frame.control_code & FUNCTION_MASK != function:
        raise FrameError(f"control code {frame.control_code:02X}H does not answer DL/T 645-1997 "
                         f"{function.name} ({function:02X}H)")
    if not address_matches(expected_address, frame.address):
        raise FrameError(f"reply from meter {frame.address}, expected {expected_address.upper()}")
    if frame.control_code & ABNORMAL_REPLY:
        if len(frame.data) != 1:
            raise FrameError(f"abnormal reply with L={len(frame.data)}, the standard has L=01H (ERR)")
        err = frame.data[0]
        raise MeterRejected(
            f"meter {frame.address} rejected reading {want_di}: {describe_error(err)} (ERR={err:02X}H)",
            code=err,
        )
    if len(frame.data) < 2:
        raise FrameError(f"reply data field of {len(frame.data)} bytes, need at least 2 (DI0 DI1)")
    di = decode_di(frame.data[:2])
    if di != want_di:
        raise FrameError(f"reply for data identifier {di}, expected {want_di}")
    return ReadReply(di=di, payload=frame.data[2:], more=frame.has_follow_up)

