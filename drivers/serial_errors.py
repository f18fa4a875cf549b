"""What an operating-system error on a serial port or TCP link means, in one line a metering engineer can act on.

pyserial reports the same fault in several shapes: ``SerialException(errno,
"could not open port X: [Errno 2] ...")`` for a missing device, a
``SerialException`` with errno 11 when another process holds the port's
exclusive lock, a ``SerialException`` without errno ("Could not configure port:
(25, ...)") when the path is not a tty, and a bare ``termios.error(22,
'Invalid argument')`` (not even an ``OSError``) when the driver refuses a line
setting, as a pty or a cheap USB adapter does for parity E.  pymodbus swallows
all of them into "connection failed".  Every driver turns them into text here,
so one fault reads the same on every protocol.
"""

from __future__ import annotations

import errno
import os
import re
import termios

import serial

# the serial-port causes that need a word of advice beyond the OS's strerror
_SERIAL_TEXT = {
    errno.ENOENT: "no such device (is the adapter plugged in? see ls /dev/serial/by-id/)",
    errno.ENODEV: "no such device (is the adapter plugged in?)",
    errno.ENXIO: "no such device (is the adapter plugged in?)",
    errno.EBUSY: "in use by another process (see fuser -v PORT)",
    errno.EAGAIN: "in use by another process (see fuser -v PORT)",
    errno.EACCES: "permission denied: add the user to dialout (usermod -aG dialout USER)",
    errno.EPERM: "permission denied: add the user to dialout (usermod -aG dialout USER)",
    errno.ENOTTY: "not a serial port",
    errno.EIO: "I/O error (adapter unplugged?)",
}

_TCP_TEXT = {
    errno.ECONNREFUSED: "connection refused (nothing listens on that port)",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset by the peer",
    errno.EPIPE: "connection closed by the peer",
}


def _errno_of(exc: BaseException) -> int | None:
    """The errno pyserial buried: in ``.errno``, in ``args[0]`` (termios.error), or in the message text."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    if exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    m = re.search(r"\[Errno (\d+)\]|\((\d+), '", str(exc))
    if m:
        return int(m.group(1) or m.group(2))
    if exc.__context__ is not None and exc.__context__ is not exc:
        return _errno_of(exc.__context__)
    return None


def serial_error_text(exc: BaseException, *, line: str = "") -> str:
    """The reason a serial port could not be opened or used; ``line`` is the setting asked for (``9600 8E1``)."""
    code = _errno_of(exc)
    if isinstance(exc, termios.error) and code == errno.EINVAL:
        # tcsetattr refused the line setting: ptys and some adapters cannot do parity or 7 data bits
        parity = line[-2:-1] if len(line) >= 3 else ""
        what = f"parity {parity}" if parity in ("E", "O") else (line.rsplit(" ", 1)[-1] or "these settings")
        return f"this port refuses {what} (line settings {line or '?'})"
    if code is not None and code in _SERIAL_TEXT:
        return _SERIAL_TEXT[code]
    if isinstance(exc, ValueError) and not isinstance(exc, OSError):
        return f"invalid line setting: {exc}"
    if code is not None:
        return _strerror(code, exc)
    if isinstance(exc, serial.SerialException):
        return str(exc).rsplit("] ", 1)[-1]
    return str(exc) or type(exc).__name__


def tcp_error_text(exc: BaseException) -> str:
    """The reason a TCP connection failed, without Python's "[Errno 111] Connect call failed (...)" noise."""
    if isinstance(exc, TimeoutError) and not getattr(exc, "errno", None):
        return "no answer to the connection request (host down or port filtered?)"
    code = _errno_of(exc)
    if code is not None and code in _TCP_TEXT:
        return _TCP_TEXT[code]
    if code is not None:
        return _strerror(code, exc)
    return str(exc) or type(exc).__name__


def _strerror(code: int, exc: BaseException) -> str:
    text = getattr(exc, "strerror", None)
    if isinstance(text, str) and text:
        return text[0].lower() + text[1:]
    try:
        return os.strerror(code).lower()
    except ValueError:
        return str(exc)
