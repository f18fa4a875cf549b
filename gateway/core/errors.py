"""One error hierarchy for the whole gateway.

Drivers, codecs and the configuration raise these types where the fault is
found; foreign errors (pyserial, pymodbus, sqlite) are wrapped at the boundary
with ``raise ... from exc``.  The scheduler decides from the type alone what to
do: timeouts and link errors are retried, rejections become ``invalid``
readings, frame errors count as a failed transaction.
"""

from __future__ import annotations


class MeterlinkError(Exception):
    """Root of every error Meterlink raises on purpose."""


class ConfigError(MeterlinkError):
    """A configuration problem, located by its key path (``meters.m-0001.address``)."""

    def __init__(self, key_path: str, message: str) -> None:
        super().__init__(f"{key_path}: {message}" if key_path else message)
        self.key_path = key_path
        self.message = message


class ConfigProblems(MeterlinkError):
    """Every problem found in one configuration file."""

    def __init__(self, problems: list[ConfigError]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class FrameError(MeterlinkError):
    """Bytes from a meter that do not form a valid frame (checksum, length, BCD, ...)."""


class BadFrame(FrameError):
    """A delimited frame that failed a check (checksum, end byte, length).

    ``consumed`` is how many bytes of the buffer the transport drops before
    decoding again.  After a checksum failure a decoder only goes one byte past
    the candidate's start: the "frame" may have been garbage that happened to
    look like one, and the real reply can start inside it.
    """

    def __init__(self, message: str, *, consumed: int) -> None:
        super().__init__(message)
        self.consumed = consumed


class MeterTimeout(MeterlinkError):
    """The meter did not answer within the link's timeout (after the link's tries)."""


class MeterRejected(MeterlinkError):
    """The meter answered with a protocol error reply; ``code`` is the meter's own error code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class LinkError(MeterlinkError):
    """The channel itself failed: serial port missing or busy, TCP connection refused or lost."""
