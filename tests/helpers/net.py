"""Loopback networking for the tests: free ports, endpoints, plain HTTP GETs, child environments."""

from __future__ import annotations

import http.client
import os
import socket
from pathlib import Path

#: The checkout's root directory (what child processes need on ``PYTHONPATH``).
ROOT = Path(__file__).resolve().parents[2]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def tcp_endpoint() -> str:
    """Return a fresh ``tcp://127.0.0.1:PORT`` endpoint."""
    return f"tcp://127.0.0.1:{free_port()}"


def host_port(endpoint: str) -> tuple[str, int]:
    """Split ``tcp://HOST:PORT`` or ``HOST:PORT``."""
    host, _, port = endpoint.split("://", 1)[-1].rpartition(":")
    return host, int(port)


def http_get(address: str, path: str, timeout: float = 3.0) -> tuple[int, str]:
    """GET ``path`` from ``HOST:PORT``; return (status, body)."""
    host, port = host_port(address)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def child_env(**extra: str) -> dict[str, str]:
    """An environment for child processes: this checkout importable, no LOGFABRIC_* settings, ``extra`` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGFABRIC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def from_source(endpoint: str, source: str) -> str:
    """``endpoint`` connected from the loopback address ``source`` (libzmq's ``tcp://SRC:0;DST:PORT``)."""
    host, port = host_port(endpoint)
    return f"tcp://{source}:0;{host}:{port}"
