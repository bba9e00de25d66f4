"""What every subscriber does with a received message: split, decode, check, filter, find gaps.

Shared by :class:`fabric.ZmqListener` (a thread) and :func:`fabric.subscribe`
(an iterator), so both count and report the same way. The socket they receive
on is :mod:`fabric._receiver`'s; the framing, :func:`fabric.topic.split_message`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from fabric._record import ReceivedRecord
from fabric.codec import Limits, MalformedRecord, decode
from fabric.topic import matches, split_message, subscriptions

GAP_LOGGER = "logfabric.gaps"
_diag = logging.getLogger("logfabric.listener")

# The gap table is a segmented LRU: a (producer, topic) stream seen once waits in
# probation; seen again, it is promoted to the protected segment. A flood of
# streams seen once (forged producer ids, say) only churns probation, so it
# cannot push out the streams that keep sending.
_PROBATION = 20_000
_PROTECTED = 80_000
#: How far below a stream's highest ``seq`` a record may arrive and still count
#: as a late arrival (records of an old connection read after newer ones from a
#: new connection: hundreds in the fault suite, at most what the old connection
#: still held). A record further behind means the producer reused its id or the
#: higher record was forged: tracking restarts from it, with a notice. A forged
#: record at most this far ahead can still hide up to this many later records'
#: losses of that stream (its own gap notice shows the jump).
REORDER_WINDOW = 100_000
# The highest level each bucket digit can hold: a notice about a stream is for
# a subscriber whose filter the stream's records could pass.
_BUCKET_TOP = {0x30 + d: d * 10 + 9 for d in range(9)} | {0x39: 2**31 - 1}


#: Streams whose history was delivered, kept until a live record shows the overlap is over.
_REPLAYED = 100_000


class Replayed(list[bytes]):
    """A message from a broker's history rather than live: one the subscriber may already have received."""


class GapNotice(ReceivedRecord):
    """A notice this subscriber made about a producer's sequence: records lost, or tracking restarted.

    Notices are made locally and only as this class; a decoded remote record is
    never one, whatever its logger name. So
    ``isinstance(record, GapNotice)`` tells a real notice from a remote record
    that merely uses logger ``logfabric.gaps``.

    Attributes (besides the usual ones): ``kind`` (``"gap"`` or ``"resync"``),
    ``lost`` (records missing; 0 for a resync), and the ``service``, ``host``
    and ``producer_id`` of the record that revealed it.
    """


def resolve_level(level: int | str | None) -> int | None:
    """Turn a level name or number into a number, with a clear error for nonsense."""
    if level is None or (isinstance(level, int) and not isinstance(level, bool)):
        return level
    if isinstance(level, str):
        text = level.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        number = logging.getLevelNamesMapping().get(text.upper())
        if number is not None:
            return number
    names = ", ".join(n for n in logging.getLevelNamesMapping() if n != "WARN")
    raise ValueError(f"unknown level {level!r}: use a number or one of {names}")


class Intake:
    """Decode and vet messages for one subscriber; keep its counters.

    ``stats`` holds ``received`` (records delivered), ``malformed`` (frames
    rejected), ``filtered`` (valid records outside the filter), ``gaps``
    (records a producer sent that never arrived), ``resyncs`` (streams whose
    sequence went back by more than :data:`REORDER_WINDOW`, so tracking
    restarted), ``truncated`` (fields cut to fit the limits), ``errors``
    (local handler failures) and ``duplicates`` (records from a broker's
    history that were already delivered, or live ones history delivered first).

    A :class:`Replayed` message (from history) whose ``seq`` is not above the
    highest seen for its stream is dropped; a live record history already
    delivered is dropped too, until that stream's first new live record.

    Gap notices (:class:`GapNotice`) come before the record that revealed them,
    and only for streams the filter wants: a stream's level bucket, logger and
    service must be able to pass it. ``gaps`` counts every loss seen.
    """

    def __init__(
        self,
        level: int | str | None = None,
        loggers: Iterable[str] = (),
        services: Iterable[str] = (),
        limits: Limits | None = None,
        gaps: bool = True,
    ) -> None:
        self.level = resolve_level(level)
        self.gaps = gaps
        """Whether sequence jumps are losses; False for a share of a load-balanced stream."""
        self.loggers = tuple(loggers) if not isinstance(loggers, str) else (loggers,)
        self.services = frozenset((services,) if isinstance(services, str) else services)
        self.limits = limits or Limits()
        self.stats: dict[str, int] = dict.fromkeys(
            ("received", "malformed", "filtered", "gaps", "resyncs", "truncated", "errors", "duplicates"), 0
        )
        self._replayed: OrderedDict[int, int] = OrderedDict()  # stream -> highest seq history delivered
        self._subscriptions = subscriptions(self.level, self.loggers, self.services)  # a bad filter raises here
        # hash((producer_id, topic)) -> highest seq seen; the segments of the gap table
        self._probation: OrderedDict[int, int] = OrderedDict()
        self._protected: OrderedDict[int, int] = OrderedDict()
        self._filtering = self.level is not None or bool(self.loggers) or bool(self.services)
        self._last_warning = 0.0
        self._unreported = 0

    def subscriptions(self) -> list[bytes]:
        """The SUB prefixes for this filter (see :mod:`fabric.topic`)."""
        return list(self._subscriptions)

    def receive(self, frames: Sequence[bytes]) -> list[logging.LogRecord]:
        """Return the records one message yields: a gap notice, then the record.

        Malformed messages yield nothing and are counted; nothing raises.
        """
        try:
            (frame,) = frames
            topic, payload = split_message(frame)
        except ValueError as exc:  # not one frame, or not topic NUL payload
            count = len(frames)
            self._malformed(str(exc) if count == 1 else f"expected 1 frame (topic NUL payload), got {count}")
            return []
        try:
            decoded = decode(payload, self.limits, topic)
        except MalformedRecord as exc:
            self._malformed(str(exc))
            return []
        record = decoded.record
        if decoded.truncated:
            self.stats["truncated"] += decoded.truncated
        out: list[logging.LogRecord] = []
        if self.gaps:
            key = hash((decoded.producer_id, topic))  # a fixed-size key, whatever the topic's length
            seq = decoded.seq
            replayed = type(frames) is Replayed
            if (replayed or self._replayed) and self._duplicate(key, seq, replayed):
                self.stats["duplicates"] += 1
                return []
            protected = self._protected
            last = protected.get(key)
            if last is not None and seq == last + 1:  # the common case: the next record of a known stream
                protected[key] = seq
                protected.move_to_end(key)
            else:
                self._track(out, record, topic, key, seq, last)
        if self._filtering and not matches(
            record.levelno, record.name, record.__dict__["service"], self.level, self.loggers, self.services
        ):
            self.stats["filtered"] += 1
            return out
        self.stats["received"] += 1
        out.append(record)
        return out

    def _duplicate(self, key: int, seq: int, replayed: bool) -> bool:
        """Whether a record was delivered already (history overlapping live); note what history delivers."""
        if replayed:
            last = self._protected.get(key)
            if last is None:
                last = self._probation.get(key)
            if last is not None and seq <= last:
                return True
            marks = self._replayed
            marks[key] = seq
            marks.move_to_end(key)
            if len(marks) > _REPLAYED:
                marks.popitem(last=False)
            return False
        high = self._replayed.get(key)
        if high is None:
            return False
        if seq <= high:
            return True
        del self._replayed[key]  # the first new live record of this stream: the overlap is over
        return False

    def _track(
        self,
        out: list[logging.LogRecord],
        record: logging.LogRecord,
        topic: bytes,
        key: int,
        seq: int,
        last: int | None,
    ) -> None:
        """Every case but the next record of a protected stream: new, promoted, jumped, late or resynchronised."""
        known = last is not None
        if not known:
            last = self._probation.pop(key, None)
        if last is None:
            mark = seq
        elif seq > last:
            if seq != last + 1:
                self._gap(out, record, topic, seq - last - 1, last)
            mark = seq
        elif last - seq <= REORDER_WINDOW:
            mark = last  # a late arrival or a duplicate: delivered, not counted again
        else:
            self._resync(out, record, topic, last, seq)
            mark = seq
        if known:
            self._protected[key] = mark
            self._protected.move_to_end(key)
        else:
            self._admit(key, mark, promote=last is not None)

    def _admit(self, key: int, mark: int, promote: bool) -> None:
        """Store a stream that was not protected: promote it if it was on probation, else put it there."""
        if promote:
            protected = self._protected
            protected[key] = mark
            if len(protected) <= _PROTECTED:
                return
            key, mark = protected.popitem(last=False)  # demoted: back to probation, as its newest
        probation = self._probation
        probation[key] = mark
        if len(probation) > _PROBATION:
            probation.popitem(last=False)

    def _wants(self, record: logging.LogRecord, topic: bytes) -> bool:
        """Whether the filter wants notices about this record's stream (its bucket, logger and service)."""
        if not self._filtering:
            return True
        top = _BUCKET_TOP[topic[0]]
        return matches(top, record.name, record.__dict__["service"], self.level, self.loggers, self.services)

    def _gap(self, out: list[logging.LogRecord], record: logging.LogRecord, topic: bytes, lost: int, last: int) -> None:
        self.stats["gaps"] += lost
        if self._wants(record, topic):
            out.append(
                _notice(
                    "gap",
                    record,
                    lost,
                    "lost %d record(s) from service %r on host %r (producer %s, logger %r, level bucket %s): "
                    "seq %d to %d never arrived",
                    (lost, *_origin(record, topic), last + 1, last + lost),
                )
            )

    def _resync(
        self, out: list[logging.LogRecord], record: logging.LogRecord, topic: bytes, last: int, seq: int
    ) -> None:
        self.stats["resyncs"] += 1
        if self._wants(record, topic):
            out.append(
                _notice(
                    "resync",
                    record,
                    0,
                    "sequence of service %r on host %r (producer %s, logger %r, level bucket %s) went back "
                    "from %d to %d: the producer reused its id or a record was forged; tracking restarts at %d",
                    (*_origin(record, topic), last, seq, seq),
                )
            )

    def _malformed(self, reason: str) -> None:
        self.stats["malformed"] += 1
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            _diag.warning(
                "skipped a malformed message (%d in all, %d since the last warning): %s",
                self.stats["malformed"],
                self._unreported + 1,
                reason[:300],
            )
            self._last_warning = now
            self._unreported = 0
        else:
            self._unreported += 1


def _origin(record: logging.LogRecord, topic: bytes) -> tuple[object, ...]:
    """Service, host, producer id, logger and level bucket of the record that revealed a notice."""
    origin = record.__dict__
    return (origin["service"], origin["host"], origin["producer_id"], record.name, chr(topic[0]))


def _notice(kind: str, record: logging.LogRecord, lost: int, msg: str, args: tuple[object, ...]) -> GapNotice:
    notice = GapNotice(GAP_LOGGER, logging.WARNING, "", 0, msg, args, None)
    origin = record.__dict__
    notice.__dict__.update(
        kind=kind,
        lost=lost,
        service=origin["service"],
        host=origin["host"],
        producer_id=origin["producer_id"],
        seq=None,
        exceptions=None,
    )
    return notice
