"""One segment of the record store: an append-only file of records, sealed with its index.

::

    MAGIC                                        8 bytes
    record*    <u32 length><u32 crc32><i64 time_ns> frame      (frame = topic NUL payload, as received)
    footer     times     count x i64              (once sealed)
               offsets   count x u32
               topic ids count x u32
               topics    n x (<u16 length> topic)
               trailer   <u64 first><u32 count><u32 topics><u64 footer at><u32 crc32><8s INDEX>

A record's CRC covers its time and its frame; the trailer's CRC covers the
footer and the trailer's own fields before it. A footer is only believed if it
checks and is consistent (the count fits the footer's length, offsets rise
from the first record to where the footer begins): otherwise the index is
rebuilt from the records. Footers of an earlier format (another INDEX) are
rebuilt likewise. The newest segment has no
footer: it is the one records are appended to, and opening it scans it,
truncating what does not check (a torn last record). A segment is sealed when
the next one begins: its footer is written and synced, so opening it again
reads the footer alone. Offsets are those of record headers from the start of
the file; a record's position in the store is the segment's first position
plus its index here.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

__all__ = ["MAGIC", "Damage", "Index", "Segment", "split_topic"]

MAGIC = b"LFSEG\x00\x01\n"
INDEX = b"LFIDX\x00\x02\n"
_ANY_INDEX = INDEX[:-2]  # any version of the index magic (a footer that does not check is rebuilt)
HEADER = struct.Struct("<IIq")
TRAILER = struct.Struct("<QIIQI8s")
_FIELDS = struct.Struct("<QIIQ")  # the trailer fields its CRC covers
_TIME = struct.Struct("<q")
_TOPIC_LEN = struct.Struct("<H")
#: No record is larger: the store skips larger frames, a scan stops at a larger length, and
#: ``--max-message`` may not exceed it (offsets are u32: a segment stays far below 4 GiB).
MAX_RECORD = 256 * 1024 * 1024


def split_topic(frame: bytes, max_topic: int) -> bytes | None:
    """The topic of a ``topic NUL payload`` frame, or None if it is not one (no record to keep).

    A topic starts with its level bucket (a digit), holds one NUL, and is at
    most ``max_topic`` bytes; the payload after it is not empty.
    """
    first = frame.find(b"\x00", 0, max_topic + 1)
    end = frame.find(b"\x00", first + 1, max_topic + 1) if first > 0 else -1
    if end < 0 or end + 1 >= len(frame) or not 48 <= frame[0] <= 57:
        return None
    return frame[:end]


@dataclass
class Index:
    """Where each record of a segment is: its time, its offset and its topic."""

    times: array[int] = field(default_factory=lambda: array("q"))
    offsets: array[int] = field(default_factory=lambda: array("I"))
    tids: array[int] = field(default_factory=lambda: array("I"))
    topics: list[bytes] = field(default_factory=list)
    ids: dict[bytes, int] = field(default_factory=dict)

    def add(self, time_ns: int, offset: int, topic: bytes) -> None:
        tid = self.ids.get(topic)
        if tid is None:
            tid = self.ids[topic] = len(self.topics)
            self.topics.append(topic)
        self.times.append(time_ns)
        self.offsets.append(offset)
        self.tids.append(tid)

    def footer(self, first: int, at: int) -> bytes:
        body = b"".join(
            [
                self.times.tobytes(),
                self.offsets.tobytes(),
                self.tids.tobytes(),
                *(_TOPIC_LEN.pack(len(t)) + t for t in self.topics),
            ]
        )
        fields = _FIELDS.pack(first, len(self.times), len(self.topics), at)
        return body + fields + struct.pack("<I8s", zlib.crc32(fields, zlib.crc32(body)), INDEX)

    def footer_size(self) -> int:
        """The bytes :meth:`footer` would write."""
        return 16 * len(self.times) + sum(2 + len(t) for t in self.topics) + TRAILER.size

    @classmethod
    def parse(cls, body: bytes, count: int, topics: int, at: int, *, verify: bool = True) -> Index:
        """The index in a footer's ``body``; ValueError unless it is consistent with ``count`` records before ``at``.

        ``verify`` also checks every offset, time and topic id (a pass over
        the records: when a segment is opened; its file is not written again).
        """
        if 16 * count + 2 * topics > len(body):
            raise ValueError(f"{count} records and {topics} topics do not fit a footer of {len(body)} bytes")
        index = cls()
        index.times.frombytes(body[: 8 * count])
        index.offsets.frombytes(body[8 * count : 12 * count])
        index.tids.frombytes(body[12 * count : 16 * count])
        pos = 16 * count
        while pos < len(body):
            length = int.from_bytes(body[pos : pos + 2], "little")
            topic = body[pos + 2 : pos + 2 + length]
            if pos + 2 > len(body) or len(topic) != length or topic in index.ids:
                raise ValueError("a topic of the footer is cut or repeated")
            index.ids[topic] = len(index.topics)
            index.topics.append(topic)
            pos += 2 + length
        offsets = index.offsets
        if len(index.topics) != topics:
            raise ValueError("the footer's topics do not match its count")
        if count and (offsets[0] != len(MAGIC) or offsets[-1] + HEADER.size > at):
            raise ValueError("the footer's offsets do not lie between the magic and the footer")
        if not count and at != len(MAGIC):
            raise ValueError("an empty footer after records")
        if verify and count and max(index.tids) >= topics:
            raise ValueError("a topic id of the footer is out of range")
        if verify and (any(b <= a for a, b in pairwise(offsets)) or any(b < a for a, b in pairwise(index.times))):
            raise ValueError("the footer's offsets or times do not rise")
        return index


@dataclass
class Damage:
    """What opening a segment found wrong and repaired."""

    torn_bytes: int = 0
    """Bytes cut from the end (a record the writer did not finish, or damage)."""
    index_rebuilt: bool = False
    """The footer did not check: the index was rebuilt from the records (the old footer is cut, not counted as torn)."""


class Segment:
    """One segment file. Sealed segments are read only; the newest one is appended to."""

    def __init__(self, path: Path, first: int) -> None:
        self.path = path
        self.first = first
        """The store position of its first record."""
        self.count = 0
        self.end = len(MAGIC)
        """Where the records end (and, once sealed, the footer begins)."""
        self.size = len(MAGIC)
        """The file's size."""
        self.first_time = 0
        self.last_time = 0
        self.sealed = False
        self.index: Index | None = Index()
        """The index; kept for the open segment, loaded when needed for a sealed one."""
        self._fd: int | None = None

    # ------------------------------------------------------------------ open, create, seal

    @classmethod
    def create(cls, path: Path, first: int) -> Segment:
        """A new, empty segment file (it must not exist)."""
        seg = cls(path, first)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            _write_all(fd, MAGIC)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        seg._fd = fd
        return seg

    @classmethod
    def open(cls, path: Path, first: int, *, writable: bool, max_topic: int) -> tuple[Segment, Damage]:
        """Open an existing segment: by its footer if sealed, else by a scan that truncates what does not check.

        A segment without a footer is sealed after the scan unless
        ``writable`` (the newest one, appended to). Raises ValueError if the
        file is not a segment at all (wrong magic).
        """
        seg = cls(path, first)
        damage = Damage()
        with path.open("rb") as f:
            data = f.read()
        if data[: len(MAGIC)] != MAGIC:
            raise ValueError(f"{path.name} is not a record store segment (it starts with {data[:8]!r})")
        if seg._read_footer(data):
            return seg, damage
        damage.index_rebuilt = data[-len(INDEX) : -2] == _ANY_INDEX  # a footer that does not check
        good = seg._scan(data, max_topic)
        damage.torn_bytes = len(data) - good
        if damage.index_rebuilt and good == _footer_at(data):
            damage.torn_bytes = 0  # what is cut is the old footer alone
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            if good < len(data):
                os.ftruncate(fd, good)
        except OSError:
            os.close(fd)
            raise
        seg._fd = fd
        if not writable:
            seg.seal()
        return seg, damage

    def _read_footer(self, data: bytes) -> bool:
        """Take the footer if it checks and is consistent (False: rebuild the index from the records)."""
        tail = len(data) - TRAILER.size
        if tail < len(MAGIC):
            return False
        first, count, topics, at, crc, magic = TRAILER.unpack_from(data, tail)
        if magic != INDEX or first != self.first or not len(MAGIC) <= at <= tail:
            return False
        body = data[at:tail]
        if zlib.crc32(data[tail : tail + _FIELDS.size], zlib.crc32(body)) != crc:
            return False
        try:
            index = Index.parse(body, count, topics, at)
            if count:  # the last record ends where the footer begins
                (length,) = struct.unpack_from("<I", data, index.offsets[-1])
                if index.offsets[-1] + HEADER.size + length != at:
                    return False
        except (ValueError, struct.error):
            return False
        self.end, self.size, self.count, self.sealed, self.index = at, len(data), count, True, None
        if count:
            self.first_time, self.last_time = index.times[0], index.times[-1]
        return True

    def _scan(self, data: bytes, max_topic: int) -> int:
        """Index every record that checks from the start; return where the good records end."""
        index = self.index
        assert index is not None
        pos, end, unpack, crc32, pack_time = len(MAGIC), len(data), HEADER.unpack_from, zlib.crc32, _TIME.pack
        while pos + HEADER.size <= end:
            length, crc, time_ns = unpack(data, pos)
            start = pos + HEADER.size
            if length > MAX_RECORD or start + length > end:
                break
            frame = data[start : start + length]
            topic = split_topic(frame, max_topic)
            if topic is None or crc32(frame, crc32(pack_time(time_ns))) != crc:
                break
            index.add(time_ns, pos, topic)
            pos = start + length
        self.count = len(index.times)
        if self.count:
            self.first_time, self.last_time = index.times[0], index.times[-1]
        self.end = self.size = pos
        return pos

    def seal(self) -> None:
        """Write the footer, sync and close (the next segment begins)."""
        if self.sealed:
            return
        index = self.load()
        fd = self._fd
        assert fd is not None
        footer = index.footer(self.first, self.end)
        try:
            _write_all(fd, footer)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.end)
            raise
        os.close(fd)
        self._fd = None
        self.size = self.end + len(footer)
        self.sealed = True
        self.index = None  # loaded again only for a query

    def close(self) -> None:
        """Close the file without sealing (the next open scans it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------ append

    def append(self, frames: Iterable[tuple[bytes, bytes]], time_ns: int) -> None:
        """Append ``(frame, topic)`` pairs, all at ``time_ns``, in one write; on error nothing is kept."""
        fd, index = self._fd, self.index
        assert fd is not None and index is not None and not self.sealed
        seed = zlib.crc32(_TIME.pack(time_ns))
        crc32, pack, size = zlib.crc32, HEADER.pack, HEADER.size
        ids, offsets, tids = index.ids, index.offsets, index.tids
        had = len(offsets)
        parts: list[bytes] = []
        offset = self.end
        for frame, topic in frames:
            parts += (pack(len(frame), crc32(frame, seed), time_ns), frame)
            tid = ids.get(topic)
            if tid is None:
                tid = ids[topic] = len(index.topics)
                index.topics.append(topic)
            offsets.append(offset)
            tids.append(tid)
            offset += size + len(frame)
        try:
            _write_all(fd, b"".join(parts))
        except OSError:
            del offsets[had:], tids[had:]
            with contextlib.suppress(OSError):  # a partial write: cut it off again
                os.ftruncate(fd, self.end)
            raise
        added = len(offsets) - had
        index.times.extend(array("q", [time_ns]) * added)
        if not self.count:
            self.first_time = time_ns
        self.count += added
        self.last_time = time_ns
        self.end = self.size = offset

    def sync(self) -> None:
        """fdatasync the records appended so far."""
        if self._fd is not None:
            os.fdatasync(self._fd)

    # ------------------------------------------------------------------ read

    def load(self) -> Index:
        """The index (read from the footer of a sealed segment)."""
        if self.index is not None:
            return self.index
        with self.path.open("rb") as f:
            f.seek(self.end)
            footer = f.read(self.size - self.end)
        if len(footer) != self.size - self.end:
            raise ValueError(f"{self.path.name} changed since it was opened")
        _first, _count, topics, _at, _crc, _magic = TRAILER.unpack_from(footer, len(footer) - TRAILER.size)
        return Index.parse(footer[: -TRAILER.size], self.count, topics, self.end, verify=False)  # checked at open

    def read(self, offsets: list[int], ends: list[int]) -> list[tuple[int, bytes] | None]:
        """Read the records at ``offsets`` (each ending where ``ends`` says): (time, frame), None if damaged."""
        out: list[tuple[int, bytes] | None] = []
        with self.path.open("rb") as f:
            fd = f.fileno()
            for offset, end in zip(offsets, ends, strict=True):
                raw = os.pread(fd, end - offset, offset)
                if len(raw) < HEADER.size:
                    out.append(None)
                    continue
                length, crc, time_ns = HEADER.unpack_from(raw)
                frame = raw[HEADER.size :]
                ok = len(frame) == length and zlib.crc32(frame, zlib.crc32(_TIME.pack(time_ns))) == crc
                out.append((time_ns, frame) if ok else None)
        return out


def _footer_at(data: bytes) -> int | None:
    """Where a trailer at the end of ``data`` says its footer begins (None: too short for one)."""
    if len(data) < len(MAGIC) + TRAILER.size:
        return None
    return int(TRAILER.unpack_from(data, len(data) - TRAILER.size)[3])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
