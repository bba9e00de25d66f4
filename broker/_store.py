"""The record store: every record the broker received, in its wire form, in segment files in one directory.

Records are appended to the newest segment (:mod:`broker._segment`) and get a
*position*: 0, 1, 2, ... in the order they were stored, never reused. A
segment is sealed (its index written at its end) once it holds
``segment_bytes`` or spans ``segment_span`` seconds, and the next one begins.
Retention deletes whole segments, oldest first: before each write as many
as the files need to stay within ``retention_bytes`` (never the newest one),
and those whose newest record is older than ``retention_age``.

Reading (:meth:`Store.read`) selects by position (``after``), by the time the
broker stored the record (``since_ns``, ``until_ns``), by topic
(:class:`RecordFilter`: level bucket, logger prefixes, services) and takes the
oldest matches, or the newest ``last``. One thread appends; any number may
read at the same time.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from broker._segment import HEADER, MAGIC, MAX_RECORD, Index, Segment, split_topic
from broker._store_recovery import LOCK, Recovery, load_segments, sync_dir
from fabric.topic import MAX_TOPIC

__all__ = ["GIB", "RecordFilter", "Recovery", "Store", "Stored"]

GIB = 1024**3
_log = logging.getLogger("logfabric.broker")
#: Segments are at most this large (a smaller retention makes them smaller: an eighth of it).
MAX_SEGMENT = 64 * 1024 * 1024
MIN_SEGMENT = 64 * 1024
#: Indexes of sealed segments kept in memory for queries that page through them.
_INDEXES_KEPT = 4


def _clean(name: str) -> bytes:
    """A name as a topic carries it (see :mod:`fabric.topic`)."""
    return name.replace("\x00", "?").encode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class RecordFilter:
    """Which topics a read wants: level bucket, logger prefixes and services, as ``logfabric tail`` filters.

    The level is checked by its bucket (``levelno // 10``), as a subscription
    is: records of level 25 pass a filter of 20 or of 25, and a reader that
    needs the exact level decodes the record.
    """

    level: int | None = None
    loggers: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    def matches(self, topic: bytes) -> bool:
        """Whether a record with ``topic`` may pass."""
        if self.level is not None and self.level > 0 and topic[0] - 48 < min(self.level // 10, 9):
            return False
        nul = topic.find(b"\x00")
        if self.services and topic[nul + 1 :] not in {_clean(s) for s in self.services}:
            return False
        if not self.loggers:
            return True
        name = topic[1:nul]
        for prefix in self.loggers:
            p = _clean(prefix)
            if not p or name == p or name.startswith(p + b"."):
                return True
        return False


class Stored(NamedTuple):
    """One stored record."""

    position: int
    time_ns: int
    """When the broker stored it (its own clock, never going back)."""
    frame: bytes
    """The message as received: ``topic NUL payload``."""

    @property
    def topic(self) -> bytes:
        return self.frame[: self.frame.find(b"\x00", self.frame.find(b"\x00") + 1)]

    @property
    def payload(self) -> bytes:
        return self.frame[len(self.topic) + 1 :]


class Store:
    """Segment files in ``directory``, bounded by ``retention_bytes`` and ``retention_age`` (seconds)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        retention_bytes: int = GIB,
        retention_age: float = 7 * 86400.0,
        segment_bytes: int | None = None,
        max_topic: int = MAX_TOPIC,
    ) -> None:
        self.directory = Path(directory)
        self.retention_bytes = retention_bytes
        self.retention_age_ns = int(retention_age * 1e9)
        self.segment_bytes = segment_bytes or min(MAX_SEGMENT, max(MIN_SEGMENT, retention_bytes // 8))
        self.segment_span_ns = self.retention_age_ns // 8
        self.max_topic = max_topic
        self._segments: list[Segment] = []
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._last_time = 0
        self.deleted = {"bytes": 0, "age": 0}
        """Records retention deleted, by reason (since this object was made)."""
        self.damaged_reads = 0
        self._indexes: OrderedDict[int, tuple[Segment, Index]] = OrderedDict()  # sealed segments' indexes read
        """Records a read left out because they failed their checksum."""

    # ------------------------------------------------------------------ open and close

    def open(self) -> Recovery:
        """Take the directory (creating it), read its segments and repair what a crash left. OSError if it cannot."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OSError(errno.EBUSY, "another broker holds this store", str(self.directory)) from None
        self._lock_fd = fd
        try:
            found = Recovery()
            self._segments = load_segments(self.directory, self.max_topic, found)
            if not self._segments or self._segments[-1].sealed:
                last = self._segments[-1] if self._segments else None
                self._begin(last.first + last.count if last else 0)
            self._last_time = max((s.last_time for s in self._segments), default=0)
            found.segments, found.records = len(self._segments), self.records
            sync_dir(self.directory)
            return found
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Sync and close the files (the newest segment stays unsealed) and let the directory go."""
        with self._lock:
            segments, self._segments = self._segments, []
        for seg in segments:
            with contextlib.suppress(OSError):
                seg.sync()
            seg.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ state

    @property
    def records(self) -> int:
        """Records held."""
        with self._lock:
            return sum(s.count for s in self._segments)

    @property
    def size(self) -> int:
        """Bytes of segment files (records, their headers and the indexes)."""
        with self._lock:
            return sum(s.size for s in self._segments)

    @property
    def oldest_ns(self) -> int | None:
        """When the oldest record held was stored; None when empty."""
        with self._lock:
            return next((s.first_time for s in self._segments if s.count), None)

    @property
    def next_position(self) -> int:
        """The position the next record gets."""
        with self._lock:
            last = self._segments[-1]
            return last.first + last.count

    # ------------------------------------------------------------------ write

    def append(self, frames: list[bytes], time_ns: int | None = None) -> tuple[int, int]:
        """Append the frames that are records; return (appended, skipped as not records). OSError: none appended.

        All get the same time, ``time_ns`` or now, but never earlier than
        the newest record held. A frame whose topic cannot be split within the
        topic bound is skipped, and so is one over ``MAX_RECORD`` bytes (logged).
        Before each write the oldest segments go while the files would
        exceed ``retention_bytes``.
        """
        now = max(time.time_ns() if time_ns is None else time_ns, self._last_time)
        good = [(f, t) for f in frames if len(f) <= MAX_RECORD and (t := split_topic(f, self.max_topic)) is not None]
        if len(good) < len(frames) and (over := sum(len(f) > MAX_RECORD for f in frames)):
            _log.warning("store: skipped %d record(s) over %d bytes (the largest a segment takes)", over, MAX_RECORD)
        active = self._segments[-1]
        if active.sealed:  # the next segment could not be made last time
            active = self._begin(active.first + active.count)
        rolled = bool(active.count) and now - active.first_time >= self.segment_span_ns
        if rolled:
            active = self._roll()
        chunk: list[tuple[bytes, bytes]] = []
        size = active.end
        for frame, topic in good:
            need = HEADER.size + len(frame)
            if size + need > self.segment_bytes and (chunk or active.count):
                if chunk:
                    self._make_room(size - active.end)
                    active.append(chunk, now)
                    chunk = []
                active = self._roll()
                rolled = True
                size = active.end
            chunk.append((frame, topic))
            size += need
        if chunk:
            self._make_room(size - active.end)
            active.append(chunk, now)
        self._last_time = now
        if rolled:
            self.retain(now)  # the bound holds between the caller's own calls too
        return len(good), len(frames) - len(good)

    def sync(self) -> None:
        """fdatasync what was appended to the newest segment (sealed segments are synced when sealed)."""
        self._segments[-1].sync()

    def _roll(self) -> Segment:
        """Seal the newest segment and begin the next."""
        old = self._segments[-1]
        self._make_room(old.load().footer_size())
        old.seal()
        return self._begin(old.first + old.count)

    def _begin(self, first: int) -> Segment:
        self._make_room(len(MAGIC))
        seg = Segment.create(self.directory / f"{first:020d}.seg", first)
        with self._lock:
            self._segments.append(seg)
        sync_dir(self.directory)
        return seg

    def retain(self, now_ns: int | None = None) -> dict[str, int]:
        """Delete the oldest segments while over the byte bound or past the age; return records deleted by reason."""
        now = time.time_ns() if now_ns is None else now_ns
        cutoff = now - self.retention_age_ns
        deleted = {"bytes": 0, "age": 0}
        if self._segments[-1].count and self._segments[-1].last_time < cutoff:
            self._roll()
        while len(self._segments) > 1:
            oldest = self._segments[0]
            if self.size > self.retention_bytes:
                reason = "bytes"
            elif oldest.last_time < cutoff or not oldest.count:
                reason = "age"
            else:
                break
            deleted[reason] += self._delete_oldest(reason)
        return deleted

    def _make_room(self, need: int) -> None:
        """Delete the oldest segments while the files plus ``need`` bytes exceed the byte bound (never the newest)."""
        while len(self._segments) > 1 and self.size + need > self.retention_bytes:
            self._delete_oldest("bytes")

    def _delete_oldest(self, reason: str) -> int:
        with self._lock:
            oldest = self._segments.pop(0)
        with contextlib.suppress(FileNotFoundError):
            oldest.path.unlink()
        self.deleted[reason] += oldest.count
        return oldest.count

    # ------------------------------------------------------------------ read

    def read(
        self,
        which: RecordFilter | None = None,
        *,
        after: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        last: int | None = None,
        limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[Stored]:
        """Matching records, oldest first: the newest ``last`` of them, or else the oldest ``limit``.

        ``after`` keeps positions above it; ``since_ns`` (inclusive) and
        ``until_ns`` (exclusive) bound the time the broker stored them;
        ``max_bytes`` (oldest first only) stops once the records taken hold
        that many bytes (at least one is taken). Records that fail their
        checksum are left out.
        """
        with self._lock:
            shot = [(s, s.index, s.count, s.end) for s in self._segments]
        want = last if last is not None else limit
        budget = max_bytes or 0
        picked: list[tuple[Segment, Index, int, list[int]]] = []
        total = 0
        for seg, live, count, end in reversed(shot) if last is not None else shot:
            if want is not None and total >= want:
                break
            if not count or _outside(seg, count, after, since_ns, until_ns):
                continue
            try:
                index = self._index(seg, live)
            except FileNotFoundError:  # deleted by retention meanwhile
                continue
            lo = 0 if after is None else max(0, after + 1 - seg.first)
            hi = count
            if since_ns is not None:
                lo = max(lo, bisect.bisect_left(index.times, since_ns, 0, count))
            if until_ns is not None:
                hi = min(hi, bisect.bisect_left(index.times, until_ns, 0, count))
            ids = {i for i, t in enumerate(index.topics) if which is None or which.matches(t)}
            if lo >= hi or not ids:
                continue
            left = None if want is None else want - total
            chosen = _choose(index, ids, lo, hi, left, newest=last is not None)
            if max_bytes is not None and last is None:
                chosen, budget = _within(index, end, chosen, budget)
            total += len(chosen)
            picked.append((seg, index, end, chosen))
            if max_bytes is not None and last is None and budget <= 0:
                break  # the byte bound is reached
        if last is not None:
            picked.reverse()
        out: list[Stored] = []
        for seg, index, end, chosen in picked:
            offsets = [index.offsets[i] for i in chosen]
            ends = [index.offsets[i + 1] if i + 1 < len(index.offsets) else end for i in chosen]
            try:
                records = seg.read(offsets, ends)
            except FileNotFoundError:
                continue
            self.damaged_reads += records.count(None)
            out.extend(Stored(seg.first + i, r[0], r[1]) for i, r in zip(chosen, records, strict=True) if r)
        return out

    def start_of_last(
        self, which: RecordFilter | None, last: int, *, since_ns: int | None = None, until_ns: int | None = None
    ) -> int | None:
        """The position of the oldest of the newest ``last`` matches (None: no match), reading indexes only."""
        with self._lock:
            shot = [(s, s.index, s.count) for s in self._segments]
        left, start = last, None
        for seg, live, count in reversed(shot):
            if not count or _outside(seg, count, None, since_ns, until_ns):
                continue
            try:
                index = self._index(seg, live)
            except FileNotFoundError:
                continue
            lo = 0 if since_ns is None else bisect.bisect_left(index.times, since_ns, 0, count)
            hi = count if until_ns is None else bisect.bisect_left(index.times, until_ns, 0, count)
            ids = {i for i, t in enumerate(index.topics) if which is None or which.matches(t)}
            chosen = _choose(index, ids, lo, hi, left, newest=True) if ids and lo < hi else []
            if chosen:
                left -= len(chosen)
                start = seg.first + chosen[0]
            if left <= 0:
                break
        return start

    def _index(self, seg: Segment, live: Index | None) -> Index:
        """A segment's index: the live one, or a sealed one's read from its footer (the last few kept)."""
        if live is not None:
            return live
        cached = self._indexes.get(seg.first)
        if cached is not None and cached[0] is seg:
            return cached[1]
        index = seg.load()
        self._indexes[seg.first] = (seg, index)
        while len(self._indexes) > _INDEXES_KEPT:
            self._indexes.popitem(last=False)
        return index


def _within(index: Index, end: int, chosen: list[int], budget: int) -> tuple[list[int], int]:
    """The first of ``chosen`` whose records fit in ``budget`` bytes (at least one); and the budget left."""
    offsets = index.offsets
    for n, i in enumerate(chosen):
        budget -= (offsets[i + 1] if i + 1 < len(offsets) else end) - offsets[i]
        if budget <= 0:
            return chosen[: n + 1], budget
    return chosen, budget


def _outside(seg: Segment, count: int, after: int | None, since: int | None, until: int | None) -> bool:
    return (
        (after is not None and seg.first + count <= after + 1)
        or (since is not None and seg.last_time < since)
        or (until is not None and seg.first_time >= until)
    )


def _choose(index: Index, ids: set[int], lo: int, hi: int, left: int | None, *, newest: bool) -> list[int]:
    """Indexes in [lo, hi) whose topic is in ``ids``: at most ``left``, the newest or the oldest, in order."""
    tids = index.tids
    every = len(ids) == len(index.topics)
    if newest:
        if every:
            start = hi - left if left is not None else lo
            return list(range(max(lo, start), hi))
        found: list[int] = []
        for i in range(hi - 1, lo - 1, -1):
            if tids[i] in ids:
                found.append(i)
                if left is not None and len(found) >= left:
                    break
        found.reverse()
        return found
    if every:
        return list(range(lo, hi if left is None else min(hi, lo + left)))
    found = []
    for i in range(lo, hi):
        if tids[i] in ids:
            found.append(i)
            if left is not None and len(found) >= left:
                break
    return found
