"""Caps on the connections the broker holds, so that no peer can take its file descriptors.

Every connection libzmq accepts takes a file descriptor, and so does every HTTP
request. Once the process holds as many as its ``RLIMIT_NOFILE`` allows,
libzmq's accept fails and is retried at once, for good (a core spins); no new
producer or subscriber gets in, and /healthz and /metrics stop answering. A
peer needs no key to get there: idle TCP connections are enough.

So the descriptors are planned when the broker starts (:class:`ConnectionLimits`):

- a spare of ``max(64, limit / 8)`` for the broker's own use (its sockets, reads
  of ``/proc``, connections accepted but not yet refused);
- HTTP gets ``min(1024, max(16, limit / 16))`` connections (more are closed at once);
- the rest is shared evenly by the bound sockets. Each holds at most
  ``max_connections`` (or its share of the rest, if smaller), and at most
  ``max_connections_per_ip`` from one IP address (or a quarter of the socket's
  cap, if smaller).

The caps are enforced at the socket monitor's ACCEPTED event
(:meth:`broker.monitor.ConnectionMonitor.gate`): a connection over a cap is shut
down at once, so libzmq closes it, counted by socket and reason (``socket_full``,
``address_full``) and logged at most once every 10 s per socket. Connections
already open stay. A peer that never finishes its ZMTP handshake is dropped
after ``handshake_timeout`` (``ZMQ_HANDSHAKE_IVL``, set by the broker), and one
that stops answering heartbeats after a few seconds, so its slot comes free.
Nothing here touches a record.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Protocol

from broker._roles import BOUND

__all__ = ["REASONS", "ConnectionLimits", "raise_fd_limit"]

_log = logging.getLogger("logfabric.broker")

#: Why a connection was refused: its socket held its cap, or its address held its share.
REASONS = ("socket_full", "address_full")
#: The bound sockets whose connections are capped.
ROLES = tuple(s.role for s in BOUND)
#: The HTTP server's most connections at once, whatever the descriptor limit.
HTTP_MOST = 1024
_LOG_EVERY = 10.0
#: Below this many connections per bound socket the broker warns at start that its descriptor limit is low.
_TIGHT = 1024
#: The soft descriptor limit :func:`raise_fd_limit` goes up to at most.
_FD_CEILING = 1 << 20


def raise_fd_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit (at most 2**20); return the soft limit.

    A broker process holds a descriptor per connection: the soft limit of
    1,024 many systems start services with would cap it far below what the
    machine allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = _FD_CEILING if hard == resource.RLIM_INFINITY else min(hard, _FD_CEILING)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else _FD_CEILING


def _open_fds() -> int:
    """Descriptors this process holds now (64 when it cannot tell)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


class ConnectionLimits:
    """How many connections each bound socket, and each IP address at it, may hold; enforced at accept.

    ``endpoints`` maps roles to the bound endpoints (their LAST_ENDPOINT).
    ``per_socket`` and ``per_ip`` are the configured caps; ``fd_limit`` (by
    default the process's soft ``RLIMIT_NOFILE``) and the descriptors open now
    may make them smaller (:attr:`caps`, :attr:`http`).
    """

    def __init__(
        self,
        endpoints: Mapping[str, str],
        per_socket: int,
        per_ip: int,
        *,
        http: bool = True,
        fd_limit: int | None = None,
    ) -> None:
        self._local: dict[str, int | str] = {}
        for role in ROLES:
            if role in endpoints:
                scheme, _, rest = endpoints[role].partition("://")
                self._local[role] = int(rest.rpartition(":")[2]) if scheme == "tcp" else rest
        limit = fd_limit if fd_limit is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit == resource.RLIM_INFINITY or limit > _FD_CEILING:
            limit = _FD_CEILING
        self.fd_limit = int(limit)
        spare = max(64, self.fd_limit // 8)
        self.http = min(HTTP_MOST, max(16, self.fd_limit // 16)) if http else 0
        """The HTTP server's most connections at once."""
        share = max(16, (self.fd_limit - _open_fds() - spare - self.http) // max(1, len(self._local)))
        self.caps: dict[str, tuple[int, int]] = {}
        """``{role: (most connections, most from one IP address)}``."""
        for role in self._local:
            cap = min(per_socket, share)
            self.caps[role] = (cap, max(1, min(per_ip, cap if cap == per_socket else cap // 4)))
        self._open: dict[str, dict[int, str]] = {role: {} for role in self._local}  # admitted: fd -> address
        self._by_ip: dict[str, Counter[str]] = {role: Counter() for role in self._local}
        self._refused: Counter[tuple[str, str]] = Counter()
        self._logged: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        if share < per_socket:
            _log.log(
                logging.WARNING if share < _TIGHT else logging.DEBUG,
                "the descriptor limit (%d) leaves room for %d connections per bound socket, fewer than "
                "max_connections (%d): capped at %s. Raise the limit (ulimit -n) to hold more",
                self.fd_limit,
                share,
                per_socket,
                ", ".join(f"{r} {c}/{a} per address" for r, (c, a) in self.caps.items()),
            )

    @property
    def roles(self) -> tuple[str, ...]:
        """The bound sockets whose connections are capped."""
        return tuple(self._local)

    def attach(self, monitor: _Gated, then: Mapping[str, Callable[[int], object]] | None = None) -> None:
        """Enforce the caps at ``monitor``'s ACCEPTED events; ``then[role](fd)`` runs for admitted connections."""
        for role in self._local:
            after = (then or {}).get(role)

            def gate(fd: int, role: str = role, after: Callable[[int], object] | None = after) -> object:
                if not self.admit(role, fd):
                    return True
                return after(fd) if after is not None else False

            def closed(fd: int, role: str = role) -> None:
                self.closed(role, fd)

            monitor.gate(role, gate, closed)

    def open(self, role: str) -> int:
        """Connections admitted on ``role`` that are still open."""
        with self._lock:
            return len(self._open.get(role, ()))

    def refusals(self) -> dict[tuple[str, str], int]:
        """Connections refused, by (socket, reason)."""
        with self._lock:
            return dict(self._refused)

    def admit(self, role: str, fd: int) -> bool:
        """Whether the connection just accepted on ``fd`` by ``role`` may stay; shut it down (counted) if not.

        A number whose connection already closed (and may now be another
        socket's) is left alone: ``fd`` must be a TCP or IPC connection of
        ``role``'s bound endpoint.
        """
        if role not in self._local:
            return True
        try:
            s = socket.socket(fileno=fd)  # no dup: at the limit there is no descriptor to spare
        except OSError:  # closed meanwhile, or not a socket any more
            return True
        try:
            if s.family in (socket.AF_INET, socket.AF_INET6):
                if s.getsockname()[1] != self._local[role]:
                    return True
                address = str(s.getpeername()[0])
            elif s.family == socket.AF_UNIX and s.getsockname() == self._local[role]:
                address = ""
            else:
                return True
            cap, per_ip = self.caps[role]
            with self._lock:
                held = self._open[role]
                if len(held) >= cap:
                    reason = "socket_full"
                elif address and self._by_ip[role][address] >= per_ip:
                    reason = "address_full"
                else:
                    self._open[role][fd] = address
                    if address:
                        self._by_ip[role][address] += 1
                    return True
                self._refused[(role, reason)] += 1
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            return True
        finally:
            s.detach()
        self._log_refusal(role, reason, address)
        return False

    def closed(self, role: str, fd: int) -> None:
        """Forget the connection on ``fd`` (libzmq reported it disconnected)."""
        with self._lock:
            address = self._open.get(role, {}).pop(fd, None)
            if address:
                counts = self._by_ip[role]
                counts[address] -= 1
                if counts[address] <= 0:
                    del counts[address]

    def _log_refusal(self, role: str, reason: str, address: str) -> None:
        now = time.monotonic()
        last, unlogged = self._logged.get(role, (0.0, 0))
        if last and now - last < _LOG_EVERY:
            self._logged[role] = (last, unlogged + 1)
            return
        self._logged[role] = (now, 0)
        cap, per_ip = self.caps[role]
        why = f"it holds {cap} connections" if reason == "socket_full" else f"{address} holds {per_ip} connections"
        _log.warning(
            "refused a connection to %s from %s (%s): %s, its cap%s",
            role,
            address or "an IPC peer",
            reason,
            why,
            f" ({unlogged} more refused since the last message)" if unlogged else "",
        )


class _Gated(Protocol):
    """What :meth:`ConnectionLimits.attach` needs of the socket monitor."""

    def gate(
        self, name: str, on_accepted: Callable[[int], object], on_closed: Callable[[int], object] | None = None
    ) -> None: ...
