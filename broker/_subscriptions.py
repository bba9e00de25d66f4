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
- every 50 ms (10 ms while subscriptions arrive, and 2 ms for connections
  less than a second old: a flood comes right after the handshake, and each
  millisecond lets more of it in) it reads the kernel's count of the bytes
  each egress TCP connection has sent (Linux ``TCP_INFO``), which is ahead of
  anything the broker took in: a connection that sent more than the budget
  within a second is dropped at once (reason ``sent_too_much``). Slow growth
  is the total's to catch; there the top sender is the one that sent the most
  beyond 64 bytes a second of age (heartbeats). A tick is at least four times
  as long as the last look took, so hundreds of connections cost a bounded
  share of a core.

Dropping a connection makes libzmq remove its subscriptions. A libzmq
subscriber reconnects at once and subscribes again, and taking that in again
costs as much as the first time; so for 30 s after a drop new egress
connections from the dropped peer's IP address are refused (reason
``penalized``). With CurveZMQ the ZAP handler answers status 300 at the
handshake, where refusing costs nothing. In plaintext no ZAP handler runs (one
cost silent losses after a broker restart): the watch shuts the connection down
as soon as the socket monitor reports it accepted (:meth:`SubscriptionWatch.refuse_penalized`),
so only what arrives in the meantime (a few milliseconds) is taken in; the peer
retries every 100 ms or so and is refused each time. Connections already open
stay open. Every drop is counted once and logged, at most once every 10 s.
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
#: How often connections younger than _YOUNG seconds are looked at (a flood comes right after the handshake).
_TICK_YOUNG = 0.002
_YOUNG = 1.0
#: A tick is at least this many times as long as the last look took.
_COST_FACTOR = 4
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
        self._dropped: set[tuple[int, float]] = set()  # (fd, accepted) shut down, not yet reported gone
        self._shut_at_accept: set[int] = set()  # fds refuse_penalized shut down (the monitor thread's)
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
        last_full = last_young = 0.0
        busy = False
        cost = 0.0  # seconds the last look took
        while not self._stop.is_set():
            peers = self._peers()
            now = time.monotonic()
            young = any(now - at < _YOUNG for at in peers.values())
            # Never spend more than about a quarter of a core looking, whatever the number of peers.
            full_tick = max(_TICK_BUSY if busy else _TICK, cost * _COST_FACTOR)
            young_tick = max(_TICK_YOUNG, cost * _COST_FACTOR) if young else full_tick
            wait = min(last_full + full_tick, last_young + young_tick) - now
            try:
                if sock.poll(max(0, int(wait * 1000))):
                    while True:  # every notification waiting, not one a tick
                        self._note(sock.recv(zmq.NOBLOCK))
                        busy = True
            except zmq.Again:
                pass
            except zmq.ZMQError:  # the context is ending
                return
            now = time.monotonic()
            if now - last_full >= full_tick:
                last_full = last_young = now
                busy = False
                self._look(now, self._peers(), young_only=False)
                cost = time.monotonic() - now
            elif young and now - last_young >= young_tick:
                last_young = now
                self._look(now, self._peers(), young_only=True)
                cost = time.monotonic() - now

    def _note(self, notification: bytes) -> None:
        if not notification or notification[0] not in (0, 1):
            return  # a user message a subscriber sent up the chain; nothing is held for it
        sign = 1 if notification[0] == 1 else -1
        with self._lock:
            self._count += sign
            self._bytes += sign * (len(notification) - 1)

    # ------------------------------------------------------------------ dropping

    def _look(self, now: float, peers: dict[int, float], *, young_only: bool) -> None:
        """Drop every connection that sent more than the budget within a second, then the top sender if over.

        With ``young_only`` only the connections accepted less than :data:`_YOUNG`
        ago are looked at (a flood comes at once, right after the handshake), and
        the total is left for the next full look.
        """
        excess: list[tuple[int, int, int]] = []  # (bytes beyond the heartbeat allowance, bytes, fd)
        windows: dict[tuple[int, float], tuple[float, int]] = {}
        with self._lock:
            penalized, self._shut_at_accept = self._shut_at_accept & peers.keys(), self._shut_at_accept - peers.keys()
        self._dropped.update((fd, peers[fd]) for fd in penalized)  # counted as penalized already
        for fd, accepted_at in peers.items():
            key = (fd, accepted_at)  # a number libzmq reuses for a later connection starts afresh
            if key in self._dropped:
                continue  # shut down already; libzmq has yet to report it gone
            if young_only and now - accepted_at >= _YOUNG:
                if key in self._windows:
                    windows[key] = self._windows[key]
                continue
            received = self._received(fd)
            if received is None:
                continue
            started, at_start = self._windows.get(key, (accepted_at, 0))
            if received - at_start > self.budget:
                if self._drop(fd, "sent_too_much", received):
                    self._dropped.add(key)
                continue
            windows[key] = (now, received) if now - started >= _WINDOW else (started, at_start)
            excess.append((received - int(_HEARTBEAT_ALLOWANCE * (now - accepted_at)), received, fd))
        self._dropped.intersection_update(peers.items())
        self._windows = windows
        if young_only:
            return
        if self._bytes > self.budget and excess and now - self._last_drop >= _TICK:
            beyond, received, fd = max(excess)
            # While a burst's backlog is still passing through the bridges the total runs ahead of
            # what open connections sent: a newcomer that sent next to nothing is not the cause.
            if beyond >= self.budget // _SHARE and self._drop(fd, "over_budget", received):
                self._dropped.add((fd, peers[fd]))

    def refuse_penalized(self, fd: int) -> bool:
        """Shut down the egress connection just accepted on ``fd`` if its address is penalized (counted).

        Without CurveZMQ no ZAP handler runs, so this is where a penalty is
        enforced: at the ACCEPTED event, before the subscriber has sent much.
        Called before the monitor lists ``fd`` among the egress's connections.
        """
        with self._lock:
            self._shut_at_accept.discard(fd)  # a number reused by a new connection
        try:
            with socket.socket(fileno=os.dup(fd)) as s:
                if s.family not in (socket.AF_INET, socket.AF_INET6) or s.getsockname()[1] != self._local:
                    return False
                if not self.box.refuses(str(s.getpeername()[0])):
                    return False
                s.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed meanwhile, or not a socket any more
            return False
        with self._lock:
            self._shut_at_accept.add(fd)
        return True

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

    def _drop(self, fd: int, reason: str, received: int) -> bool:
        """Shut the connection on ``fd`` down; libzmq then closes it as if the peer had, subscriptions and all."""
        try:
            with socket.socket(fileno=os.dup(fd)) as s:
                peer = s.getpeername()
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
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
            return True
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
        return True
