"""The physics of a serial line: how long a transaction takes at a baud rate, at best.

An RS-485 character is 11 bits on the wire (start, 8 data, parity or a second
stop bit, stop: Modbus over Serial Line V1.02 2.5.1).  Modbus RTU frames are
separated by a silence of 3.5 characters (t3.5), fixed at 1.75 ms above 19200
baud (Serial Line Guide 2.5.1.1).  A DL/T 645-2007 meter answers no sooner
than Td = 20 ms after a request (the standard's 20 ms <= Td <= 500 ms).

A transaction is request + turnaround + reply + the gap before the next
request; the simulators delay each reply by exactly this (``--wire-time``), and
the benchmarks divide measured cycle times by it.
"""

from __future__ import annotations

BITS_PER_CHAR = 11
DLT645_TD = 0.020


def char_time(baud: int) -> float:
    return BITS_PER_CHAR / baud


def t35(baud: int) -> float:
    return 0.00175 if baud > 19200 else 3.5 * char_time(baud)


def modbus_rtu_transaction(baud: int, request_bytes: int, reply_bytes: int) -> float:
    return (request_bytes + reply_bytes) * char_time(baud) + 2 * t35(baud)


def dlt645_transaction(baud: int, request_bytes: int, reply_bytes: int) -> float:
    return (request_bytes + reply_bytes) * char_time(baud) + DLT645_TD + t35(baud)


def dlt698_transaction(baud: int, request_bytes: int, reply_bytes: int) -> float:
    """DL/T 698.45 on RS-485: the same line and turnaround as DL/T 645 (its HDLC-like frames, FE wake-up
    bytes included in the counts, take no other time on the wire)."""
    return dlt645_transaction(baud, request_bytes, reply_bytes)


def modbus_read_bytes(count: int) -> tuple[int, int]:
    """RTU request and reply sizes of a read of ``count`` registers (function 03/04)."""
    return 8, 5 + 2 * count
