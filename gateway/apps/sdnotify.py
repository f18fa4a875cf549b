"""The systemd notify protocol (``sd_notify(3)``), in a few lines over the notify socket.

Why not a dependency: the protocol is one datagram of ``KEY=VALUE`` lines sent
to the ``AF_UNIX`` socket named in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for
the abstract namespace).  With ``Type=notify`` systemd waits for ``READY=1``
before it calls the service started, restarts it when ``WATCHDOG=1`` stops
arriving within ``WatchdogSec=`` and knows from ``STOPPING=1`` that a stop is
under way.  Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing, so
``meterlink run`` behaves the same in a terminal.

A notification that cannot be sent is logged once and otherwise ignored: the
gateway must keep reading meters even if the service manager went away.
"""

from __future__ import annotations

import os
import socket

from meterlink.core import logs


def _address(spec: str) -> str | bytes | None:
    """The socket address of ``$NOTIFY_SOCKET``: a filesystem path, or ``@name`` for the abstract namespace."""
    if spec.startswith("@"):
        return b"\0" + spec[1:].encode()
    if spec.startswith("/"):
        return spec
    return None  # vsock (vsock:CID:PORT) and relative paths: not for a service on the same host


class Notifier:
    """Sends notifications to systemd; a no-op when the process was not started with ``Type=notify``."""

    def __init__(self, socket_spec: str | None) -> None:
        self.address = _address(socket_spec) if socket_spec else None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; True if it was sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                logs.warning("systemd notification failed", error=exc.strerror or str(exc))
                self._failed = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """``WatchdogSec=`` in seconds, from ``$WATCHDOG_USEC``, when it is meant for this process; else None.

    ``$WATCHDOG_PID``, when set, names the process the watchdog watches; a child
    that inherited the environment must not feed its parent's watchdog.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        seconds = int(usec) / 1e6
    except ValueError:
        return None
    return seconds if seconds > 0 else None
