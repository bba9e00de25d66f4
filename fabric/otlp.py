"""OtlpHandler: a logging handler that exports records to an OpenTelemetry receiver over OTLP.

Attach it to a subscriber (``ZmqListener``, ``listen_from_config``, or records
from ``subscribe()``) to send the fabric's records to an OpenTelemetry
Collector or any backend that accepts OTLP; ``logfabric export otlp`` runs one.
The mapping is in :mod:`fabric._otlp_mapping` and docs/otlp.md.

Needs the ``otlp`` extra: ``pip install 'logfabric[otlp]'``.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

try:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"fabric.otlp needs opentelemetry-proto ({exc}): pip install 'logfabric[otlp]'", name=exc.name
    ) from None

from fabric._otlp_mapping import Mapper, MappingLimits, ResourceKey, build_request
from fabric._otlp_transport import Outcome, Protocol, Transport, open_transport
from fabric._threads import start_daemon
from fabric.handler import default_service

__all__ = ["DEFAULT_ENDPOINT", "MappingLimits", "OtlpHandler"]

#: Where records go by default: an OpenTelemetry Collector's OTLP/HTTP receiver on this host.
DEFAULT_ENDPOINT = "http://localhost:4318/v1/logs"

#: Bytes of mapped records one request holds at most: below gRPC's default 4 MiB receive limit.
BATCH_BYTES = 3 * 1024 * 1024
#: Bytes of mapped records the queue holds at most, whatever ``queue_size`` allows.
QUEUE_BYTES = 32 * 1024 * 1024
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 5.0

_diag = logging.getLogger("logfabric.otlp")
_LIVE: weakref.WeakSet[OtlpHandler] = weakref.WeakSet()
_INHERITED: list[object] = []  # a parent's connections, never used or closed in a forked child


class OtlpHandler(logging.Handler):
    """Export records over OTLP, in batches, from a thread of its own; the caller never waits on the network.

    ``emit`` maps the record (see docs/otlp.md) and queues it. The thread sends
    a batch when ``batch_size`` records wait, or ``batch_delay`` seconds after
    the oldest arrived. A failure worth retrying (HTTP 429/502/503/504, gRPC
    UNAVAILABLE and the other retryable codes, no answer, no connection) is
    retried with exponential backoff and jitter (honouring ``Retry-After``)
    for as long as it takes: records wait in the queue meanwhile, and only
    what does not fit in it is dropped. Any other answer drops that batch.
    Every record ends up counted in :attr:`stats`; each kind of trouble is said
    once on logger ``logfabric.otlp``.

    Args:
        endpoint: the receiver's URL, ``http://`` or ``https://``. OTLP/HTTP
            posts to it as given, or to ``/v1/logs`` when it has no path.
        protocol: ``"http"`` (OTLP/HTTP with protobuf) or ``"grpc"`` (OTLP/gRPC;
            the URL names host and port, default port 4317).
        headers: sent with every request (HTTP headers or gRPC metadata), e.g.
            ``{"Authorization": "Bearer ..."}``.
        timeout: seconds one request may take.
        queue_size: records waiting or being sent at most (and at most
            :data:`QUEUE_BYTES` of them waiting); beyond, new records are
            dropped and counted.
        batch_size: records per request at most (and at most :data:`BATCH_BYTES`).
        batch_delay: seconds a record may wait for its batch to fill.
        flush_timeout: seconds :meth:`flush` and :meth:`close` (so interpreter
            exit) wait for the queue to be sent; what is left then is dropped
            and counted.
        service: ``service.name`` of records made in this process (records
            from the fabric carry their producer's); default as for ``ZmqHandler``.
        level: the handler level.
        limits: bounds on what one record may put into OTLP (:class:`MappingLimits`).

    Attributes:
        stats: a snapshot of the counters (see :attr:`stats`).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        protocol: Protocol = "http",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        queue_size: int = 20_000,
        batch_size: int = 512,
        batch_delay: float = 0.5,
        flush_timeout: float = 5.0,
        service: str | None = None,
        level: int | str = logging.NOTSET,
        limits: MappingLimits | None = None,
    ) -> None:
        if timeout <= 0 or batch_delay < 0 or flush_timeout < 0:
            raise ValueError("timeout must be positive, batch_delay and flush_timeout not negative (seconds)")
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        self._connect = (endpoint, protocol, dict(headers or {}))
        transport = open_transport(*self._connect)  # a bad URL, protocol or header raises here
        super().__init__(level)
        self.endpoint = transport.url
        self.protocol: Protocol = protocol
        self.timeout = timeout
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.batch_delay = batch_delay
        self.flush_timeout = flush_timeout
        self.service = service or default_service()
        self._mapper = Mapper(
            (self.service, socket.gethostname(), f"{int.from_bytes(os.urandom(8), 'big'):016x}"), limits
        )
        self._fresh(transport)
        _LIVE.add(self)

    def _fresh(self, transport: Transport) -> None:
        """State for this process: no thread yet, nothing queued, counters at zero."""
        self._transport = transport
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[ResourceKey, str, Any, int]] = deque()
        self._queued_bytes = 0
        self._first_at = 0.0  # when the oldest queued record arrived
        self._in_flight = 0  # records of the batch being sent
        self._hurry = 0  # flush() calls waiting: send at once
        self._closing = False
        self._closed = False
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self._ident: int | None = None
        self._resources: dict[ResourceKey, Any] = {}
        self._said: set[str] = set()
        self._notes: list[tuple[str, str]] = []  # said by the thread for emit(), which never logs
        self._counts = dict.fromkeys(("exported", "retried", "dropped", "rejected", "errors"), 0)

    def _after_fork_in_child(self) -> None:
        _INHERITED.append(self._transport)
        self._fresh(open_transport(*self._connect))

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``exported`` (records the receiver took), ``retried`` (requests sent again),
        ``dropped`` (records lost: queue full, refused by the receiver, too large, left at close),
        ``rejected`` (records a partial success refused), ``errors`` (records that could not be
        mapped), ``truncated`` (values cut to fit the limits) and ``queued`` (waiting or in flight).

        Every record handed to :meth:`emit` is in exactly one of exported, dropped,
        rejected, errors or queued.
        """
        with self._cond:
            out = dict(self._counts)
            out["queued"] = len(self._queue) + self._in_flight
        out["truncated"] = self._mapper.truncated
        return out

    # ------------------------------------------------------------------ the caller's side

    def emit(self, record: logging.LogRecord) -> None:
        """Map ``record`` and queue it; never blocks on the network, never raises.

        Records logged on the handler's own thread (its diagnostics, or what a
        library it calls logs) are not exported by it: they could only feed
        back into the trouble they report.
        """
        if threading.get_ident() == self._ident:
            return
        try:
            key, scope, mapped = self._mapper.map(record)
            size = mapped.ByteSize()
        except Exception as exc:
            with self._cond:
                self._counts["errors"] += 1
                self._note("map", f"a record could not be mapped to OTLP and was skipped: {type(exc).__name__}: {exc}")
                self._start()
            return
        with self._cond:
            if self._closed:
                self._counts["dropped"] += 1
                return
            if size > BATCH_BYTES:
                self._counts["dropped"] += 1
                self._note("oversize", f"a record of {size} bytes in OTLP (over {BATCH_BYTES}) was dropped")
            elif len(self._queue) + self._in_flight >= self.queue_size or self._queued_bytes + size > QUEUE_BYTES:
                self._counts["dropped"] += 1
                self._note("full", f"the queue is full ({self.queue_size} records): new records are dropped")
            else:
                queue = self._queue
                queue.append((key, scope, mapped, size))
                self._queued_bytes += size
                if len(queue) == 1:  # the thread starts timing batch_delay
                    self._first_at = time.monotonic()
                    self._cond.notify()
                elif len(queue) == self.batch_size:
                    self._cond.notify()
            self._start()

    def _note(self, kind: str, text: str) -> None:
        """Queue a one-time diagnostic for the thread to say (called with the lock held)."""
        if kind not in self._said:
            self._said.add(kind)
            self._notes.append((kind, text))
            self._cond.notify()

    def _start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = start_daemon(self._run, "logfabric-otlp")  # blocks every signal (fabric._threads)

    def flush(self) -> None:
        """Send what is queued now and wait (at most ``flush_timeout``) until it has been sent or dropped."""
        with self._cond:
            if self._thread is None or self._closed:
                return
            self._hurry += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: not self._queue and not self._in_flight, self.flush_timeout)
            finally:
                self._hurry -= 1

    def close(self) -> None:
        """Send what is queued (waiting at most ``flush_timeout``), count the rest as dropped, stop the thread."""
        with self._cond:
            thread = self._thread
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + self.flush_timeout
                self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, self._deadline - time.monotonic()) + 0.2)
        with self._cond:
            if not self._closed:
                self._closed = True
                # Still queued, or in a request the receiver never answered in time: not known to be delivered.
                self._counts["dropped"] += len(self._queue) + self._in_flight
                self._queue.clear()
                self._queued_bytes = 0
                self._in_flight = 0
                self._cond.notify_all()
        if thread is None:
            self._transport.close()  # else the thread closes it as it ends
        super().close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.protocol} {self.endpoint} ({logging.getLevelName(self.level)})>"

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        self._ident = threading.get_ident()
        while True:
            self._say_notes()
            batch = self._next_batch()
            if batch is None:
                break
            if batch:
                try:
                    self._deliver(batch)
                except Exception as exc:  # a fault of this code must not end the thread: count the batch, go on
                    with self._cond:
                        if not self._closed:  # else close() counted the batch already
                            reason = f"exporting failed: {type(exc).__name__}: {exc}"[:300]
                            self._settle(Outcome("drop", reason=reason), len(batch))
        self._say_notes()
        self._transport.close()

    def _next_batch(self) -> list[tuple[ResourceKey, str, Any, int]] | None:
        """Wait for a batch to be due; [] when there is something to say first; None once closing is done."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._notes:
                    return []
                queue = self._queue
                if queue:
                    late = self._first_at + self.batch_delay - time.monotonic()
                    if self._closing and time.monotonic() >= self._deadline:
                        self._give_up(0)
                        return None
                    if len(queue) >= self.batch_size or self._hurry or self._closing or late <= 0:
                        return self._take()
                    self._cond.wait(late)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()

    def _take(self) -> list[tuple[ResourceKey, str, Any, int]]:
        queue = self._queue
        batch: list[tuple[ResourceKey, str, Any, int]] = []
        size = 0
        while queue and len(batch) < self.batch_size and (not batch or size + queue[0][3] <= BATCH_BYTES):
            item = queue.popleft()
            size += item[3]
            batch.append(item)
        self._queued_bytes -= size
        self._in_flight = len(batch)
        if queue:
            self._first_at = time.monotonic()  # what is left waits for the next batch afresh
        return batch

    def _give_up(self, in_flight: int) -> None:
        """At the close deadline: count the batch in hand and the queue as dropped (lock held)."""
        self._counts["dropped"] += in_flight + len(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        self._in_flight = 0
        self._cond.notify_all()

    def _deliver(self, batch: list[tuple[ResourceKey, str, Any, int]]) -> None:
        """Send one batch until it is taken, refused, or the close deadline passes."""
        count = len(batch)
        request = build_request(batch, self._resources)
        attempt = 0
        while True:
            timeout = self.timeout
            with self._cond:
                if self._closing:
                    timeout = min(timeout, self._deadline - time.monotonic())
                    if timeout <= 0:
                        self._give_up(count)
                        return
            outcome = self._send(request, timeout)
            with self._cond:
                if self._closed:  # close() gave up on this batch and counted it
                    return
                if outcome.kind != "retry":
                    self._settle(outcome, count)
                    return
                self._counts["retried"] += 1
            self._say(
                outcome.reason.split(":")[0], f"{outcome.reason}: retrying with backoff, records wait in the queue"
            )
            delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** min(attempt, 8)) * random.uniform(0.8, 1.2)
            if outcome.delay is not None:  # Retry-After: not sooner than asked, nor sooner than the backoff
                delay = max(delay, outcome.delay)
            attempt += 1
            with self._cond:
                end = time.monotonic() + delay
                if self._closing:
                    end = min(end, self._deadline)
                # close() beginning during the wait cuts it short: one more attempt at once, within its deadline.
                closing = self._closing
                while not self._closed and time.monotonic() < end and self._closing == closing:
                    self._cond.wait(end - time.monotonic())

    def _send(self, request: ExportLogsServiceRequest, timeout: float) -> Outcome:
        try:
            return self._transport.send(request, timeout)
        except Exception as exc:  # a transport bug must not end the thread: count the batch as refused
            return Outcome("drop", reason=f"sending failed: {type(exc).__name__}: {exc}"[:300])

    def _settle(self, outcome: Outcome, count: int) -> None:
        """Count a batch that is done (lock held); say a refusal or partial success once."""
        if outcome.kind == "ok":
            rejected = min(outcome.rejected, count)
            self._counts["exported"] += count - rejected
            self._counts["rejected"] += rejected
            if outcome.reason:
                self._note("answer", f"the receiver {outcome.reason}")
        else:
            self._counts["dropped"] += count
            self._note(outcome.reason.split(":")[0], f"dropped a batch of {count} record(s): {outcome.reason}")
        self._in_flight = 0
        self._cond.notify_all()

    def _say(self, kind: str, text: str) -> None:
        with self._cond:
            if kind in self._said:
                return
            self._said.add(kind)
        _diag.warning("OTLP export to %s: %s (said once; see the stats for counts)", self.endpoint, text)

    def _say_notes(self) -> None:
        with self._cond:
            notes, self._notes = self._notes, []
        for _, text in notes:
            _diag.warning("OTLP export to %s: %s (said once; see the stats for counts)", self.endpoint, text)


def _after_fork_in_child() -> None:
    for handler in list(_LIVE):
        handler._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
