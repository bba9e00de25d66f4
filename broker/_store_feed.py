"""What feeds the record store: a SUB socket on the ingests' bridges, read on a thread of its own.

Every ingest proxy publishes what it forwards on an in-process bridge (PUB
or XPUB), and a PUB drops for one subscriber alone once that subscriber's
queue is full. The store's socket is one more subscriber of every bridge,
subscribed to everything: when the store falls behind (a slow disk, a
flood), the bridges drop for the store only, and the proxies never wait.

What the store did not get is counted, not guessed: the ingest proxies count
what they put on the bridges; once a second the feed compares that count, as
it was a second earlier, with what its socket received since the start. A
record published then has arrived or been dropped by now, so the difference
is a floor on the records dropped, and exact once records stop arriving.

The thread batches what is waiting (at most :data:`BATCH` records), appends
it with one write, fdatasyncs the newest segment every
:data:`SYNC_SECONDS`, applies retention and, when writing fails (a full disk,
a directory it cannot write), keeps reading and counting while it retries
every :data:`RETRY_SECONDS`. Any other exception out of the store (a defect)
never ends the thread: it is logged with its traceback and counted
(``kind="internal"``), the store is closed and opened again (which repairs
what the files hold) after a backoff that doubles up to
:data:`MAX_BACKOFF_SECONDS`, while records are counted as unwritable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from broker._store import Recovery, Store

__all__ = ["LATENCY_BUCKETS", "StoreFeed", "StoreStatus"]

_log = logging.getLogger("logfabric.broker")

#: Most records appended in one write.
BATCH = 4096
#: Most bytes appended in one write (a batch stops growing past it).
BATCH_BYTES = 4 * 1024 * 1024
#: Seconds between two fdatasyncs of the newest segment (what a power loss can cost).
SYNC_SECONDS = 1.0
#: Seconds between two attempts to write again once writing failed.
RETRY_SECONDS = 1.0
#: Longest wait before opening the store again after an unexpected exception (the wait doubles from RETRY_SECONDS).
MAX_BACKOFF_SECONDS = 60.0
#: The feed thread's nice value: under CPU pressure the proxies and the broker's other work go first,
#: and the store falls behind (what it misses is counted) rather than slowing forwarding.
NICE = 10
#: Upper bounds of the append latency histogram, in seconds (one observation per write).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass
class StoreStatus:
    """What the metrics and /readyz show of the store."""

    directory: str
    problem: str | None = None
    """Why the store does not write (None while it does)."""
    problem_since: float | None = None
    records: int = 0
    bytes: int = 0
    oldest: float | None = None
    """When the oldest record held was stored (seconds since the epoch)."""
    appended: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    """Appends per latency bucket (the last one: slower than every bound)."""
    latency_sum: float = 0.0
    deleted: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    retry_seconds: float = RETRY_SECONDS
    """Seconds between two attempts while degraded (longer after unexpected failures)."""

    def describe(self) -> str:
        """One line for /readyz."""
        if self.problem is not None:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.problem_since or 0))
            return (
                f"store: degraded since {since}: {self.problem}; live forwarding goes on, "
                f"records are not stored, retrying every {self.retry_seconds:g} s"
            )
        return f"store: ok, {self.records} records, {self.bytes} bytes in {self.directory}"


class StoreFeed:
    """Read ``sock`` and append what arrives to ``store``, on a thread; never raises into the broker.

    ``published`` returns how many records the ingest proxies have put on
    the bridges so far (None if unknown).
    """

    def __init__(self, sock: zmq.Socket[bytes], store: Store, published: Callable[[], int | None]) -> None:
        self.store = store
        self._sock = sock
        self._published = published
        self._open = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logfabric-store", daemon=True)
        self._received = 0
        self._floor: int | None = None
        self._dirty = False
        self._retry_at = 0.0
        self._backoff = 0.0
        self._failed_at: float | None = None
        self.status = StoreStatus(str(store.directory))
        kinds = ("open", "write", "sync", "retention", "torn", "corrupt", "damaged_read", "internal")
        self.status.errors = dict.fromkeys(kinds, 0)
        self.status.missed = {"behind": 0, "unwritable": 0}
        self.status.deleted = {"bytes": 0, "age": 0}

    def start(self) -> None:
        """Open the store and start reading (on the feed's thread)."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Take in what is still waiting, sync, close the store and the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._thread.ident is None:
            self._sock.close(linger=0)

    def snapshot(self) -> StoreStatus:
        """The status with the store's own figures read now."""
        s = self.status
        if self._open:
            s.records, s.bytes = self.store.records, self.store.size
            oldest = self.store.oldest_ns
            s.oldest = None if oldest is None else oldest / 1e9
            s.deleted = dict(self.store.deleted)
            s.errors["damaged_read"] = self.store.damaged_reads
        return s

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        sock = self._sock
        with contextlib.suppress(OSError, AttributeError):  # Linux: a thread's own nice value
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        try:
            self._guard(self._try_open)
            tick = time.monotonic() + SYNC_SECONDS
            while not self._stop.is_set():
                if sock.poll(100):
                    self._guard(self._write, self._take())
                if time.monotonic() >= tick:
                    self._guard(self._tick)
                    tick = time.monotonic() + SYNC_SECONDS
            while batch := self._take():  # what the bridges still hold (the proxies have ended)
                self._guard(self._write, batch)
            self._guard(self._tick)
        except Exception:  # the socket itself failed: never take the broker down; say why the store stopped
            _log.exception("store: the store's thread failed; records are no longer stored")
            self._degrade("open", "the store's thread failed (see the log)")
        finally:
            sock.close(linger=0)
            if self._open:
                self._open = False
                self.store.close()

    def _guard(self, step: Callable[..., None], *args: list[bytes]) -> None:
        """Run one step; an unexpected exception (a defect) closes the store, to be opened again after a backoff."""
        try:
            step(*args)
        except Exception as exc:
            now = time.monotonic()
            quiet = self._failed_at is None or now - self._failed_at > 2 * MAX_BACKOFF_SECONDS  # first in a while
            self._backoff = RETRY_SECONDS if quiet else min(2 * self._backoff, MAX_BACKOFF_SECONDS)
            self._failed_at = now
            _log.exception("store: unexpected failure; closing the store, opening it again in %g s", self._backoff)
            if self._open:
                self._open = False
                with contextlib.suppress(Exception):
                    self.store.close()
            self._degrade("internal", f"the store failed unexpectedly: {type(exc).__name__}: {exc} (see the log)")
            self._retry_at = now + self._backoff
            self.status.retry_seconds = self._backoff

    def _take(self) -> list[bytes]:
        sock, size = self._sock, 0
        out: list[bytes] = []
        while len(out) < BATCH and size < BATCH_BYTES:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            # Each frame is judged alone (Store.append): a part of a multipart message that reads
            # as a record is kept, as it would be had its sender sent it alone.
            self._received += 1
            out.append(frame)
            size += len(frame)
        return out

    def _write(self, batch: list[bytes]) -> None:
        if not batch:
            return
        s = self.status
        if not self._open or (s.problem is not None and time.monotonic() < self._retry_at):
            s.missed["unwritable"] += len(batch)
            return
        began = time.perf_counter()
        try:
            appended, skipped = self.store.append(batch)
        except OSError as exc:
            s.missed["unwritable"] += len(batch)
            self._degrade("write", f"cannot write in {self.store.directory}: {exc.strerror or exc}")
            return
        took = time.perf_counter() - began
        s.latency[next((i for i, b in enumerate(LATENCY_BUCKETS) if took <= b), len(LATENCY_BUCKETS))] += 1
        s.latency_sum += took
        s.appended += appended
        s.skipped += skipped
        self._dirty = True
        if s.problem is not None:
            _log.warning("store: writing again in %s (degraded since %s)", self.store.directory, s.problem_since)
            s.problem = s.problem_since = None
            s.retry_seconds = RETRY_SECONDS

    def _tick(self) -> None:
        """Once a second: open if not yet open, sync, retention, what the store missed."""
        s = self.status
        if not self._open and time.monotonic() >= self._retry_at:
            self._try_open()
        if self._open and self._dirty:
            try:
                self.store.sync()
                self._dirty = False
            except OSError as exc:
                self._degrade("sync", f"cannot sync {self.store.directory}: {exc.strerror or exc}")
        if self._open:
            try:
                self.store.retain()
            except OSError as exc:
                s.errors["retention"] += 1
                _log.error("store: retention failed in %s: %s", self.store.directory, exc)
        published = self._published()
        if self._floor is not None:
            s.missed["behind"] = max(s.missed["behind"], self._floor - self._received)
        self._floor = published

    def _try_open(self) -> None:
        try:
            found = self.store.open()
        except OSError as exc:
            self._degrade("open", f"cannot open the store in {self.store.directory}: {exc.strerror or exc}")
            return
        self._open = True
        self._report(found)
        if self.status.problem is not None:
            _log.warning("store: open in %s again", self.store.directory)
            self.status.problem = self.status.problem_since = None
            self.status.retry_seconds = RETRY_SECONDS

    def _report(self, found: Recovery) -> None:
        s = self.status
        for name, cut in found.torn:
            s.errors["torn"] += 1
            _log.warning(
                "store: %s ended in a torn record: cut %d byte(s) (a write the broker did not finish)", name, cut
            )
        for name in found.rebuilt:
            s.errors["corrupt"] += 1
            _log.warning("store: the index of %s did not check: rebuilt from its records", name)
        for name in found.quarantined:
            s.errors["corrupt"] += 1
            _log.error("store: %s is not a readable segment: set aside as %s", name.removesuffix(".corrupt"), name)
        if found.ignored:
            _log.warning("store: ignoring %d file(s) that are not segments: %s", len(found.ignored), found.ignored[:5])
        _log.info("store: %d record(s) in %d segment(s) in %s", found.records, found.segments, self.store.directory)

    def _degrade(self, kind: str, why: str) -> None:
        s = self.status
        s.errors[kind] += 1
        self._retry_at = time.monotonic() + RETRY_SECONDS
        if s.problem is None:
            s.problem, s.problem_since = why, time.time()
            _log.error("store: %s; live forwarding goes on, records are not stored until this is fixed", why)
