"""A slow HTTP client cannot keep a broker thread: each connection gets REQUEST_DEADLINE seconds in all."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.http import REQUEST_DEADLINE
from tests.helpers.broker import BrokerProc
from tests.helpers.net import host_port
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(120)


def threads(pid: int) -> int:
    """The number of threads of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line for pid {pid}")


class TestSlowHttpClients:
    """Clients that trickle a request byte by byte at the broker's HTTP port."""

    def test_trickling_clients_are_cut_off_at_the_deadline(self, start_broker: Callable[..., BrokerProc]) -> None:
        """200 clients sending a byte every 2 s hold 200 threads at first, none after the deadline; probes pass."""
        b = start_broker()
        idle = threads(b.pid)
        conns = []
        try:
            for _ in range(200):
                conn = socket.create_connection(host_port(b.http), timeout=5)
                conn.sendall(b"GET /metrics HTTP/1.1\r\n")
                conns.append(conn)
            poll_until(lambda: threads(b.pid) >= idle + 150, timeout=5)
            held = threads(b.pid)
            assert held >= idle + 150, f"{held} threads with 200 slow clients, {idle} idle: nothing would be tested"
            deadline = time.monotonic() + REQUEST_DEADLINE + 5
            while time.monotonic() < deadline and threads(b.pid) > idle + 5:
                for conn in conns:
                    with contextlib.suppress(OSError):  # cut off: what should happen
                        conn.sendall(b"X")  # one header byte: each read of the handler succeeds
                time.sleep(2.0)  # a slow client: one byte every 2 s
            left = threads(b.pid)
            print(f"200 trickling HTTP clients: broker threads {idle} idle, {held} held, {left} after the deadline")
            assert left <= idle + 5, f"{left} broker threads {REQUEST_DEADLINE + 5:g} s on (idle: {idle})"
            assert b.get("/healthz") == (200, "ok\n")
        finally:
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.close()
