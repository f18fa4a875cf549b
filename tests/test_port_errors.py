"""Issue 15 items 4/5 (channel side): a serial port or TCP link that cannot be used gives one line with the OS's reason.

Real ports only: a missing device path, a pty another process holds, /dev/null
(not a tty), a TCP port nobody listens on.  The OS errors a root test cannot
provoke (EACCES) or this kernel's ptys do not raise (pyserial's bare
``termios.error(22)`` for parity E) go through the same mapping as the very
exception objects pyserial raises.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import termios
from pathlib import Path

import pytest
import serial

from meterlink.core.config import Link, SerialLinkConfig, TcpLinkConfig
from meterlink.core.errors import LinkError
from meterlink.core.registry import create_driver
from meterlink.drivers.serial_errors import serial_error_text, tcp_error_text
from meterlink.drivers.transport import Transport, endpoint_for
from testkit.simproc import meterlink, write_config


def _serial_link(port: str, protocol: str = "modbus", parity: str = "N") -> Link:
    return Link(id="rs485-1", config=SerialLinkConfig.model_validate({"type": "serial", "port": port}),
                protocol=protocol, baudrate=9600, parity=parity)


async def _open_error(link: Link) -> str:
    driver = create_driver(link)
    try:
        with pytest.raises(LinkError) as err:
            await driver.open()
    finally:
        await driver.close()
    return str(err.value)


@pytest.mark.parametrize("protocol", ["modbus", "dlt645", "dlms", "dlt698"])
def test_missing_device_names_port_and_reason(tmp_path: Path, protocol: str) -> None:
    port = str(tmp_path / "ttyUSB9")
    text = asyncio.run(_open_error(_serial_link(port, protocol)))
    assert text.startswith(f"cannot open {port} 9600 8N1: no such device"), text
    assert "\n" not in text and "Errno" not in text


def test_busy_port_says_in_use_not_connection_failed() -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    holder = serial.Serial(path, exclusive=True)  # another process's lock, as minicom or a second gateway takes
    try:
        text = asyncio.run(_open_error(_serial_link(path)))
        assert text == f"cannot open {path} 9600 8N1: in use by another process (see fuser -v PORT)", text
        text = asyncio.run(_open_error(_serial_link(path, "dlt645")))
        assert "in use by another process" in text
    finally:
        holder.close()
        os.close(master)
        os.close(slave)


def test_not_a_serial_port() -> None:
    text = asyncio.run(_open_error(_serial_link("/dev/null")))
    assert text == "cannot open /dev/null 9600 8N1: not a serial port", text


def test_tcp_refused_names_the_reason() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for framing in ("socket", "rtu"):
        link = Link(id="gw", protocol="modbus", config=TcpLinkConfig.model_validate(
            {"type": "tcp", "host": "127.0.0.1", "port": port, "framing": framing, "timeout": 0.3}))
        text = asyncio.run(_open_error(link))
        assert text.startswith(f"cannot open 127.0.0.1:{port}") and "connection refused" in text, text
        assert "connection failed" not in text


def test_os_errors_a_test_cannot_provoke_read_the_same() -> None:
    # pyserial lets tcsetattr's termios.error through bare when the driver refuses a line setting
    assert serial_error_text(termios.error(22, "Invalid argument"), line="9600 8E1") == \
        "this port refuses parity E (line settings 9600 8E1)"
    denied = serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0: [Errno 13] Permission denied")
    assert serial_error_text(denied).startswith("permission denied: add the user to dialout")
    assert serial_error_text(OSError(errno.EIO, "Input/output error")) == "I/O error (adapter unplugged?)"
    assert tcp_error_text(ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")).startswith(
        "connection refused")


def test_cli_prints_one_line_for_a_missing_port(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "g.yaml", {
        "gateway": {"data_dir": str(tmp_path / "data")},
        "links": {"bus": {"type": "serial", "port": str(tmp_path / "ttyUSB9"), "baudrate": 9600, "parity": "N"}},
        "meters": {"m1": {"link": "bus", "protocol": "modbus", "address": 1, "profile": "eastron-sdm120"}},
    })
    r = meterlink("read", "-c", str(cfg))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "ttyUSB9" in lines[0] and "no such device" in lines[0], r.stderr
    assert "connection failed" not in r.stderr and "Traceback" not in r.stderr


def test_channel_keeps_working_after_the_reason_is_fixed(tmp_path: Path) -> None:
    """The error is per attempt: once the port exists, the same transport opens."""
    link = _serial_link(str(tmp_path / "ttyS-late"), "dlt645")
    master, slave = os.openpty()

    async def go() -> None:
        ch: Transport[bytes] = Transport(endpoint_for(link))
        with pytest.raises(LinkError, match="no such device"):
            await ch.open()
        (tmp_path / "ttyS-late").symlink_to(os.ttyname(slave))
        await ch.open()
        assert ch.is_open
        await ch.close()

    try:
        asyncio.run(go())
    finally:
        os.close(master)
        os.close(slave)
