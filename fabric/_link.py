"""A producer's socket in one process: how it opens, what its peers send back, whether it is connected.

Used only by a handler's sender thread (:mod:`fabric._sender`), which looks
at the link between bursts and whenever the link has news, never per record.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from fabric import _sockets, curve

__all__ = ["Link", "open_link", "send"]

_UP = zmq.EVENT_HANDSHAKE_SUCCEEDED
_DOWN = zmq.EVENT_DISCONNECTED
_STOPPED = zmq.EVENT_MONITOR_STOPPED
_names = itertools.count()
# Messages read from the socket at one time: a flood cannot hold a logging call for long.
_READ_LIMIT = 4096
_TIMER_SLACK = 0.02  # seconds: how early a libzmq linger may end, as Python's clock sees it


def _base_send() -> Any:
    # pyzmq's Socket.send is a Python wrapper (routing ids, groups, Frames) around
    # the backend's send; for plain bytes it only forwards. Calling the backend's
    # directly saves a Python frame on every record.
    for klass in zmq.Socket.__mro__[1:]:
        if "send" in vars(klass):
            return vars(klass)["send"]
    return zmq.Socket.send


#: ``send(sock, message, flags)``: one send of one frame of bytes (``zmq.Again`` when the socket is full).
send = _base_send()


class Link:
    """The socket, its context and its connection monitor, with what they have told the handler so far.

    Attributes:
        up: whether a peer is connected. Always True for a bound socket,
            which queues nothing for peers that are not there; for a
            connecting one, learnt from a socket monitor. While it is False
            the sender keeps records in its own bounded queue.
        subscriptions: pub mode: the distinct topics the socket holds
            subscriptions for, as libzmq reports them.
    """

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        sock: zmq.Socket[bytes],
        monitor: zmq.Socket[bytes] | None,
        endpoint: str,
    ) -> None:
        self.ctx = ctx
        self.sock = sock
        self.monitor = monitor
        self.endpoint = endpoint
        """The endpoint attached to (for a bound ``*`` port: the one it got)."""
        self.up = monitor is None
        self.subscriptions: set[bytes] = set()
        self.subscription_bytes = 0

    def look(self, stats: dict[str, int]) -> None:
        """Read what peers sent up (pub) and whether the peer is there."""
        if self.sock.type == zmq.XPUB:
            self.read_upstream(stats)
        if self.monitor is not None:
            self.read_events()

    def read_events(self) -> None:
        """Learn from the monitor whether the connection is up."""
        monitor = self.monitor
        if monitor is None or not int(monitor.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            return  # the common case, asked without raising
        while monitor is not None:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            except zmq.Again:
                return
            if event == _UP:
                self.up = True
            elif event == _DOWN:
                self.up = False
            elif event == _STOPPED:
                # Someone else attached a monitor to this socket (libzmq keeps one,
                # so it is theirs now): with no more news, stop bounding the queue
                # rather than block it.
                monitor.close(linger=0)
                self.monitor = monitor = None
                self.up = True

    def read_upstream(self, stats: dict[str, int]) -> bool:
        """Read and discard what peers sent up; return whether a subscription arrived.

        libzmq keeps every message a subscriber sends an XPUB until the
        application reads it, so everything is read here: subscriptions
        and unsubscriptions update :attr:`subscriptions` (the socket reports
        each topic when the first subscriber takes it and when the last one
        drops it); anything else is counted in ``stats["upstream_discarded"]``.
        """
        sock = self.sock
        subscribed = False
        if not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            return False  # the common case, asked without raising
        for _ in range(_READ_LIMIT):
            try:
                message = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            kind = message[:1]
            if kind == b"\x01":
                subscribed = True
                topic = message[1:]
                if topic not in self.subscriptions:
                    self.subscriptions.add(topic)
                    self.subscription_bytes += len(topic) + _sockets.SUBSCRIPTION_OVERHEAD
            elif kind == b"\x00":
                topic = message[1:]
                if topic in self.subscriptions:
                    self.subscriptions.discard(topic)
                    self.subscription_bytes -= len(topic) + _sockets.SUBSCRIPTION_OVERHEAD
            else:
                stats["upstream_discarded"] += 1
        return subscribed

    def over_budget(self) -> bool:
        """Whether the subscriptions held exceed :data:`fabric._sockets.SUBSCRIPTION_BUDGET`."""
        return self.subscription_bytes > _sockets.SUBSCRIPTION_BUDGET

    def close(self, linger_ms: int) -> bool:
        """Close the socket (waiting up to ``linger_ms`` for queued messages) and its context.

        Returns whether everything queued left before the wait ran out
        (``ctx.term()`` is libzmq's only blocking wait for that; with nothing
        queued it returns at once).
        """
        self._close_monitor()
        self.sock.close(linger=linger_ms)
        started = time.monotonic()
        self.ctx.term()  # returns once queued messages left or linger expired
        # libzmq's timers run on a cached clock and can fire a little early: a wait that
        # took nearly the whole linger is taken for one that ran out.
        return time.monotonic() - started < linger_ms / 1000 - _TIMER_SLACK

    def _close_monitor(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
            self.monitor = None

    def inherited(self) -> list[tuple[object, object]]:
        """The zmq objects to keep, untouched, in a forked child: ``(context, socket)`` pairs."""
        pairs: list[tuple[object, object]] = [(self.ctx, self.sock)]
        if self.monitor is not None:
            pairs.append((self.ctx, self.monitor))
        return pairs


def open_link(
    mode: str,
    endpoint: str,
    bind: bool,
    hwm: int,
    linger: float,
    keys: curve.CurveKeys | None,
) -> Link:
    """Open a producer socket: PUSH or XPUB, bound or connected, monitored when it connects.

    Whatever a peer sends up is capped: a message larger than
    :data:`fabric._sockets.MAX_SUBSCRIPTION` makes libzmq drop that
    connection, and at most :data:`fabric._sockets.UPSTREAM_HWM` messages wait
    per peer before libzmq stops reading it.
    """
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.PUSH if mode == "push" else zmq.XPUB)
    monitor: zmq.Socket[bytes] | None = None
    try:
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.SNDTIMEO, 0)  # the sender thread never blocks in a send: it waits for room itself
        sock.setsockopt(zmq.LINGER, int(linger * 1000))
        sock.setsockopt(zmq.MAXMSGSIZE, _sockets.MAX_SUBSCRIPTION)
        sock.setsockopt(zmq.RCVHWM, _sockets.UPSTREAM_HWM)
        if mode == "pub":
            sock.setsockopt(zmq.XPUB_NODROP, 1)  # full queue -> EAGAIN, counted
        _sockets.tune(sock)
        if keys is not None:
            keys.apply(sock)
        if not bind:
            address = f"inproc://logfabric.link.{id(ctx):x}.{next(_names)}"
            sock.monitor(address, _UP | _DOWN | _STOPPED)
            monitor = ctx.socket(zmq.PAIR)
            monitor.setsockopt(zmq.LINGER, 0)
            monitor.connect(address)
        _sockets.attach(sock, endpoint, bind)
        if bind:
            endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    except Exception:
        if monitor is not None:
            sock.disable_monitor()
            monitor.close(linger=0)
        sock.close(linger=0)
        ctx.term()
        raise
    return Link(ctx, sock, monitor, endpoint)
