"""The subscriptions the broker holds for its subscribers, and a budget on them.

libzmq keeps every distinct subscription prefix in a trie, a node per byte, in
each socket the subscription passes through (the egress, the central XSUB, the
bridges and the XSUB ingests that forward it to producers): about 200 bytes of
memory per byte of prefix. Its proxies cannot refuse one subscriber's
subscriptions, and nothing that leaves a proxy says which connection it came
from (libzmq drops a message's metadata when the proxy sends it on).

So the broker watches, from outside the data path, in two ways:

- the central XSUB also connects to the watch's XPUB, which is told of every
  prefix the broker starts or stops holding (an XPUB passes on only the first
  subscription to a prefix and the last unsubscription), so
  :attr:`SubscriptionWatch.held` is exact; no record ever reaches it. It runs
  behind the egress when subscriptions pour in, so it catches slow growth and
  the sum over many connections: when the prefixes held exceed the budget, the
  connection that sent the most bytes is dropped (reason ``over_budget``);
- every 50 ms (10 ms while subscriptions arrive) it reads the kernel's count
  of the bytes each egress TCP connection has sent (Linux ``TCP_INFO``),
  which is ahead of anything the broker took in: a connection that sent more
  than the budget within a second is dropped at once (reason
  ``sent_too_much``). Slow growth is the total's to catch; there the top
  sender is the one that sent the most beyond 64 bytes a second of age
  (heartbeats).

Dropping a connection makes libzmq remove its subscriptions. A libzmq
subscriber reconnects at once and subscribes again, and taking that in again
costs as much as the first time; so for 30 s after a drop the egress refuses
new connections from the dropped peer's IP address at the handshake (ZAP status
300, reason ``penalized``; with CurveZMQ only), where refusing costs nothing. Connections already
open stay open. Every drop is counted and logged, at most once every 10 s.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable

import zmq

__all__ = ["PenaltyBox", "SubscriptionWatch"]

_log = logging.getLogger("logfabric.broker")

_LOG_EVERY = 10.0
#: How often the kernel's byte counts are read: while subscriptions arrive, and otherwise.
#: A drop's unsubscriptions get _TICK to arrive before the total can cause another drop.
_TICK_BUSY = 0.01
_TICK = 0.05
#: Seconds over which a connection may send at most the budget.
_WINDOW = 1.0
#: Bytes per second of connection age that do not count when the top sender is sought:
#: heartbeats (a libzmq peer with a 1 s heartbeat sends about 16), with room for faster ones.
_HEARTBEAT_ALLOWANCE = 64
#: The least share of the budget a connection must have sent to be dropped for the total.
_SHARE = 16
#: Offset of ``tcpi_bytes_received`` in Linux's ``struct tcp_info`` (since Linux 4.1).
_TCPI_BYTES_RECEIVED = 128
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
#: Seconds during which the egress refuses new connections from the address of a dropped one.
PENALTY_SECONDS = 30.0
_SWEEP_AT = 1024


class PenaltyBox:
    """IP addresses whose egress connection was dropped lately; their new connections are refused until it ends."""

    def __init__(self, seconds: float = PENALTY_SECONDS) -> None:
        self.seconds = seconds
        self._until: dict[str, float] = {}
        self._refused = 0
        self._lock = threading.Lock()

    def punish(self, address: str) -> None:
        """Refuse new connections from ``address`` for the next :attr:`seconds`."""
        if address:  # an IPC peer has none; it is dropped, not refused
            now = time.monotonic()
            with self._lock:
                if len(self._until) >= _SWEEP_AT:  # many addresses: forget the ended penalties
                    self._until = {a: t for a, t in self._until.items() if t > now}
                self._until[address] = now + self.seconds

    def refuses(self, address: str) -> bool:
        """Whether a new connection from ``address`` is refused now (counted if so)."""
        with self._lock:
            until = self._until.get(address)
            if until is None:
                return False
            if time.monotonic() >= until:
                del self._until[address]
                return False
            self._refused += 1
            return True

    @property
    def refused(self) -> int:
        """New connections refused so far."""
        with self._lock:
            return self._refused


class SubscriptionWatch:
    """Count the prefixes held for the egress's subscribers and keep them within ``budget`` bytes.

    ``peers()`` gives the egress's connections as ``{fd: accepted_at}`` (from
    the socket monitor, ``time.monotonic()``). Before :meth:`start`,
    :meth:`serve` names the egress's bound endpoint, so that only its
    connections are ever dropped.
    """

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        address: str,
        budget: int,
        peers: Callable[[], dict[int, float]],
        box: PenaltyBox,
    ) -> None:
        self.address = address
        self.budget = budget
        self.box = box
        self._peers = peers
        self._sock = ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)  # a notification lost would make the count wrong for good
        self._sock.bind(address)
        self._local: int | str | None = None  # the egress's TCP port or IPC path
        self._count = 0
        self._bytes = 0
        self._refused: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_drop = 0.0
        self._windows: dict[tuple[int, float], tuple[float, int]] = {}  # (fd, accepted) -> (since, bytes then)
        self._last_log = 0.0
        self._unlogged = 0
        self._thread = threading.Thread(target=self._run, name="logfabric-subscriptions", daemon=True)

    @property
    def held(self) -> tuple[int, int]:
        """Distinct prefixes held for subscribers, and their bytes."""
        with self._lock:
            return self._count, self._bytes

    def refusals(self) -> dict[str, int]:
        """Egress connections dropped or refused, by reason (``over_budget``, ``sent_too_much``, ``penalized``)."""
        with self._lock:
            return {**self._refused, "penalized": self.box.refused}

    def serve(self, endpoint: str) -> None:
        """Watch over the connections of the egress bound at ``endpoint`` (its LAST_ENDPOINT)."""
        scheme, _, rest = endpoint.partition("://")
        if scheme == "tcp":
            self._local = int(rest.rpartition(":")[2])
        elif scheme == "ipc":
            self._local = rest

    def start(self) -> None:
        """Start watching (the central XSUB must already be connected)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the watch socket (before the context is destroyed)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self._sock.close(linger=0)

    def _run(self) -> None:
        sock = self._sock
        last_look = 0.0
        busy = False
        while not self._stop.is_set():
            try:
                if sock.poll(int((_TICK_BUSY if busy else _TICK) * 1000)):
                    self._note(sock.recv(zmq.NOBLOCK))
                    busy = True
            except zmq.Again:
                pass
            except zmq.ZMQError:  # the context is ending
                return
            now = time.monotonic()
            if now - last_look >= (_TICK_BUSY if busy else _TICK):
                last_look, busy = now, False
                self._look(now)

    def _note(self, notification: bytes) -> None:
        if not notification or notification[0] not in (0, 1):
            return  # a user message a subscriber sent up the chain; nothing is held for it
        sign = 1 if notification[0] == 1 else -1
        with self._lock:
            self._count += sign
            self._bytes += sign * (len(notification) - 1)

    # ------------------------------------------------------------------ dropping

    def _look(self, now: float) -> None:
        """Drop every connection that sent more than the budget within a second, then the top sender if over."""
        excess: list[tuple[int, int, int]] = []  # (bytes beyond the heartbeat allowance, bytes, fd)
        windows: dict[tuple[int, float], tuple[float, int]] = {}
        for fd, accepted_at in self._peers().items():
            received = self._received(fd)
            if received is None:
                continue
            key = (fd, accepted_at)  # a number libzmq reuses for a later connection starts afresh
            started, at_start = self._windows.get(key, (accepted_at, 0))
            if received - at_start > self.budget:
                self._drop(fd, "sent_too_much", received)
                continue
            windows[key] = (now, received) if now - started >= _WINDOW else (started, at_start)
            excess.append((received - int(_HEARTBEAT_ALLOWANCE * (now - accepted_at)), received, fd))
        self._windows = windows
        if self._bytes > self.budget and excess and now - self._last_drop >= _TICK:
            beyond, received, fd = max(excess)
            # While a burst's backlog is still passing through the bridges the total runs ahead of
            # what open connections sent: a newcomer that sent next to nothing is not the cause.
            if beyond >= self.budget // _SHARE:
                self._drop(fd, "over_budget", received)

    def _received(self, fd: int) -> int | None:
        """Bytes the kernel received on ``fd`` if it is a connection of the egress (0 if unknown), else None."""
        try:
            with socket.socket(fileno=os.dup(fd)) as s:
                if s.type != socket.SOCK_STREAM:
                    return None
                if s.family == socket.AF_UNIX:
                    return 0 if s.getsockname() == self._local else None
                if s.family not in (socket.AF_INET, socket.AF_INET6) or s.getsockname()[1] != self._local:
                    return None
                if _TCP_INFO is None:
                    return 0
                info = s.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 256)
        except OSError:  # closed meanwhile, or not a socket any more
            return None
        if len(info) < _TCPI_BYTES_RECEIVED + 8:
            return 0
        return int(struct.unpack_from("=Q", info, _TCPI_BYTES_RECEIVED)[0])

    def _drop(self, fd: int, reason: str, received: int) -> None:
        """Shut the connection on ``fd`` down; libzmq then closes it as if the peer had, subscriptions and all."""
        try:
            with socket.socket(fileno=os.dup(fd)) as s:
                peer = s.getpeername()
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            return
        self._last_drop = time.monotonic()
        if isinstance(peer, tuple):
            self.box.punish(str(peer[0]))
        with self._lock:
            self._refused[reason] += 1
            count, held = self._count, self._bytes
        who = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else (peer or "an IPC peer")
        now = time.monotonic()
        if self._last_log and now - self._last_log < _LOG_EVERY:
            self._unlogged += 1
            return
        extra = f" ({self._unlogged} more since the last message)" if self._unlogged else ""
        self._last_log, self._unlogged = now, 0
        why = "it sent more than that" if reason == "sent_too_much" else "it sent the most"
        _log.warning(
            "dropped the egress connection from %s (%s): it had sent %d bytes, and the subscription budget is "
            "%d bytes (%d held now in %d prefixes); %s. New connections from its address are refused for %g s. "
            "Raise subscription_budget if this subscriber is legitimate%s",
            who,
            reason,
            received,
            self.budget,
            held,
            count,
            why,
            self.box.seconds,
            extra,
        )
