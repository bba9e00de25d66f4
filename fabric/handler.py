"""ZmqHandler: a QueueHandler whose queue is a ZeroMQ PUSH or PUB socket."""

from __future__ import annotations

import logging
import logging.handlers
import os
import random
import socket as _socket
import sys
import time
import weakref
from collections import deque
from typing import Any, Literal

import zmq

from fabric import _sockets, _trace, curve
from fabric.codec import CODECS, Codec, Encoder, ProducerIdentity
from fabric.topic import make_topic

__all__ = ["Mode", "ZmqHandler", "default_service"]

Mode = Literal["push", "pub"]

# zmq objects inherited across fork() must never be used or freed in the child:
# they are kept here, untouched, for the life of the child process.
_INHERITED: list[object] = []
_LIVE: weakref.WeakSet[ZmqHandler] = weakref.WeakSet()


def default_service() -> str:
    """The service name used when none is given: ``$LOGFABRIC_SERVICE`` or the program name."""
    env = os.environ.get("LOGFABRIC_SERVICE")
    if env:
        return env
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if prog.endswith(".py"):
        prog = prog[:-3]
    return prog or "python"


class ZmqHandler(logging.handlers.QueueHandler):
    """Ship every record to a ZeroMQ endpoint without ever blocking the caller for long.

    ``ZmqHandler(endpoint, *, mode="push", codec="protobuf", bind=False, ...)``
    follows the ``QueueHandler`` seams: :meth:`prepare` turns a record into a
    one-frame ``topic NUL payload`` message and :meth:`enqueue` sends it. The socket is
    created lazily in the process that first logs, so a handler survives
    ``fork()``: a child gets its own socket, producer id and sequence, and never
    sends on the parent's.

    Args:
        endpoint: where to send, e.g. ``"tcp://broker:5557"``.
        mode: ``"push"`` (to a broker's PULL ingest or a ``ZmqListener(mode="pull")``)
            or ``"pub"`` (to a broker's XSUB ingest or a ``ZmqListener(mode="sub")``).
        codec: ``"protobuf"`` (compact, the default) or ``"json"``.
        bind: bind instead of connect (for a producer with a fixed address).
        service: the service name on every record; default ``$LOGFABRIC_SERVICE``
            or the program name.
        level: the handler level.
        hwm: records queued per peer before the socket is full.
        send_timeout: seconds a logging call may wait when the socket is full;
            ``0`` (the default) drops the record at once. Drops are counted in
            :attr:`stats`.
        linger: seconds :meth:`close` (and so interpreter exit) waits for queued
            records to leave when the peer is unreachable.
        max_message: message bytes (topic and payload) above which a record is dropped and counted
            (``"oversize"``) instead of being refused by the receiver.
        curve_server_key, curve_client_key: paths of the broker's public key
            file and of this producer's secret key file, to encrypt and
            authenticate with CurveZMQ (both or neither; default
            ``$LOGFABRIC_CURVE_SERVER_KEY`` and ``$LOGFABRIC_CURVE_CLIENT_KEY``,
            else plaintext). See :mod:`fabric.curve`.

    Attributes:
        stats: ``{"sent", "dropped", "oversize", "errors"}`` counts for this process.
    """

    def __init__(
        self,
        _queue_or_endpoint: object = None,
        /,
        endpoint: str | None = None,
        *,
        mode: Mode = "push",
        codec: Codec = "protobuf",
        bind: bool = False,
        service: str | None = None,
        level: int | str = logging.NOTSET,
        hwm: int = _sockets.DEFAULT_HWM,
        send_timeout: float = 0.0,
        linger: float = 1.0,
        max_message: int = _sockets.DEFAULT_MAX_MESSAGE,
        curve_server_key: str | os.PathLike[str] | None = None,
        curve_client_key: str | os.PathLike[str] | None = None,
    ) -> None:
        # Python 3.12+ dictConfig builds QueueHandler subclasses as
        # klass(queue, **config): the endpoint then arrives by keyword and the
        # positional queue is not ours to use.
        if endpoint is None and isinstance(_queue_or_endpoint, str):
            endpoint = _queue_or_endpoint
        if endpoint is None:
            raise ValueError("ZmqHandler needs an endpoint, e.g. ZmqHandler('tcp://127.0.0.1:5557')")
        self.endpoint = _sockets.check_endpoint(endpoint)
        if mode not in ("push", "pub"):
            raise ValueError(f"unknown mode {mode!r}: use 'push' or 'pub'")
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
        if send_timeout < 0 or linger < 0 or hwm < 0:
            raise ValueError("send_timeout, linger and hwm must not be negative")
        self.curve = curve.client_keys(curve_server_key, curve_client_key)
        curve.check_not_bound(self.curve, bind)
        super().__init__(None)  # type: ignore[arg-type]  # the socket is our queue
        self.setLevel(level)
        self.mode: Mode = mode
        self.codec: Codec = codec
        self.bind = bind
        self.service = service or default_service()
        self.hwm = hwm
        self.send_timeout = send_timeout
        self.linger = linger
        self.max_message = max_message
        self.host = _socket.gethostname()
        self._closed = False
        self._reset()
        _LIVE.add(self)
        _register_mp_after_fork(self)

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        """Fresh per-process state: no socket yet, new producer id, seq from 0."""
        self._pid = os.getpid()
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sock: zmq.Socket[bytes] | None = None
        self._ready = self.mode == "push"
        self._pending: deque[bytes] = deque()
        self._new_identity()
        self.stats: dict[str, int] = {"sent": 0, "dropped": 0, "oversize": 0, "errors": 0}

    def _new_identity(self) -> None:
        """A fresh producer id, with every topic's sequence starting again at 1."""
        self._topics: dict[tuple[int, str], list[Any]] = {}  # (levelno, name) -> shared [topic, seq]
        self._by_topic: dict[bytes, list[Any]] = {}
        self.identity = ProducerIdentity(self.service, self.host, self._pid, random.getrandbits(64))
        self._encoder = Encoder(self.identity, self.codec, self.formatter)

    def _after_fork_in_child(self) -> None:
        if self._ctx is not None:
            _INHERITED.append((self._ctx, self._sock))
        self._reset()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        """Set the formatter used for exception and stack text (not the message)."""
        super().setFormatter(fmt)
        self._encoder = Encoder(self.identity, self.codec, fmt)

    def _open(self) -> zmq.Socket[bytes]:
        if self._closed:
            raise _Closed
        if self._pid != os.getpid():  # forked by a path that skipped at-fork hooks
            self._after_fork_in_child()
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = ctx.socket(zmq.PUSH if self.mode == "push" else zmq.XPUB)
        try:
            sock.setsockopt(zmq.SNDHWM, self.hwm)
            sock.setsockopt(zmq.SNDTIMEO, int(self.send_timeout * 1000))
            sock.setsockopt(zmq.LINGER, int(self.linger * 1000))
            if self.mode == "pub":
                sock.setsockopt(zmq.XPUB_NODROP, 1)  # full queue -> EAGAIN, counted
            _sockets.tune(sock)
            if self.curve is not None:
                self.curve.apply(sock)
            _sockets.attach(sock, self.endpoint, self.bind)
        except Exception:
            sock.close(linger=0)
            ctx.term()
            raise
        self._ctx, self._sock = ctx, sock
        return sock

    # ------------------------------------------------------------------ QueueHandler seams

    def prepare(self, record: logging.LogRecord) -> bytes:
        """Encode ``record`` as one message: ``topic NUL payload``.

        Like ``logging.Formatter``, this caches the formatted traceback in
        ``record.exc_text``. When an OpenTelemetry span is active, its trace
        context is set on the record as the ``otelTraceID``, ``otelSpanID`` and
        ``otelTraceSampled`` extras (see :mod:`fabric._trace`), so exported logs
        line up with traces; nothing else on the record changes.
        """
        _trace.stamp(record)
        key = (record.levelno, record.name)
        entry = self._topics.get(key)
        if entry is None:
            entry = self._topic_entry(key)
        # Sequence numbers count per topic: a subscriber receives either every
        # record of a topic or none, so a jump is a real loss even when it filters.
        entry[1] += 1
        lead: bytes = entry[0]
        return lead + self._encoder.encode(record, entry[1])

    def _topic_entry(self, key: tuple[int, str]) -> list[Any]:
        topic = make_topic(key[0], key[1], self.service)
        entry = self._by_topic.get(topic)
        if entry is None:
            if len(self._by_topic) >= 65536:
                # Unbounded logger names. Restarting the counters under the same
                # id would hide losses, so continue as a new producer instead.
                self._new_identity()
            # [the message's lead: topic and its NUL delimiter, last seq]
            entry = self._by_topic[topic] = [topic + b"\x00", 0]
        self._topics[key] = entry
        return entry

    def enqueue(self, message: Any) -> None:
        """Send one message (``topic NUL payload``), or count it as dropped."""
        sock = self._sock
        if sock is not None and self._ready and not self._pending and len(message) <= self.max_message:
            # The common case: one frame, one send.
            try:
                _send(sock, message)
            except zmq.Again:
                self.stats["dropped"] += 1
            else:
                self.stats["sent"] += 1
            return
        if len(message) > self.max_message:
            self.stats["oversize"] += 1
            return
        if sock is None or self._pid != os.getpid():
            try:
                sock = self._open()
            except _Closed:
                self.stats["dropped"] += 1
                return
        if not self._ready:
            self._pending.append(message)
            self._poll_ready(sock)
            return
        if self._pending:
            self._flush_pending(sock)
        try:
            sock.send(message)
        except zmq.Again:
            self.stats["dropped"] += 1
        else:
            self.stats["sent"] += 1

    def emit(self, record: logging.LogRecord) -> None:
        """Prepare and send ``record``; errors go to :meth:`handleError`, never the caller."""
        try:
            # os.getpid() is a system call, so it is asked only when the record was
            # made by another process than this handler's: after a fork that
            # skipped the at-fork hooks, or for a record relayed from elsewhere.
            if record.process != self._pid and os.getpid() != self._pid:
                self._after_fork_in_child()
            self.enqueue(self.prepare(record))
        except Exception:
            self.stats["errors"] += 1
            self.handleError(record)

    # ------------------------------------------------------------------ pub readiness

    def _poll_ready(self, sock: zmq.Socket[bytes]) -> bool:
        """In pub mode, records wait in memory until the first subscription arrives.

        A PUB socket silently discards what it sends before any subscriber has
        told it what it wants (the slow-joiner loss). The XPUB socket used here
        hears that subscription, so records logged earlier wait (up to ``hwm``
        of them, then counted as dropped) and go out as soon as it arrives.
        """
        while self.hwm and len(self._pending) > self.hwm:
            self._pending.popleft()
            self.stats["dropped"] += 1
        got = False
        while True:
            try:
                sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            got = True
        if got:
            self._ready = True
            self._flush_pending(sock)
        return self._ready

    def _flush_pending(self, sock: zmq.Socket[bytes]) -> None:
        pending = self._pending
        while pending:
            try:
                sock.send(pending[0], zmq.NOBLOCK)
            except zmq.Again:
                return
            pending.popleft()
            self.stats["sent"] += 1

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until a pub-mode handler has heard a subscriber (push: at once).

        Returns whether it is ready. Records logged before then are not lost:
        they wait in memory, but a caller that must know delivery has begun
        (a short-lived script, a test) can wait here first.
        """
        deadline = time.monotonic() + timeout
        with self.lock:  # type: ignore[union-attr]
            if self._closed:  # a closed handler never becomes ready
                return False
            sock = self._sock if self._sock is not None and self._pid == os.getpid() else self._open()
        while True:
            with self.lock:  # type: ignore[union-attr]
                if self._closed:
                    return False
                if self._ready or self._poll_ready(sock):
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(0.01, remaining))

    # ------------------------------------------------------------------ lifecycle

    def flush(self) -> None:
        """Send records still waiting for a pub subscriber, if one has arrived."""
        with self.lock:  # type: ignore[union-attr]
            sock = self._sock
            if sock is not None and self._pid == os.getpid() and self._pending:
                self._poll_ready(sock) if not self._ready else self._flush_pending(sock)

    def close(self) -> None:
        """Deliver what is queued (waiting at most ``linger`` seconds), then close.

        Runs from ``logging.shutdown()`` at interpreter exit, so records logged
        just before ``sys.exit()`` are delivered; an unreachable peer delays exit
        by at most ``linger`` in all (waiting for a pub subscriber included).
        """
        with self.lock:  # type: ignore[union-attr]
            if not self._closed and self._sock is not None and self._pid == os.getpid():
                deadline = time.monotonic() + self.linger
                self._drain_on_close(self._sock, deadline)
                remaining = max(0.0, deadline - time.monotonic())
                self._sock.close(linger=int(remaining * 1000))
                assert self._ctx is not None
                self._ctx.term()  # returns once queued messages left or linger expired
                self._sock = self._ctx = None
            self._closed = True
        super().close()

    def _drain_on_close(self, sock: zmq.Socket[bytes], deadline: float) -> None:
        if not self._pending:
            return
        while self._pending and time.monotonic() < deadline:
            if self._ready:
                self._flush_pending(sock)
            else:
                self._poll_ready(sock)
            if self._pending:
                time.sleep(0.005)
        self.stats["dropped"] += len(self._pending)
        self._pending.clear()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self.mode} {self.endpoint} ({level})>"


def _base_send() -> Any:
    # pyzmq's Socket.send is a Python wrapper (routing ids, groups, Frames) around
    # the backend's send; for plain bytes it only forwards. Calling the backend's
    # directly saves a Python frame on every record.
    for klass in zmq.Socket.__mro__[1:]:
        if "send" in vars(klass):
            return vars(klass)["send"]
    return zmq.Socket.send


_send = _base_send()


class _Closed(Exception):
    """Raised internally when a closed handler is asked to send."""


def _after_fork_in_child() -> None:
    for handler in list(_LIVE):
        handler._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _register_mp_after_fork(handler: ZmqHandler) -> None:
    """Make multiprocessing children flush this handler before their os._exit().

    A multiprocessing child ends with ``os._exit()``, which skips atexit and so
    ``logging.shutdown()``: without this, its last records would be lost.
    """
    import multiprocessing
    import multiprocessing.util as mp_util

    mp_util.register_after_fork(handler, _finalize_in_mp_child)
    if multiprocessing.parent_process() is not None:
        # Made inside a multiprocessing child (install() in a worker, say): no
        # after-fork hook will run for it, so arrange the flush here.
        _finalize_in_mp_child(handler)


def _finalize_in_mp_child(handler: ZmqHandler) -> None:
    import multiprocessing.util as mp_util

    mp_util.Finalize(handler, handler.close, exitpriority=100)
