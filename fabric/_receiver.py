"""One subscriber socket and its receive loop, shared by :class:`fabric.ZmqListener` and :func:`fabric.subscribe`.

:func:`configure` turns the subscriber options both take into what receives
(the endpoints, an :class:`~fabric._intake.Intake` for the filter and limits,
the CURVE keys), with the same checks for both. A :class:`Receiver` owns the
SUB or PULL socket (:func:`open_socket`) and hands out raw messages one at a
time; between them it does what every receiver must: re-resolve
``dns+tcp://`` names when due and report refused CURVE handshakes. A
re-resolution that fails keeps the current connections and is reported on
logger ``logfabric.listener`` (at most every 10 s); it never reaches the
caller, whether a listener's thread or a subscription's loop.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, cast

import zmq

from fabric import _sockets
from fabric._catchup import Catchup, LinkWatch
from fabric._history import HistoryError, When, make_plan
from fabric._intake import Intake
from fabric.codec import Limits
from fabric.curve import CurveKeys, HandshakeWatch, check_not_bound, client_keys
from fabric.discovery import Endpoints, Resolver

__all__ = ["POLL_MS", "Receiver", "Setup", "configure", "open_socket", "sees_whole_stream"]

#: The longest wait on the socket between two looks at the housekeeping and at
#: :attr:`Receiver.interrupted`.
POLL_MS = 50
_HOUSEKEEPING_EVERY = 1024  # messages: a power of two (a mask picks the turn)
_WARN_EVERY = 10.0  # seconds between two reports of a failing re-resolution
_diag = logging.getLogger("logfabric.listener")


class Setup(NamedTuple):
    """What the subscriber options make: where to attach, what to do with each message, which keys, what history."""

    endpoints: Endpoints
    intake: Intake
    curve: CurveKeys | None
    catchup: Catchup | None = None


def configure(
    endpoints: list[str],
    *,
    mode: str,
    bind: bool,
    level: int | str | None,
    loggers: Iterable[str],
    services: Iterable[str],
    limits: Limits | None,
    resolver: Resolver | None,
    resolve_interval: float,
    curve_server_key: str | os.PathLike[str] | None,
    curve_client_key: str | os.PathLike[str] | None,
    curve_allow_open_key: bool,
    history: str | list[str] | tuple[str, ...] | None = None,
    since: When | None = None,
    until: When | None = None,
    last: int | None = None,
    follow: bool = True,
    resume: bool | None = None,
) -> Setup:
    """Check the options a listener and a subscription share; raise ValueError for a bad one.

    ``endpoints`` is already a list (see :func:`fabric._sockets.endpoint_list`).
    Key files are read here, so a bad one raises before anything opens.
    """
    if mode not in ("sub", "pull"):
        raise ValueError(f"unknown mode {mode!r}: use 'sub' or 'pull'")
    checked = Endpoints(endpoints, resolver, resolve_interval)
    intake = Intake(level, loggers, services, limits, gaps=sees_whole_stream(mode, bind))
    keys = client_keys(curve_server_key, curve_client_key, allow_open_key=curve_allow_open_key)
    plan = make_plan(
        endpoints,
        mode=mode,
        bind=bind,
        history=history,
        since=since,
        until=until,
        last=last,
        follow=follow,
        resume=resume,
    )
    catchup = None
    if plan is not None:
        query: dict[str, object] = {
            "level": intake.level,
            "loggers": list(intake.loggers),
            "services": sorted(intake.services),
        }
        catchup = Catchup(plan, query, keys, resolver)
    return Setup(checked, intake, keys, catchup)


class Receiver:
    """A SUB or PULL socket read one message at a time, with the housekeeping between messages.

    Only the thread that calls :meth:`receive` may use the socket; any thread
    may set :attr:`interrupted`. :meth:`open` and :meth:`close` may alternate
    (a listener started again).
    """

    def __init__(
        self,
        endpoints: Endpoints,
        intake: Intake,
        mode: str,
        bind: bool,
        curve: CurveKeys | None = None,
        catchup: Catchup | None = None,
        raise_history: bool = True,
    ) -> None:
        self.endpoints = endpoints
        self.intake = intake
        self.mode = mode
        self.bind = bind
        self.curve = curve
        self.catchup = catchup
        """History before live records and after reconnects (see :mod:`fabric._catchup`), if asked for."""
        self.raise_history = raise_history
        """Whether a first history that fails raises from :meth:`receive` (else it is logged and live goes on)."""
        self._links: LinkWatch | None = None
        self.sock: zmq.Socket[bytes] | None = None
        """The socket while open."""
        self.interrupted = False
        """Set to make a waiting :meth:`receive` return None within :data:`POLL_MS`; cleared by :meth:`open`."""
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._watch: HandshakeWatch | None = None
        self._count = 0
        self._refresh_warned = -math.inf

    def open(self) -> None:
        """Open the socket and attach it to every endpoint; a bad or unusable endpoint raises here."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        keys = self.curve

        def watch(sock: zmq.Socket[bytes]) -> None:  # a refused CURVE handshake is reported, not silent
            if self.catchup is not None:
                self._links = LinkWatch(sock, keys)  # reports refused handshakes too
            elif keys is not None:
                self._watch = HandshakeWatch(sock, keys)

        try:
            sock = open_socket(
                ctx, self.endpoints, self.mode, self.bind, self.intake.subscriptions(), curve=keys, before_attach=watch
            )
        except Exception:
            self._close_watch()
            ctx.term()
            raise
        self._ctx, self.sock = ctx, sock
        self.interrupted = False

    def close(self) -> None:
        """Close the socket (pending messages are dropped) and its context; harmless when closed."""
        self._close_watch()
        if self.catchup is not None:
            self.catchup.close()
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def receive(self, wait: float | None = None) -> list[bytes] | None:
        """Return the next message (its frames); None after ``wait`` seconds without one, or once interrupted.

        ``wait=None`` waits until a message comes or :attr:`interrupted` is
        set; ``0`` only takes a message that is already waiting.
        """
        sock = self.sock
        assert sock is not None, "receive() needs an open receiver"
        catchup = self.catchup
        if catchup is not None:
            replayed = self._history(catchup)
            if replayed is not None or catchup.done:
                return replayed
        self._count += 1
        if not self._count & (_HOUSEKEEPING_EVERY - 1):  # now and then, even while messages never stop coming
            self.housekeeping()
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
            if catchup is not None:
                catchup.last_live = time.time()
            return frames
        except zmq.Again:
            pass
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            self.housekeeping()
            if self.interrupted:
                return None
            timeout = POLL_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                timeout = min(POLL_MS, max(1, math.ceil(left * 1000)))
            if catchup is not None:
                replayed = self._history(catchup)
                if replayed is not None or catchup.done:
                    return replayed
            if sock.poll(timeout):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                if catchup is not None:
                    catchup.last_live = time.time()
                return frames

    def _history(self, catchup: Catchup) -> list[bytes] | None:
        """The next message from history, if history is being read (first, or after a reconnect)."""
        links = self._links
        try:
            if not catchup.started:
                catchup.begin(links, len(self.endpoints.plain) + len(self.endpoints.connected))
            if links is not None:
                if links.waiting():
                    links.check()
                catchup.reconnected(links)
            replayed = catchup.next()
            if replayed is None and links is not None and links.waiting():
                # A history read that failed may have outlasted another reconnect: fetch for it before live.
                links.check()
                catchup.reconnected(links)
                replayed = catchup.next()
            return replayed
        except (HistoryError, ValueError) as exc:
            if self.raise_history:
                raise
            _diag.warning("history: %s; going on with live records", exc)
            catchup.close_stream()
            return None

    def take(self) -> list[bytes] | None:
        """Return a message that is already waiting, or None; no housekeeping (for a final drain)."""
        assert self.sock is not None, "take() needs an open receiver"
        try:
            return self.sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None

    def housekeeping(self) -> None:
        """Report refused CURVE handshakes; re-resolve ``dns+tcp://`` names when due, never raising for it."""
        if self._watch is not None:
            self._watch.check()
        if self._links is not None:
            self._links.check()
        if time.monotonic() < self.endpoints.next_refresh:
            return
        assert self.sock is not None
        try:
            self.endpoints.refresh(self.sock)
        except Exception as exc:  # a resolver or an address that fails must not end the receiving loop
            now = time.monotonic()
            if now - self._refresh_warned >= _WARN_EVERY:
                self._refresh_warned = now
                _diag.warning("re-resolving the endpoints failed (keeping the current connections): %r", exc)

    def detach(self) -> float:
        """Stop new arrivals where libzmq keeps what is queued; return how many messages may still be read.

        Unbinding a tcp/ipc endpoint ends its connections but delivers what
        they queued. Disconnecting would drop a connection's queue, so a
        connected (or inproc) endpoint stays attached and gives at most one full
        queue; an inproc queue holds both sides' high-water marks.
        """
        sock = self.sock
        assert sock is not None, "detach() needs an open receiver"
        queues = 0
        if self.bind:
            for endpoint in self.endpoints.bound:
                if endpoint.startswith(("tcp://", "ipc://")):
                    try:
                        sock.unbind(endpoint)
                        continue
                    except zmq.ZMQError:
                        pass
                queues += 2 if endpoint.startswith("inproc://") else 1
        else:
            for endpoint in (*self.endpoints.plain, *self.endpoints.connected):
                queues += 2 if endpoint.startswith("inproc://") else 1
        if not queues:
            return math.inf  # nothing new can arrive: read until the socket is empty
        hwm = cast(int, sock.getsockopt(zmq.RCVHWM))
        return math.inf if hwm <= 0 else float(queues * hwm)

    def _close_watch(self) -> None:
        if self._links is not None:
            self._links.close()
            self._links = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None


def sees_whole_stream(mode: str, bind: bool) -> bool:
    """Whether a receiver gets every record its producers send, so that a sequence jump is a loss.

    A PULL that connects (to a broker's pipeline, say) gets a share of a
    load-balanced stream: the records it misses went to other consumers.
    """
    return not (mode == "pull" and not bind)


def open_socket(
    ctx: zmq.Context[zmq.Socket[bytes]],
    endpoints: Endpoints,
    mode: str,
    bind: bool,
    topics: Iterable[bytes],
    curve: CurveKeys | None = None,
    before_attach: Callable[[zmq.Socket[bytes]], None] | None = None,
) -> zmq.Socket[bytes]:
    """Create a SUB or PULL socket attached to every endpoint (a CURVE client if ``curve`` is given).

    ``before_attach(sock)`` runs just before the socket binds or connects (to
    attach a monitor that must not miss the first handshake).
    """
    if mode not in ("sub", "pull"):
        raise ValueError(f"unknown mode {mode!r}: use 'sub' or 'pull'")
    check_not_bound(curve, bind)
    sock = ctx.socket(zmq.SUB if mode == "sub" else zmq.PULL)
    try:
        sock.setsockopt(zmq.RCVHWM, _sockets.DEFAULT_HWM)
        sock.setsockopt(zmq.MAXMSGSIZE, _sockets.DEFAULT_MAX_MESSAGE)
        sock.setsockopt(zmq.LINGER, 0)
        _sockets.tune(sock)
        if not bind:
            # No heartbeats of our own: libzmq 4.3.5 aborts the process when a
            # connecting receiver whose input is stalled on a full queue (a slow
            # handler) times out its own heartbeat and reconnects (libzmq#3937).
            # A peer that dies is still noticed at once (its connection resets).
            sock.setsockopt(zmq.HEARTBEAT_IVL, 0)
        if curve is not None:
            curve.apply(sock)
        if mode == "sub":
            for topic in topics:
                sock.setsockopt(zmq.SUBSCRIBE, topic)
        if before_attach is not None:
            before_attach(sock)
        endpoints.attach(sock, bind)
    except Exception:
        sock.close(linger=0)
        raise
    return sock
