"""ZmqHandler: a QueueHandler whose queue is a ZeroMQ PUSH or PUB socket."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket as _socket
import sys
import time
from collections import deque
from typing import Any, Literal

import zmq

from fabric import _dictconfig, _exit, _fork, _options, _producer_options, _sockets, _trace, curve
from fabric._link import Link, open_link, send
from fabric._options import default_service
from fabric._outbox import Outbox
from fabric._record import ReceivedRecord
from fabric.codec import Codec, Encoder, ProducerIdentity
from fabric.topic import make_topic

__all__ = ["Mode", "ZmqHandler", "default_service"]

Mode = Literal["push", "pub"]

# zmq objects a forked child inherited and must leave alone (see fabric._fork).
_INHERITED = _fork.INHERITED

_PLAIN = logging.LogRecord

# The socket is looked after (what peers sent, whether the peer is connected)
# once the records sent since the last look weigh _SLICE: a record weighs its
# size plus _WEIGHT, so that happens every 256 records at the latest.
_SLICE = 4 * 1024 * 1024
_WEIGHT = _SLICE // 256


class ZmqHandler(logging.handlers.QueueHandler):
    """Ship every record to a ZeroMQ endpoint without ever blocking the caller for long.

    ``ZmqHandler(endpoint, *, mode="push", codec="protobuf", bind=False, ...)``
    follows the ``QueueHandler`` seams: :meth:`prepare` returns the record to
    send and :meth:`enqueue` encodes it as one ``topic NUL payload`` frame and
    sends it. The socket is created lazily in the process that first logs, so a
    handler survives ``fork()``: a child gets its own socket, producer id and
    sequence, and never sends on the parent's.

    Args:
        (every option, from :data:`fabric._producer_options.OPTIONS`)

    Closed by ``logging.shutdown()`` before exit (``dictConfig`` does that), it
    opens again at its next record, as ``logging.FileHandler`` does; closed at
    exit or by its own :meth:`close`, it drops what it is given (see
    :mod:`fabric._exit`).

    Attributes:
        stats: counts for this process: ``sent``, ``dropped``, ``oversize``,
            ``errors``, and what peers sent up: ``upstream_discarded``
            (messages from subscribers that were not subscriptions) and
            ``subscriptions_reset`` (times a pub handler dropped all its
            subscribers because their subscriptions exceeded the budget);
            ``received_not_sent``: records a subscriber received from the
            fabric that reached this handler (through ``dispatch="loggers"``,
            say) and were not sent back (relay between brokers with
            ``--upstream``).
    """

    def __init__(
        self,
        _queue_or_endpoint: object = None,
        /,
        endpoint: str | None = None,
        *,
        service: str | None = None,
        mode: Mode = "push",
        codec: Codec = "protobuf",
        bind: bool = False,
        level: int | str = logging.NOTSET,
        hwm: int = _sockets.DEFAULT_HWM,
        buffer_bytes: int = _sockets.DEFAULT_BUFFER_BYTES,
        send_timeout: float = 0.0,
        linger: float = 1.0,
        max_message: int = _sockets.DEFAULT_MAX_MESSAGE,
        curve_server_key: str | os.PathLike[str] | None = None,
        curve_client_key: str | os.PathLike[str] | None = None,
        curve_allow_open_key: bool = False,
        flush_on_signal: bool = True,
    ) -> None:
        self.endpoint = _options.check(locals())  # raises fabric.ConfigError for a bad option
        self.curve = curve.client_keys(curve_server_key, curve_client_key, allow_open_key=curve_allow_open_key)
        curve.check_not_bound(self.curve, bind)
        super().__init__(None)  # type: ignore[arg-type]  # the socket is our queue
        self.setLevel(level)
        self.mode: Mode = mode
        self.codec: Codec = codec
        self.bind = bind
        self.service = service or default_service()
        self.hwm = hwm
        self.buffer_bytes = buffer_bytes
        self.send_timeout = send_timeout
        self.linger = linger
        self.max_message = max_message
        self._closed = False
        self._reset(_socket.gethostname())
        _fork.track(self)
        if flush_on_signal:
            _exit.arm_signals()

    # ------------------------------------------------------------------ state

    def _reset(self, host: str) -> None:
        """Fresh per-process state: no socket yet, new producer id, seq from 0."""
        self._pid = os.getpid()
        self._out = Outbox(self, ready=self.mode == "push")
        self._sock: zmq.Socket[bytes] | None = None
        # Records go straight to the socket while _credit > 0 (Outbox.fast);
        # it counts down to the next _look().
        self._credit = 0
        # Records logged re-entrantly (by a signal handler) while one is being numbered and sent.
        self._later: deque[tuple[list[Any], bytes]] = deque()
        self._busy = False
        self._new_identity(host)
        self.stats: dict[str, int] = dict.fromkeys(
            ("sent", "dropped", "oversize", "errors", "upstream_discarded", "subscriptions_reset", "received_not_sent"),
            0,
        )

    @property
    def host(self) -> str:
        """The host name on every record."""
        return self.identity.host

    def _new_identity(self, host: str) -> None:
        """A fresh producer id, with every topic's sequence starting again at 1."""
        self._topics: dict[tuple[int, str], list[Any]] = {}  # (levelno, name) -> shared [topic, seq]
        self._out.by_topic = {}
        self.identity = ProducerIdentity(self.service, host, self._pid, _options.new_producer_id())
        self._encoder = Encoder(self.identity, self.codec, self.formatter)

    def _after_fork_in_child(self) -> None:
        out = self._out
        if out.link is not None:
            _INHERITED.extend(out.link.inherited())
        self._reset(self.identity.host)
        self._out.reopenable = out.reopenable

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        """Set the formatter used for exception and stack text (not the message)."""
        super().setFormatter(fmt)
        self._encoder = Encoder(self.identity, self.codec, fmt)

    def _open(self, endpoint: str | None = None) -> Link:
        if self._pid != os.getpid():  # forked by a path that skipped at-fork hooks
            self._after_fork_in_child()
        out = self._out
        if self._closed:  # open again after a close by logging.shutdown() before exit, not otherwise
            if not out.reopenable or _exit.exiting():
                raise _Closed
            self._closed = out.reopenable = False
            _exit.rejoin_shutdown(self)
        out.ready = self.mode == "push"  # pub: records wait for a subscription to this socket
        link = open_link(
            self.mode,
            endpoint or out.endpoint or self.endpoint,
            self.bind,
            self.hwm,
            self.send_timeout,
            self.linger,
            self.curve,
        )
        out.link, out.endpoint, out.sent_at_open = link, link.endpoint, self.stats["sent"]
        self._refresh()
        return link

    def _refresh(self) -> None:
        """Take up what the slow path changed: the socket, and whether records may go straight to it."""
        out = self._out
        self._sock = out.link.sock if out.link is not None else None
        self._credit = _SLICE if out.fast else 0

    # ------------------------------------------------------------------ QueueHandler seams

    listener = _dictconfig.LISTENER

    def prepare(self, record: logging.LogRecord) -> Any:
        """Return the record to send: ``record`` itself (:meth:`enqueue` encodes it).

        A subclass may return a changed copy, as with ``QueueHandler``. When an
        OpenTelemetry span is active, its trace context is set on the record as
        the ``otelTraceID``, ``otelSpanID`` and ``otelTraceSampled`` extras (see
        :mod:`fabric._trace`), so exported logs line up with traces. Encoding
        caches the formatted traceback in ``record.exc_text``, as
        ``logging.Formatter`` does; nothing else on the record changes.
        """
        _trace.stamp(record)
        return record

    def enqueue(self, record: Any) -> None:
        """Encode ``record``, number it and send it as one ``topic NUL payload`` frame.

        A record whose message cannot be formatted raises here, before it is
        numbered, so it leaves no gap in the sequence; :meth:`emit` counts it as
        an error. Records are numbered in the order they are sent, even when a
        signal handler logs while another record is being sent.
        """
        key = (record.levelno, record.name)
        entry = self._topics.get(key)
        if entry is None:
            entry = self._topic_entry(key)
        body = self._encoder.body(record, entry[0])
        if self._busy:  # re-entered from a signal handler: the interrupted call sends this after its own
            self._later.append((entry, body))
            return
        self._busy = True
        try:
            # Sequence numbers count per topic: a subscriber receives either every
            # record of a topic or none, so a jump is a real loss even when it filters.
            seq = entry[1] + 1
            entry[1] = seq
            message = body + self._encoder.tail(seq)
            if self._credit > 0 and len(message) <= self.max_message:  # the common case: one frame, one send
                self._credit -= len(message) + _WEIGHT
                try:
                    send(self._sock, message)
                except zmq.Again:
                    self.stats["dropped"] += 1
                else:
                    self.stats["sent"] += 1
                if self._credit <= 0:
                    self._look()
            else:
                self._send_slowly(message)
        finally:
            self._busy = False
        if self._later:
            self._send_later()

    def _send_later(self) -> None:
        """Number and send the records a signal handler logged while another was being sent."""
        later = self._later
        while later and not self._busy:
            entry, body = later.popleft()
            self._busy = True
            try:
                seq = entry[1] + 1
                entry[1] = seq
                self._send_slowly(body + self._encoder.tail(seq))
            finally:
                self._busy = False

    def _topic_entry(self, key: tuple[int, str]) -> list[Any]:
        topic = make_topic(key[0], key[1], self.service)
        entry = self._out.by_topic.get(topic)
        if entry is None:
            if len(self._out.by_topic) >= 65536:
                # Unbounded logger names. Restarting the counters under the same
                # id would hide losses, so continue as a new producer instead.
                self._new_identity(self.identity.host)
            # [the message's lead: topic and its NUL delimiter, last seq]
            entry = self._out.by_topic[topic] = [topic + b"\x00", 0]
        self._topics[key] = entry
        return entry

    def _send_slowly(self, message: bytes) -> None:
        """Everything but the common case: oversize, no socket yet, no subscriber yet, no peer."""
        if len(message) > self.max_message:
            self.stats["oversize"] += 1
            return
        if self._out.link is None or self._pid != os.getpid():
            try:
                self._open()
            except _Closed:
                self.stats["dropped"] += 1
                return
        self._out.send(message)
        self._refresh()

    def _look(self) -> None:
        """Every slice of records: read what peers sent up, and whether the peer is still there."""
        self._out.look(unseen=_SLICE)
        self._refresh()

    def emit(self, record: logging.LogRecord) -> None:
        """Prepare and send ``record``; errors go to :meth:`handleError`, never the caller."""
        try:
            # os.getpid() is a system call, so it is asked only when the record was
            # made by another process than this handler's: after a fork that
            # skipped the at-fork hooks, or for a record relayed from elsewhere.
            if record.process != self._pid and os.getpid() != self._pid:
                self._after_fork_in_child()
            if record.__class__ is not _PLAIN and isinstance(record, ReceivedRecord):
                self.stats["received_not_sent"] += 1  # it came from the fabric: sent on, it would loop
                return
            self.enqueue(self.prepare(record))
        except Exception:
            self.stats["errors"] += 1
            self.handleError(record)

    # ------------------------------------------------------------------ pub readiness

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until a pub-mode handler has heard a subscriber (push: at once).

        Returns whether it is ready. Records logged before then are not lost:
        they wait in memory, but a caller that must know delivery has begun
        (a short-lived script, a test) can wait here first.
        """
        deadline = time.monotonic() + timeout
        with self.lock:  # type: ignore[union-attr]
            if self._out.link is None or self._pid != os.getpid():
                try:
                    self._open()
                except _Closed:  # a closed handler never becomes ready
                    return False
        while True:
            with self.lock:  # type: ignore[union-attr]
                if self._closed:
                    return False
                if self._out.ready or self._out.poll_ready():
                    self._refresh()
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(0.01, remaining))

    # ------------------------------------------------------------------ lifecycle

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Block until every record handed to this handler so far has left the process; say whether it did.

        Waits at most ``timeout`` seconds (default: ``linger``), for a pub
        handler's first subscriber too, and returns ``False`` if the wait ran
        out first (records still waiting for a subscriber stay held). The
        handler stays usable: libzmq can only wait for its queue while closing
        the socket, so the next record opens a new one, with the same producer
        id and sequences. From ``logging.shutdown()``, which calls
        :meth:`close` next, it returns at once.
        """
        if timeout is None and _exit.by_logging_shutdown(sys._getframe(0)):
            return True  # close() comes next and waits for the same records
        wait = self.linger if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + wait
        if not self.lock.acquire(timeout=wait):  # type: ignore[union-attr]
            return False
        try:
            if self._closed or self._pid != os.getpid():
                return True  # nothing of this process is in flight
            return self._out.drain(deadline)
        finally:
            self._refresh()
            self.lock.release()  # type: ignore[union-attr]

    def close(self) -> None:
        """Deliver what is queued (waiting at most ``linger`` seconds), then close.

        Runs from ``logging.shutdown()`` at interpreter exit, so records logged
        just before ``sys.exit()`` are delivered; an unreachable peer delays exit
        by at most ``linger`` in all (waiting for a pub subscriber included).
        """
        by_shutdown = _exit.by_logging_shutdown(sys._getframe(0))
        with self.lock:  # type: ignore[union-attr]
            out = self._out
            if not self._closed and out.link is not None and self._pid == os.getpid():
                out.close(time.monotonic() + self.linger)
            # Closed by logging.shutdown() (dictConfig does that): the next record opens again,
            # unless this handler had been closed by its own close() before.
            out.reopenable = by_shutdown and (out.reopenable or not self._closed)
            self._closed = True
            self._refresh()
        super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self.mode} {self.endpoint} ({level})>"


class _Closed(Exception):
    """Raised internally when a closed handler is asked to send."""


if ZmqHandler.__doc__:  # None under python -OO
    ZmqHandler.__doc__ = _producer_options.fill_docstring(ZmqHandler.__doc__, "handler")
