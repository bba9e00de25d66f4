"""ZmqHandler: a QueueHandler whose queue is a ZeroMQ PUSH or PUB socket."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket as _socket
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any, Literal

import zmq

from fabric import _control, _dictconfig, _exit, _fork, _options, _producer_options, _sockets, _trace, curve
from fabric._options import default_service
from fabric._record import ReceivedRecord
from fabric._room import make_room
from fabric._sender import LinkSpec, Sender, merged
from fabric.codec import Codec, Encoder, ProducerIdentity
from fabric.topic import lead, make_topic

__all__ = ["Mode", "ZmqHandler", "default_service"]

Mode = Literal["push", "pub"]

# zmq objects a forked child inherited and must leave alone (see fabric._fork).
_INHERITED = _fork.INHERITED

_PLAIN = logging.LogRecord

_get_ident = threading.get_ident
# Seconds the sender thread waits for the handler's lock to log through it.
_SENDER_LOCK_WAIT = 0.05


class ZmqHandler(logging.handlers.QueueHandler):
    """Ship every record to a ZeroMQ endpoint without ever blocking the caller for long.

    ``ZmqHandler(endpoint, *, mode="push", codec="protobuf", bind=False, ...)``
    follows the ``QueueHandler`` seams: :meth:`prepare` returns the record to
    send and :meth:`enqueue` encodes it as one ``topic NUL payload`` message and
    queues it in memory. One sender thread per handler and process owns the
    socket and sends what is queued in bursts: a record waits at most
    ``batch_delay`` (records of ``flush_level`` and above not at all), and the
    logging call never touches the socket. The socket and the thread are
    created lazily in the process that first logs, so a handler survives
    ``fork()``: a child gets its own sender, producer id and sequence, and
    never sends on the parent's.

    Args:
        (every option, from :data:`fabric._producer_options.OPTIONS`)

    Closed by ``logging.shutdown()`` before exit (``dictConfig`` does that), it
    opens again at its next record, as ``logging.FileHandler`` does; closed at
    exit or by its own :meth:`close`, it drops what it is given (see
    :mod:`fabric._exit`).

    Attributes:
        stats: counts for this process (``sent``, ``queued``, ``dropped``,
            ``oversize``, ``errors``, ``upstream_discarded``,
            ``subscriptions_reset``, ``received_not_sent``): the README's
            "Delivery and drop accounting" says what each counts.
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
        batch_delay: float = 0.002,
        flush_level: int | str = logging.WARNING,
        flush_on_signal: bool = True,
        control: bool | str = False,
    ) -> None:
        self.endpoint = _options.check(locals())  # raises fabric.ConfigError for a bad option
        self.curve = curve.client_keys(curve_server_key, curve_client_key, allow_open_key=curve_allow_open_key)
        curve.check_not_bound(self.curve, bind)
        self._agent = _control.attach(self, control, self.endpoint, bind, self.curve)  # levels from the broker
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
        self.batch_delay = batch_delay
        self.flush_level = flush_level
        self._flush_levelno = _options.levelno(flush_level)
        self._closed = False
        self._reopenable = False
        self._reset(_socket.gethostname())
        _fork.track(self)
        if flush_on_signal:
            _exit.arm_signals()

    # ------------------------------------------------------------------ state

    def _reset(self, host: str) -> None:
        """Fresh per-process state: no sender yet, new producer id, seq from 0."""
        self._pid = os.getpid()
        spec = LinkSpec(self.mode, self.endpoint, self.bind, self.hwm, self.linger, self.curve)
        self._sender = sender = Sender(spec, self.batch_delay)
        weakref.finalize(self, sender.release).atexit = False
        self._queue = sender.queue
        # Records go straight to the queue while it holds fewer than _room
        # (0: no sender thread yet, or closed) and fewer than buffer_bytes.
        self._room = 0
        self._put_bytes = 0  # bytes queued by callers, less those they dropped (see Sender.taken_bytes)
        # Records logged re-entrantly (by a signal handler) while one is being numbered and queued.
        self._later: deque[tuple[list[Any], bytes, int]] = deque()
        self._busy = False
        self._new_identity(host)
        self._counts: dict[str, int] = dict.fromkeys(("dropped", "oversize", "errors", "received_not_sent"), 0)

    @property
    def stats(self) -> dict[str, int]:
        """Counts for this process (see the class docstring); a new dict at every read."""
        return merged(self._counts, self._sender)

    @property
    def host(self) -> str:
        """The host name on every record."""
        return self.identity.host

    @property
    def _sock(self) -> zmq.Socket[bytes] | None:
        """The socket of this process, once open."""
        link = self._sender.link
        return link.sock if link is not None else None

    def _new_identity(self, host: str) -> None:
        """A fresh producer id, with every topic's sequence starting again at 1."""
        self._topics: dict[tuple[int, str], list[Any]] = {}  # (levelno, name) -> shared [lead, seq]
        self._by_topic: dict[bytes, list[Any]] = {}  # topic -> the entry every key with that topic shares
        self.identity = ProducerIdentity(self.service, host, self._pid, _options.new_producer_id())
        self._encoder = Encoder(self.identity, self.codec, self.formatter)

    def _after_fork_in_child(self) -> None:
        _INHERITED.extend(self._sender.forget())
        if self._agent is not None:
            _INHERITED.extend(self._agent.forget())
        reopenable = self._reopenable
        self._reset(self.identity.host)
        self._reopenable = reopenable

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        """Set the formatter used for exception and stack text (not the message)."""
        super().setFormatter(fmt)
        self._encoder = Encoder(self.identity, self.codec, fmt)

    def _revive(self) -> bool:
        """Make sure this process's sender runs; False if the handler is closed for good."""
        if self._pid != os.getpid():  # forked by a path that skipped at-fork hooks
            self._after_fork_in_child()
        if self._closed:  # open again after a close by logging.shutdown() before exit, not otherwise
            if not self._reopenable or _exit.exiting():
                return False
            self._closed = self._reopenable = False
            _exit.rejoin_shutdown(self)
        if not self._sender.running:
            self._sender.start()  # opens the socket here: a bad endpoint raises to the caller
            if self._agent is not None:
                self._agent.start()
        self._room = self.hwm
        return True

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
        """Encode ``record``, number it and queue it for the sender thread as one ``topic NUL payload`` message.

        A record whose message cannot be formatted raises here, before it is
        numbered, so it leaves no gap in the sequence; :meth:`emit` counts it as
        an error. Records are numbered in the order they are queued, even when a
        signal handler logs while another record is being queued. A record of
        ``flush_level`` or above is sent at once; others wait at most
        ``batch_delay`` for company.
        """
        key = (record.levelno, record.name)
        entry = self._topics.get(key)
        if entry is None:
            entry = self._topic_entry(key)
        body = self._encoder.body(record, entry[0])
        if self._busy:  # re-entered from a signal handler: the interrupted call queues this after its own
            self._later.append((entry, body, record.levelno))
            return
        sender = self._sender
        # Room is made (or waited for) before the record is numbered, so records
        # are queued in the order of their numbers.
        room = len(self._queue) < self._room and self._put_bytes - sender.taken_bytes + len(body) <= self.buffer_bytes
        if not room:
            room = make_room(self, len(body), self.send_timeout)
            entry = self._topics.get(key) or self._topic_entry(key)  # a new identity may have come meanwhile
            sender = self._sender
        self._busy = True
        try:
            # Sequence numbers count per topic: a subscriber receives either every
            # record of a topic or none, so a jump is a real loss even when it filters.
            seq = entry[1] + 1
            entry[1] = seq
            message = body + self._encoder.tail(seq)
            size = len(message)
            if room and size <= self.max_message:
                self._queue.append(message)  # the common case
                self._put_bytes += size
                if record.levelno >= self._flush_levelno:
                    sender.hurry = True
                    if sender.idle or sender.gathering:
                        sender.kick()
                elif sender.idle:
                    sender.kick()
            else:
                self._refuse(size)
        finally:
            self._busy = False
        if self._later:
            self._queue_later()

    def _queue_later(self) -> None:
        """Number and queue the records a signal handler logged while another was being queued."""
        later = self._later
        while later and not self._busy:
            entry, body, levelno = later.popleft()
            room = make_room(self, len(body), 0.0)
            self._busy = True
            try:
                seq = entry[1] + 1
                entry[1] = seq
                message = body + self._encoder.tail(seq)
                if room and len(message) <= self.max_message:
                    self._queue.append(message)
                    self._put_bytes += len(message)
                    if levelno >= self._flush_levelno:
                        self._sender.hurry = True
                    self._sender.kick()
                else:
                    self._refuse(len(message))
            finally:
                self._busy = False

    def _topic_entry(self, key: tuple[int, str]) -> list[Any]:
        topic = make_topic(key[0], key[1], self.service)
        entry = self._by_topic.get(topic)
        if entry is None:
            if len(self._by_topic) >= 65536:
                # Unbounded logger names. Restarting the counters under the same
                # id would hide losses, so continue as a new producer instead.
                self._new_identity(self.identity.host)
            # [the message's lead: topic and its NUL delimiter, last seq]
            entry = self._by_topic[topic] = [lead(topic), 0]
        self._topics[key] = entry
        return entry

    def _refuse(self, size: int) -> None:
        """Count a numbered record that is not queued: oversize, or no room (closed, full)."""
        self._counts["oversize" if size > self.max_message else "dropped"] += 1

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:  # type: ignore[override]
        """As ``Handler.handle``; a record logged by this handler's own sender thread never waits for the lock.

        Whoever holds the lock may be waiting for the sender (``close()``,
        ``flush()``, a call waiting for room): the sender thread tries the
        lock briefly and otherwise drops the record, counted.
        """
        if _get_ident() != self._sender.ident:
            return super().handle(record)
        passed = self.filter(record)
        if isinstance(passed, logging.LogRecord):
            record = passed
        if passed:
            if self.lock.acquire(timeout=_SENDER_LOCK_WAIT):  # type: ignore[union-attr]
                try:
                    self.emit(record)
                finally:
                    self.lock.release()  # type: ignore[union-attr]
            else:
                self._sender.stats["dropped"] += 1
        return passed

    def emit(self, record: logging.LogRecord) -> None:
        """Prepare and queue ``record``; errors go to :meth:`handleError`, never the caller."""
        try:
            # os.getpid() is a system call, so it is asked only when the record was
            # made by another process than this handler's: after a fork that
            # skipped the at-fork hooks, or for a record relayed from elsewhere.
            if record.process != self._pid and os.getpid() != self._pid:
                self._after_fork_in_child()
            if record.__class__ is not _PLAIN and isinstance(record, ReceivedRecord):
                self._counts["received_not_sent"] += 1  # it came from the fabric: sent on, it would loop
                return
            self.enqueue(self.prepare(record))
        except Exception:
            self._counts["errors"] += 1
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
            if not self._revive():  # a closed handler never becomes ready
                return False
        while True:
            if self._closed:
                return False
            if self._sender.ready:
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
        out first (records not sent yet stay queued). Logging calls of other
        threads wait meanwhile. The handler stays usable: libzmq can only wait
        for its queue while closing the socket, so the next record opens a new
        one, under a new producer id (as after a fork), so that a receiver
        still holding the old connection's records never takes the two for
        one series with gaps. From ``logging.shutdown()``, which calls
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
            sender = self._sender
            closed = sender.links_closed
            done = sender.finish(deadline, close=False)
            if sender.links_closed != closed or not sender.confirmed:
                # The next records leave on a new connection while the old one's
                # may still wait, unread, at the receiver, which would interleave
                # the two: as a new producer they cannot look like gaps. (Unanswered:
                # the sender may yet close it, after every record queued so far.)
                self._new_identity(self.identity.host)
            return done
        finally:
            self.lock.release()  # type: ignore[union-attr]

    def close(self) -> None:
        """Deliver what is queued (waiting at most ``linger`` seconds), then close.

        Runs from ``logging.shutdown()`` at interpreter exit, so records logged
        just before ``sys.exit()`` are delivered; an unreachable peer delays exit
        by at most ``linger`` in all (waiting for a pub subscriber included).
        """
        by_shutdown = _exit.by_logging_shutdown(sys._getframe(0))
        with self.lock:  # type: ignore[union-attr]
            self._room = 0  # from now on records take the slow path, which finds the handler closed
            was_closed, self._closed = self._closed, True
            if not was_closed and self._pid == os.getpid():
                self._sender.finish(_exit.close_deadline(self.linger), close=True)
                if self._agent is not None:
                    self._agent.stop()
            # Closed by logging.shutdown() (dictConfig does that): the next record opens again,
            # unless this handler had been closed by its own close() before.
            self._reopenable = by_shutdown and (self._reopenable or not was_closed)
        super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self.mode} {self.endpoint} ({level})>"


if ZmqHandler.__doc__:  # None under python -OO
    ZmqHandler.__doc__ = _producer_options.fill_docstring(ZmqHandler.__doc__, "handler")
