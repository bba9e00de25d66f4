"""A ZmqHandler's sending path in one process, beyond the common case of one record, one send."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

import zmq

from fabric._link import Link, send

__all__ = ["Outbox"]


class _Owner(Protocol):
    hwm: int
    buffer_bytes: int
    bind: bool
    stats: dict[str, int]

    def _open(self, endpoint: str | None = None) -> Link: ...


class Outbox:
    """What a handler keeps per process off its per-record path, and the slow ways of sending.

    The link (socket, monitor and what they told), the records held for a
    first subscriber, and the topic table. Kept apart from the handler's own
    attributes also because CPython shares one key table between instances
    (and so reads their attributes fastest) only up to 30 attribute names.
    """

    __slots__ = ("by_topic", "endpoint", "held", "held_bytes", "link", "owner", "ready", "reopenable", "sent_at_open")

    def __init__(self, owner: _Owner, ready: bool) -> None:
        self.owner = owner
        self.link: Link | None = None
        self.endpoint: str | None = None
        """The endpoint last attached to (for a bound ``*`` port: the one it got), to open again there."""
        self.sent_at_open = 0
        """``stats["sent"]`` when the link opened: unchanged, nothing was handed to it."""
        self.reopenable = False
        """Closed by ``logging.shutdown()`` before exit: open again at the next record."""
        self.ready = ready
        """Push: always; pub: once a subscriber has subscribed."""
        self.held: deque[bytes] = deque()
        """Pub: records waiting for the first subscriber, oldest first."""
        self.held_bytes = 0
        self.by_topic: dict[bytes, list[Any]] = {}
        """Topic -> the ``[lead, last seq]`` entry every key with that topic shares."""

    @property
    def fast(self) -> bool:
        """Whether records may go straight to the socket: open, ready, nothing held, peer there."""
        return self.link is not None and self.link.up and self.ready and not self.held

    def send(self, message: bytes) -> None:
        """Send ``message`` on the open link: hold it for a subscriber, or admit it while the peer is away."""
        link, stats = self.link, self.owner.stats
        assert link is not None
        if not self.ready or self.held:
            self.hold(message)
            if self.ready:
                self.flush()
            else:
                self.poll_ready()
            return
        if not link.admit(len(message), self.owner.buffer_bytes):
            stats["dropped"] += 1
            return
        try:
            send(link.sock, message)
        except zmq.Again:
            stats["dropped"] += 1
        else:
            stats["sent"] += 1

    def hold(self, message: bytes) -> None:
        """Keep ``message`` for a subscriber to come: at most ``hwm`` records and ``buffer_bytes`` bytes.

        Beyond either, the oldest records are dropped and counted.
        """
        held, owner = self.held, self.owner
        held.append(message)
        self.held_bytes += len(message)
        while len(held) > owner.hwm or self.held_bytes > owner.buffer_bytes:
            self.held_bytes -= len(held.popleft())
            owner.stats["dropped"] += 1

    def flush(self) -> None:
        """Send held records, oldest first, until the socket is full."""
        held, stats = self.held, self.owner.stats
        assert self.link is not None
        sock = self.link.sock
        while held:
            try:
                sock.send(held[0], zmq.NOBLOCK)
            except zmq.Again:
                return
            self.held_bytes -= len(held.popleft())
            stats["sent"] += 1

    def poll_ready(self) -> bool:
        """In pub mode, records wait in memory until the first subscription arrives.

        A PUB socket silently discards what it sends before any subscriber has
        told it what it wants (the slow-joiner loss). The XPUB socket used here
        hears that subscription, so records logged earlier wait (see
        :meth:`hold`) and go out as soon as it arrives. Anything else a peer
        sends is discarded and counted; it does not make the handler ready.
        """
        link = self.link
        assert link is not None
        if link.read_upstream(self.owner.stats):
            self.ready = True
        if self.owner.bind and link.over_budget():
            self.reopen()
        elif self.ready:
            self.flush()
        return self.ready

    def look(self, unseen: int) -> None:
        """The periodic look at the link (see :meth:`fabric._link.Link.look`)."""
        link = self.link
        if link is not None:
            link.look(self.owner.stats, unseen)
            if self.owner.bind and link.over_budget():
                self.reopen()

    def reopen(self) -> None:
        """Drop every subscriber of a bound pub socket by opening a new one.

        libzmq cannot drop one subscription or one peer of a bound socket, and
        it keeps every distinct subscription it is sent (about 85 bytes of
        memory per byte), so when they exceed the budget this is the only way to
        give the memory back. Subscribers reconnect and subscribe again; what
        they miss meanwhile shows as gaps. A connecting socket's one peer is the
        broker it was given, whose subscriptions are trusted.
        """
        link = self.link
        assert link is not None
        self.owner.stats["subscriptions_reset"] += 1
        self.link = None
        link.close(0)
        self.ready = False  # records wait for a subscriber again, as at the start
        self.owner._open(link.endpoint)

    def _send_held(self, deadline: float) -> None:
        """Send held records (waiting for a subscriber if need be) until none is left or ``deadline``."""
        while self.held and time.monotonic() < deadline and self.link is not None:
            if self.ready:
                self.flush()
            else:
                self.poll_ready()
            if self.held:
                time.sleep(0.005)

    def drain(self, deadline: float) -> bool:
        """Return once everything handed to the link has left the process, or at ``deadline``; say which.

        Held records are sent first; if some are still held at ``deadline``,
        they and the link stay. Otherwise the link is closed, waiting until
        its queue is empty (libzmq can only wait for that while closing), and
        the next record opens a new one. A link nothing was handed to stays.
        """
        self._send_held(deadline)
        link = self.link
        if link is None:
            return True
        if self.held:
            return False
        if self.owner.stats["sent"] == self.sent_at_open:
            return True
        self.link = None
        return link.close(int(max(0.0, deadline - time.monotonic()) * 1000))

    def close(self, deadline: float) -> None:
        """Send held records until ``deadline`` (dropping, counted, what is left), then close the link."""
        self._send_held(deadline)
        self.owner.stats["dropped"] += len(self.held)
        self.held.clear()
        self.held_bytes = 0
        link, self.link = self.link, None
        if link is not None:
            link.close(int(max(0.0, deadline - time.monotonic()) * 1000))
