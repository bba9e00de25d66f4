"""The history endpoint: a ROUTER answering queries over the record store, one page per request, on its own thread.

The protocol is :mod:`fabric._history_wire`'s. Every request is untrusted: it is
at most :data:`~fabric._history_wire.MAX_REQUEST` bytes (libzmq drops a larger
frame and resets that connection), parsed by orjson (nesting past 254 levels
is an error there), checked field by field, and answered with one page at most
(:data:`~fabric._history_wire.PAGE_RECORDS` records, about
:data:`~fabric._history_wire.PAGE_BYTES` bytes). The server keeps no state
per client: the cursor travels in each reply and comes back with the next
request. One thread answers every request in turn, at a lower CPU priority
than forwarding, so the work is bounded at one page at a time; a client that
does not read its replies finds at most :data:`REPLY_QUEUE` of them queued, and
the rest are dropped and counted. Refusals are counted by reason for
``/metrics``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import zmq

from broker._segment import HEADER
from broker._store import RecordFilter, Stored
from broker._store_feed import StoreFeed
from fabric._history_wire import (
    MAX_FILTER_NAMES,
    MAX_REQUEST,
    PAGE_BYTES,
    PAGE_RECORDS,
    SYNC_SECONDS,
    VERSION,
    is_int,
    pack_times,
)
from fabric.topic import MAX_TOPIC

__all__ = ["OUTCOMES", "HistoryServer", "Query", "parse_request", "tune_socket"]

_log = logging.getLogger("logfabric.broker")

#: Replies queued for one client that does not read them; more are dropped (counted as ``unread``).
REPLY_QUEUE = 2
#: Requests queued from one client before libzmq stops reading it.
REQUEST_QUEUE = 4
#: Seconds the history thread waits for the store to open before it answers (requests queue meanwhile).
_OPENING = 10.0
#: Bytes the store holds per record beside its frame (its header), as ``max_bytes`` counts them.
_HEADER = HEADER.size
#: The history thread's nice value, as the store's: forwarding goes first.
NICE = 10
#: How a request ended: answered, or refused for a reason (the ``outcome`` label of the metrics).
OUTCOMES = ("ok", "malformed", "version", "invalid", "too_many", "no_store", "unavailable", "unread")
_FIELDS = frozenset({"v", "id", "level", "loggers", "services", "since", "until", "last", "sync", "cursor"})
_CURSOR = ("after", "end", "sync", "deadline")


class Refused(ValueError):
    """A request this server will not answer: ``code`` (an error code) and a message saying what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Query:
    """One checked request."""

    id: Any
    which: RecordFilter
    since_ns: int | None
    until_ns: int | None
    last: int | None
    sync: bool
    cursor: dict[str, int | None] | None


def _names(doc: dict[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Refused("invalid", f"{key} must be a list of strings")
    if len(value) > MAX_FILTER_NAMES:
        raise Refused("too_many", f"{key}: {len(value)} given, at most {MAX_FILTER_NAMES}: ask for fewer")
    if any(len(v) > MAX_TOPIC for v in value):
        raise Refused("invalid", f"{key}: a name over {MAX_TOPIC} characters can match no record")
    return tuple(value)


def _time(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    if value is not None and not is_int(value):
        raise Refused("invalid", f"{key} must be a whole number of nanoseconds since the epoch, or null")
    return value


def parse_request(frame: bytes) -> Query:
    """Check one request frame; raise :class:`Refused` saying what is wrong."""
    try:
        doc = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise Refused("malformed", f"the request is not JSON: {str(exc)[:120]}") from None
    if not isinstance(doc, dict):
        raise Refused("malformed", "the request must be a JSON object")
    version = doc.get("v")
    if version != VERSION:
        raise Refused("version", f"unsupported version {str(version)[:20]!r}: this broker speaks version {VERSION}")
    unknown = sorted(str(k)[:40] for k in doc if k not in _FIELDS)[:5]
    if unknown:
        raise Refused("invalid", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    ident = doc.get("id")
    if ident is not None and not is_int(ident, -(2**53), 2**53):
        raise Refused("invalid", "id must be a whole number")
    level = doc.get("level")
    if level is not None and not is_int(level, -(2**31), 2**31 - 1):
        raise Refused("invalid", "level must be a whole number or null")
    last = doc.get("last")
    if last is not None and not is_int(last, 1):
        raise Refused("invalid", "last must be a whole number of at least 1, or null")
    sync = doc.get("sync", False)
    if not isinstance(sync, bool):
        raise Refused("invalid", "sync must be true or false")
    cursor = doc.get("cursor")
    if cursor is not None and (
        not isinstance(cursor, dict)
        or set(cursor) != set(_CURSOR)
        or not all(is_int(cursor[k], -1) for k in ("after", "end"))
        or not all(cursor[k] is None or is_int(cursor[k], -1) for k in ("sync", "deadline"))
    ):
        raise Refused("invalid", "cursor must be the cursor of the previous reply, as it came")
    which = RecordFilter(level, _names(doc, "loggers"), _names(doc, "services"))
    return Query(ident, which, _time(doc, "since"), _time(doc, "until"), last, sync, cursor)


def tune_socket(sock: zmq.Socket[bytes]) -> None:
    """The history ROUTER's bounds: request size, queues both ways, replies never block."""
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST)
    sock.setsockopt(zmq.RCVHWM, REQUEST_QUEUE)
    sock.setsockopt(zmq.SNDHWM, REPLY_QUEUE)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full or gone peer: EAGAIN / EHOSTUNREACH, counted, not silent
    sock.setsockopt(zmq.LINGER, 0)


class HistoryServer:
    """Answer history requests on ``sock`` (a bound ROUTER) from ``feed``'s store, on a thread of its own.

    ``feed`` is None for a broker without a store: every request then gets an
    error saying how to turn the store on. ``published`` returns how many
    records the ingests have put on the bridges so far (for ``sync``).
    """

    def __init__(self, sock: zmq.Socket[bytes], feed: StoreFeed | None, published: Callable[[], int | None]) -> None:
        self._sock = sock
        self._feed = feed
        self._published = published
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logfabric-history", daemon=True)
        self.outcomes: Counter[str] = Counter({o: 0 for o in OUTCOMES})
        """Requests by outcome (``ok`` or the reason of a refusal)."""
        self.records_sent = 0
        self.bytes_sent = 0

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop answering and close the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._thread.ident is None:
            self._sock.close(linger=0)

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        sock = self._sock
        feed = self._feed
        opening = time.monotonic() + _OPENING
        while feed is not None and not _readable(feed) and feed.status.problem is None:
            if self._stop.wait(0.01) or time.monotonic() > opening:
                break  # requests wait meanwhile (queued by libzmq), so the first ones see the store open
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                for _ in range(64):  # then look at the stop flag again
                    try:
                        message = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._serve(message)
        except Exception:  # never take the broker down
            _log.exception("history: the history thread failed; history requests are no longer answered")
        finally:
            sock.close(linger=0)

    def _serve(self, message: list[bytes]) -> None:
        envelope, body = message[:1], message[1:]
        if body[:1] == [b""]:  # a REQ client's delimiter
            envelope, body = message[:2], message[2:]
        ident: Any = None
        try:
            if len(body) != 1:
                raise Refused("malformed", f"expected one frame (a JSON object), got {len(body)}")
            query = parse_request(body[0])
            ident = query.id
            reply = self.answer(query)
            outcome = "ok"
        except Refused as exc:
            outcome = exc.code
            reply = [orjson.dumps({"v": VERSION, "id": ident, "ok": False, "error": exc.code, "message": str(exc)})]
        except Exception as exc:  # a store that fails to read (an I/O error): this request only
            _log.warning("history: a query failed: %r", exc)
            outcome = "unavailable"
            why = f"the store could not be read: {exc!r}"[:300]
            reply = [orjson.dumps({"v": VERSION, "id": ident, "ok": False, "error": outcome, "message": why})]
        self.outcomes[outcome] += 1  # before the reply leaves: whoever reads it finds it counted
        if outcome == "ok":
            self.records_sent += len(reply) - 2
            self.bytes_sent += sum(len(f) for f in reply[2:])
        try:
            self._sock.send_multipart([*envelope, *reply], zmq.NOBLOCK)
        except zmq.ZMQError:  # full (a client that does not read) or gone
            self.outcomes[outcome] -= 1
            self.outcomes["unread"] += 1
            if outcome == "ok":
                self.records_sent -= len(reply) - 2
                self.bytes_sent -= sum(len(f) for f in reply[2:])

    def answer(self, query: Query) -> list[bytes]:
        """The reply frames for a checked query: header, times, records (Refused if it cannot be answered)."""
        feed = self._feed
        if feed is None:
            raise Refused(
                "no_store",
                "this broker keeps no records, so it has no history: start it with --store DIR "
                "(or LOGFABRIC_BROKER_STORE=DIR)",
            )
        if not _readable(feed):
            raise Refused("unavailable", f"the store cannot be read now: {feed.snapshot().describe()}")
        store = feed.store
        now = time.time_ns()
        cursor: dict[str, int | None] | None = query.cursor
        if cursor is None:
            top = store.next_position
            begin = -1
            if query.last is not None:
                start = store.start_of_last(query.which, query.last, since_ns=query.since_ns, until_ns=query.until_ns)
                begin = top - 1 if start is None else start - 1
            sync = self._published() if query.sync and query.until_ns is None else None
            deadline = now + int(SYNC_SECONDS * 1e9) if sync is not None else None
            cursor = {"after": begin, "end": top, "sync": sync, "deadline": deadline}
        first, end = cursor["after"], cursor["end"]
        assert first is not None and end is not None  # checked by parse_request
        records, more = self._page(query, first, end)
        after = records[-1].position if records else first
        cursor = {**cursor, "after": after}
        wait = False
        if not more and cursor["sync"] is not None:
            if _processed(feed) >= cursor["sync"] or now >= (cursor["deadline"] or 0):
                # Everything received before the first request is stored (or never will be):
                # the query ends with what the store holds now.
                cursor.update(sync=None, deadline=None, end=store.next_position)
                more = store.next_position - 1 > after
            else:
                more = wait = True
        header = {"v": VERSION, "id": query.id, "ok": True, "count": len(records), "end": not more}
        header.update(cursor=cursor, now=now, wait=wait)
        return [orjson.dumps(header), pack_times([r.time_ns for r in records]), *(r.frame for r in records)]

    def _page(self, query: Query, after: int, end: int) -> tuple[list[Stored], bool]:
        """Records after ``after`` and before ``end``: at most a page; and whether more may follow."""
        assert self._feed is not None
        store = self._feed.store
        chunk = store.read(
            query.which,
            after=after,
            since_ns=query.since_ns,
            until_ns=query.until_ns,
            limit=PAGE_RECORDS,
            max_bytes=PAGE_BYTES,
        )
        out = [record for record in chunk if record.position < end]
        if len(out) < len(chunk):
            return out, False
        held = sum(_HEADER + len(record.frame) for record in out)  # as the store counts a record's bytes
        return out, len(out) == PAGE_RECORDS or held >= PAGE_BYTES


def _readable(feed: StoreFeed) -> bool:
    """Whether the store is open (a store that cannot write may still be read)."""
    return bool(getattr(feed, "_open", False))


def _processed(feed: StoreFeed) -> int:
    """Records the store's thread has taken from the bridges and dealt with (stored, skipped or not writable)."""
    s = feed.status
    return s.appended + s.skipped + s.missed.get("unwritable", 0)
