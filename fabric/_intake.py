"""What every subscriber does with a received message: decode, check, filter, find gaps.

Shared by :class:`fabric.ZmqListener` (a thread) and :func:`fabric.subscribe`
(an iterator), so both count and report the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import zmq

from fabric import _sockets
from fabric.codec import Limits, MalformedRecord, decode
from fabric.curve import CurveKeys, check_not_bound
from fabric.discovery import Endpoints
from fabric.topic import matches, subscriptions

GAP_LOGGER = "logfabric.gaps"
_diag = logging.getLogger("logfabric.listener")
_MAX_TRACKED = 100_000


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
    (records a producer sent that never arrived), ``truncated`` (fields cut to
    fit the limits) and ``errors`` (local handler failures).
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
            ("received", "malformed", "filtered", "gaps", "truncated", "errors"), 0
        )
        self._last: dict[tuple[int, bytes], int] = {}
        self._filtering = self.level is not None or bool(self.loggers) or bool(self.services)
        self._last_warning = 0.0
        self._unreported = 0

    def subscriptions(self) -> list[bytes]:
        """The SUB prefixes for this filter (see :mod:`fabric.topic`)."""
        return subscriptions(self.level, self.loggers, self.services)

    def receive(self, frames: Sequence[bytes]) -> list[logging.LogRecord]:
        """Return the records one message yields: a gap notice, then the record.

        Malformed messages yield nothing and are counted; nothing raises.
        """
        if len(frames) != 1:
            self._malformed(f"expected 1 frame (topic NUL payload), got {len(frames)}")
            return []
        # topic NUL payload (fabric.topic.split_message, inlined: this runs per record)
        frame = frames[0]
        end = frame.find(b"\x00", frame.find(b"\x00") + 1)
        if end < 0:
            self._malformed("no topic delimiter: expected one frame, topic NUL payload")
            return []
        topic, payload = frame[:end], frame[end + 1 :]
        try:
            decoded = decode(payload, self.limits)
        except MalformedRecord as exc:
            self._malformed(str(exc))
            return []
        record = decoded.record
        if decoded.truncated:
            self.stats["truncated"] += decoded.truncated
        out: list[logging.LogRecord] = []
        if self.gaps:
            key = (decoded.producer_id, topic)
            last = self._last.get(key)
            if last is None or decoded.seq > last:
                if last is not None and decoded.seq > last + 1:
                    out.append(self._gap(record, topic, decoded.seq - last - 1, last))
                elif last is None and len(self._last) >= _MAX_TRACKED:
                    del self._last[next(iter(self._last))]
                self._last[key] = decoded.seq
        if self._filtering and not matches(
            record.levelno, record.name, record.__dict__["service"], self.level, self.loggers, self.services
        ):
            self.stats["filtered"] += 1
            return out
        self.stats["received"] += 1
        out.append(record)
        return out

    def _gap(self, record: logging.LogRecord, topic: bytes, lost: int, last: int) -> logging.LogRecord:
        self.stats["gaps"] += lost
        origin = record.__dict__
        fields: dict[str, Any] = {
            "name": GAP_LOGGER,
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "lost %d record(s) from service %r on host %r (producer %s, logger %r, level bucket %s): "
            "seq %d to %d never arrived",
            "args": (
                lost,
                origin["service"],
                origin["host"],
                origin["producer_id"],
                record.name,
                topic[:1].decode("ascii", "replace"),
                last + 1,
                last + lost,
            ),
            "service": origin["service"],
            "host": origin["host"],
            "producer_id": origin["producer_id"],
            "seq": None,
            "exceptions": None,
            "lost": lost,
        }
        return logging.makeLogRecord(fields)

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
