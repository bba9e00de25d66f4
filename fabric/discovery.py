"""``dns+tcp://NAME:PORT`` endpoints: connect to every address a name resolves to.

libzmq resolves a hostname to its first address only, so a subscriber given a
Kubernetes headless Service would reach one broker of N and miss the records
the others carry. A ``dns+tcp://`` endpoint is resolved here instead: the
socket connects to every address, and :meth:`Endpoints.refresh` (called by the
socket's owner thread every ``interval`` seconds) connects new addresses and
disconnects gone ones.

A gone address is disconnected only after ``grace`` seconds. A terminating
Kubernetes pod leaves DNS at once but goes on forwarding while it drains;
staying connected to it meanwhile means its last records still arrive,
instead of turning into gaps.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable

import zmq

from fabric import _sockets

__all__ = ["DNS_SCHEME", "Endpoints", "Resolver", "resolve_all"]

DNS_SCHEME = "dns+tcp://"

#: ``resolver(host, port)`` returns the IP addresses ``host`` stands for now.
Resolver = Callable[[str, int], Iterable[str]]

_log = logging.getLogger("logfabric.discovery")


def resolve_all(host: str, port: int) -> list[str]:
    """Every IPv4 and IPv6 address of ``host`` (the default resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _split(endpoint: str) -> tuple[str, int]:
    rest = endpoint[len(DNS_SCHEME) :]
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"invalid endpoint {endpoint!r}: expected dns+tcp://NAME:PORT, e.g. dns+tcp://logfabric-headless:5558"
        )
    return host, int(port)


def _tcp(address: str, port: int) -> str:
    return f"tcp://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}"


class Endpoints:
    """The endpoints one socket attaches to, plain and ``dns+tcp://`` alike."""

    def __init__(
        self, endpoints: Iterable[str], resolver: Resolver | None = None, interval: float = 10.0, grace: float = 45.0
    ) -> None:
        self.plain: list[str] = []
        self.names: list[tuple[str, int]] = []
        for ep in endpoints:
            if ep.startswith(DNS_SCHEME):
                self.names.append(_split(ep))
            else:
                self.plain.append(_sockets.check_endpoint(ep))
        if not self.plain and not self.names:
            raise ValueError("no endpoint given: pass at least one, such as 'tcp://127.0.0.1:5558'")
        self.resolver: Resolver = resolver or resolve_all
        self.interval = interval
        self.grace = grace
        self.connected: set[str] = set()
        self.gone: dict[str, float] = {}  # address -> when it left DNS
        self.bound: list[str] = []
        """The endpoints bound, as the socket reports them (a ``*`` port resolved)."""
        self.next_refresh = float("inf")

    def attach(self, sock: zmq.Socket[bytes], bind: bool) -> None:
        """Bind or connect every endpoint; a name that does not resolve is an error now."""
        if self.names and bind:
            raise ValueError("dns+tcp:// endpoints can only be connected to, not bound")
        self.bound = []
        for ep in self.plain:
            _sockets.attach(sock, ep, bind)
            if bind:
                self.bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        if self.names:
            wanted = self._resolve(strict=True) or set()
            for ep in sorted(wanted):
                _sockets.attach(sock, ep, bind=False)
            self.connected = wanted
            self.next_refresh = time.monotonic() + self.interval

    def refresh(self, sock: zmq.Socket[bytes]) -> None:
        """Re-resolve the names: connect new addresses, disconnect those gone for ``grace`` seconds."""
        now = time.monotonic()
        self.next_refresh = now + self.interval
        wanted = self._resolve(strict=False)
        if wanted is None:
            return
        for ep in sorted(wanted - self.connected):
            _log.info("connecting to %s (new address)", ep)
            sock.connect(ep)
        for ep in sorted(wanted & self.gone.keys()):
            del self.gone[ep]  # back in DNS: keep it
        for ep in sorted(self.connected - wanted - self.gone.keys()):
            _log.info("address %s left DNS; staying connected for %.0f s while it drains", ep, self.grace)
            self.gone[ep] = now
        for ep, since in sorted(self.gone.items()):
            if now - since >= self.grace:
                _log.info("disconnecting from %s (address gone)", ep)
                with contextlib.suppress(zmq.ZMQError):  # never connected after all
                    sock.disconnect(ep)
                del self.gone[ep]
        self.connected = wanted | self.gone.keys()

    def _resolve(self, strict: bool) -> set[str] | None:
        found: set[str] = set()
        for host, port in self.names:
            try:
                addresses = list(self.resolver(host, port))
            except OSError as exc:
                if strict:
                    raise ValueError(f"cannot resolve {host!r}: {exc}") from None
                _log.warning("cannot resolve %r (keeping the current connections): %s", host, exc)
                return None
            found.update(_tcp(a, port) for a in addresses)
        return found
