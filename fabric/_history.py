"""Asking brokers for stored records: where their history endpoints are, what to ask, pages merged by time.

A subscriber's options ``since``, ``until``, ``last`` and ``history`` become a
:class:`HistoryPlan` (:func:`make_plan`). The history endpoints are given
(``history=``) or derived from the subscriber's endpoints: the same host on
port :data:`~fabric._history_wire.DEFAULT_PORT` (``tcp://broker:5558`` asks
``tcp://broker:5559``; ``dns+tcp://brokers:5558`` asks every address of
``brokers`` on 5559). :func:`fetch` asks every endpoint (each broker replica)
page by page and yields ``(stored time, frame)`` merged by time; memory stays
at one page per endpoint, except that the newest ``last`` of several replicas
are gathered (``last`` records) before they are handed on.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
import zmq

from fabric._errors import ConfigError
from fabric._history_wire import DEFAULT_PORT, VERSION, unpack_times
from fabric.curve import CurveKeys
from fabric.discovery import DNS_SCHEME, Resolver, resolve_all

__all__ = ["HistoryError", "HistoryPlan", "When", "fetch", "make_plan", "parse_time"]

#: Seconds a history endpoint has to answer one page.
PAGE_TIMEOUT = 5.0
#: Seconds to wait before asking again when the broker says its store is still taking records in.
_WAIT = 0.02
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_ids = itertools.count(1)

When = str | float | int | datetime.datetime


class HistoryError(ConfigError):
    """A history query that cannot be answered; the message says why and what to do."""


@dataclass(frozen=True)
class HistoryPlan:
    """What a subscriber asks brokers' history endpoints for, before it goes live (and after a reconnect)."""

    endpoints: tuple[str, ...]
    """History endpoints: ``tcp://HOST:PORT`` or ``dns+tcp://NAME:PORT`` (every address)."""
    since_ns: int | None = None
    until_ns: int | None = None
    last: int | None = None
    follow: bool = True
    """Go live after the history (False: end after it)."""
    resume: bool = True
    """After a broker comes back, fetch from its history what the subscriber missed."""

    @property
    def initial(self) -> bool:
        """Whether history comes first (``since``, ``until`` or ``last`` given)."""
        return self.since_ns is not None or self.until_ns is not None or self.last is not None


def parse_time(value: When, now: float | None = None, what: str = "since") -> int:
    """A time as nanoseconds since the epoch: a datetime, seconds since the epoch, an ISO 8601 string,
    or a duration before now such as ``"10m"``, ``"1h30m"``, ``"90s"``, ``"2d"`` (a naive ISO time is local time)."""
    now = time.time() if now is None else now
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1e9)
    if isinstance(value, str):
        text = value.strip()
        parts = _DURATION.findall(text)
        if parts and _DURATION.sub("", text).strip() == "":
            return int((now - sum(float(n) * _UNITS[u] for n, u in parts)) * 1e9)
        try:
            return int(datetime.datetime.fromisoformat(text).timestamp() * 1e9)
        except ValueError:
            pass
    raise ValueError(
        f"{what}: expected a duration before now such as '10m', '2h' or '90s', an ISO 8601 time such as "
        f"'2026-12-08T10:00:00', seconds since the epoch or a datetime, got {value!r}"
    )


def derive(endpoints: Iterable[str]) -> tuple[str, ...]:
    """The history endpoints of a subscriber's endpoints: the same host on :data:`DEFAULT_PORT`."""
    out = []
    for endpoint in endpoints:
        if endpoint.startswith(("tcp://", DNS_SCHEME)):
            scheme, _, rest = endpoint.partition("://")
            host = rest.rpartition(":")[0]
            if host in ("*", "0.0.0.0", "[::]", ""):
                host = "127.0.0.1"
            out.append(f"{scheme}://{host}:{DEFAULT_PORT}")
        else:
            raise ValueError(
                f"cannot tell the history endpoint of {endpoint!r}: pass history='tcp://HOST:{DEFAULT_PORT}' "
                "(the broker's --history endpoint)"
            )
    return tuple(dict.fromkeys(out))


def make_plan(
    endpoints: list[str],
    *,
    mode: str,
    bind: bool,
    history: str | list[str] | tuple[str, ...] | None,
    since: When | None,
    until: When | None,
    last: int | None,
    follow: bool = True,
    resume: bool | None = None,
) -> HistoryPlan | None:
    """Check the history options; None when this subscriber uses no history. ValueError says what is wrong."""
    wanted = since is not None or until is not None or last is not None
    if resume is None:
        resume = wanted or history is not None
    if not wanted and not resume and history is None:
        if not follow:
            raise ValueError("follow=False ends after the history: give since, until or last too")
        return None
    if mode != "sub" or bind:
        raise ValueError(
            "history (since, until, last, history, resume) needs a subscriber that connects to brokers "
            "(mode='sub', bind=False)"
        )
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
        raise ValueError(f"last: expected a whole number of at least 1, got {last!r}")
    now = time.time()
    since_ns = None if since is None else parse_time(since, now, "since")
    until_ns = None if until is None else parse_time(until, now, "until")
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        raise ValueError("until must be later than since")
    if history is None:
        chosen = derive(endpoints)
    else:
        chosen = (history,) if isinstance(history, str) else tuple(history)
        for ep in chosen:
            if not isinstance(ep, str) or not ep.startswith(("tcp://", "ipc://", "inproc://", DNS_SCHEME)):
                raise ValueError(f"history: expected endpoints such as 'tcp://broker:{DEFAULT_PORT}', got {ep!r}")
    # Records newer than `until` are not history; with it there is nothing live to follow.
    return HistoryPlan(chosen, since_ns, until_ns, last, follow and until_ns is None, resume)


def expand(endpoints: Iterable[str], resolver: Resolver | None) -> list[str]:
    """Plain endpoints, with each ``dns+tcp://NAME:PORT`` replaced by every address of NAME (each replica)."""
    out: list[str] = []
    for endpoint in endpoints:
        if not endpoint.startswith(DNS_SCHEME):
            out.append(endpoint)
            continue
        host, _, port = endpoint[len(DNS_SCHEME) :].rpartition(":")
        try:
            addresses = sorted(set((resolver or resolve_all)(host.strip("[]"), int(port))))
        except (OSError, ValueError) as exc:
            raise HistoryError(f"cannot resolve {endpoint!r} for history: {exc}") from None
        out.extend(f"tcp://[{a}]:{port}" if ":" in a else f"tcp://{a}:{port}" for a in addresses)
    return out


def fetch(
    ctx: zmq.Context[zmq.Socket[bytes]],
    endpoints: list[str],
    query: dict[str, object],
    curve: CurveKeys | None = None,
    timeout: float | None = None,
) -> Iterator[tuple[int, bytes]]:
    """``(stored time, frame)`` of every matching record of every endpoint, oldest first; HistoryError if one fails.

    ``query`` holds the request's filter and range (``level``, ``loggers``,
    ``services``, ``since``, ``until``, ``last``, ``sync``).
    """
    wait = PAGE_TIMEOUT if timeout is None else timeout
    streams = [_pages(ctx, ep, query, curve, wait) for ep in endpoints]
    if len(streams) == 1:
        yield from streams[0]
        return
    merged = heapq.merge(*streams, key=lambda item: item[0])
    last = query.get("last")
    if isinstance(last, int):  # the newest `last` of all replicas together
        yield from deque(merged, maxlen=last)
    else:
        yield from merged


def _pages(
    ctx: zmq.Context[zmq.Socket[bytes]],
    endpoint: str,
    query: dict[str, object],
    curve: CurveKeys | None,
    timeout: float,
) -> Iterator[tuple[int, bytes]]:
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 0)
        if curve is not None:
            curve.apply(sock)
        sock.connect(endpoint)
        cursor: object = None
        while True:
            ident = next(_ids)
            request = {"v": VERSION, "id": ident, **query}
            if cursor is not None:
                request["cursor"] = cursor
            sock.send(orjson.dumps(request))
            header, times, frames = _reply(sock, endpoint, ident, timeout)
            yield from zip(times, frames, strict=True)
            if header.get("end") is True:
                return
            cursor = header.get("cursor")
            if header.get("wait"):
                time.sleep(_WAIT)
    finally:
        sock.close(linger=0)


def _reply(
    sock: zmq.Socket[bytes], endpoint: str, ident: int, timeout: float
) -> tuple[dict[str, object], tuple[int, ...], list[bytes]]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(max(1, int(left * 1000))):
            raise HistoryError(
                f"no answer from the history endpoint {endpoint} within {timeout:g} s: is the broker running with "
                f"--history (and --store)? Pass history= (--history) to name its history endpoint"
            )
        message = sock.recv_multipart()
        try:
            header = orjson.loads(message[0])
            if not isinstance(header, dict) or header.get("v") != VERSION:
                raise ValueError("not a version 1 reply")
            if header.get("id") not in (ident, None):
                continue  # the answer to an earlier request that timed out
            if header.get("ok") is not True:
                raise HistoryError(f"the history endpoint {endpoint} refused the query: {header.get('message')}")
            count = header.get("count")
            if not isinstance(count, int) or len(message) != count + 2:
                raise ValueError(f"a reply of {len(message)} frames for {count} records")
            return header, unpack_times(message[1], count), message[2:]
        except (orjson.JSONDecodeError, ValueError, IndexError) as exc:
            if isinstance(exc, HistoryError):
                raise
            raise HistoryError(f"the history endpoint {endpoint} answered with a malformed reply: {exc}") from None
