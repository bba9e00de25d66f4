"""History first, then live, and what a reconnect missed: the history side of a :class:`~fabric._receiver.Receiver`.

The switch from history to live shows no record twice and misses none:

1. the live SUB socket connects first; :class:`LinkWatch` reports when its
   handshakes are done (and so its subscriptions sent), at most
   :data:`CONNECT_WAIT` seconds;
2. the history is read page by page while live records wait in the socket's
   own queue (bounded by its high-water mark: past it the broker drops for
   this subscriber, which shows as a gap);
3. the history query is ``sync``: its last page comes once the broker's store
   holds everything the broker had received when the query arrived, so a
   record that went past before the subscription took effect is in the history;
4. live records are then read; the :class:`~fabric._intake.Intake` drops those
   history already delivered, by (producer id, topic, seq).

After a reconnect (a broker restarted, on the same store), the same is done
for what was missed: history from a little before the last live record
(:data:`RESUME_MARGIN`), whose records the intake drops when already seen, so
only records the store never got are reported as gaps.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from fabric._history import HistoryError, HistoryPlan, expand, fetch
from fabric._intake import Replayed
from fabric.curve import CurveKeys, HandshakeWatch
from fabric.discovery import Resolver

__all__ = ["CONNECT_WAIT", "RESUME_MARGIN", "Catchup", "LinkWatch"]

#: Longest wait for the live socket's handshakes before the history is asked for.
CONNECT_WAIT = 3.0
#: Seconds before the last live record from which a reconnect asks history (clock differences, store lag).
RESUME_MARGIN = 5.0
_diag = logging.getLogger("logfabric.listener")
_UP = zmq.EVENT_HANDSHAKE_SUCCEEDED
_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


class _Relay:
    """Stands for a socket and its monitor to a :class:`HandshakeWatch`, handing it the failures LinkWatch read."""

    def __init__(self) -> None:
        self.events: deque[list[bytes]] = deque()

    def get_monitor_socket(self, events: int) -> _Relay:
        return self

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self.events:
            raise zmq.Again()
        return self.events.popleft()

    def disable_monitor(self) -> None:
        pass

    def close(self, linger: int | None = None) -> None:
        pass


class LinkWatch:
    """The live socket's connections, from its monitor: handshakes done, and connections that came back.

    With CURVE keys it also reports refused handshakes, as :class:`HandshakeWatch` does (one monitor per socket).
    """

    def __init__(self, sock: zmq.Socket[bytes], keys: CurveKeys | None) -> None:
        self._sock = sock
        self._monitor: zmq.Socket[bytes] | None = sock.get_monitor_socket(_UP | zmq.EVENT_DISCONNECTED | _FAILED)
        self._relay = _Relay()
        self._curve = HandshakeWatch(self._relay, keys) if keys is not None else None  # type: ignore[arg-type]
        self.up: set[str] = set()
        """Endpoints whose handshake succeeded and that have not disconnected since."""
        self.seen: set[str] = set()
        self.came_back = 0
        """Connections that succeeded again after one had gone: a broker that restarted (or a network that healed)."""

    def check(self) -> None:
        """Read the events waiting (never blocks)."""
        monitor = self._monitor
        while monitor is not None:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            event = parse_monitor_message(frames)
            endpoint = event["endpoint"].decode("utf-8", "replace")
            if event["event"] == _UP:
                if endpoint in self.seen and endpoint not in self.up:
                    self.came_back += 1
                self.seen.add(endpoint)
                self.up.add(endpoint)
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self.up.discard(endpoint)
            else:
                self._relay.events.append(frames)
        if self._curve is not None and self._relay.events:
            self._curve.check()

    def waiting(self) -> bool:
        """Whether events wait (cheap: one look at the monitor socket)."""
        return self._monitor is not None and bool(cast(int, self._monitor.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

    def close(self) -> None:
        """Stop watching (before the socket closes)."""
        if self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None


class Catchup:
    """The history a receiver reads before live records: the plan's first, then after each reconnect."""

    def __init__(
        self,
        plan: HistoryPlan,
        query: dict[str, object],
        curve: CurveKeys | None,
        resolver: Resolver | None,
    ) -> None:
        self.plan = plan
        self.query = query
        """The filter, as the requests carry it (level, loggers, services)."""
        self.curve = curve
        self.resolver = resolver
        self.started = False
        self.done = False
        """True once the first history was read and ``follow`` is False: nothing more comes."""
        self.last_live = 0.0
        """When the last live record arrived (``time.time()``)."""
        self.opened_at = time.time()
        self._came_back = 0
        self._pending: float | None = None
        """Where the resume being read started (cleared once it is read to its end)."""
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._stream: Iterator[tuple[int, bytes]] | None = None
        self._raise = True

    def begin(self, links: LinkWatch | None, wanted: int) -> None:
        """Start the first history once the live socket's ``wanted`` handshakes are done (bounded wait)."""
        self.started = True
        if links is not None and self.plan.follow and self.plan.initial:
            deadline = time.monotonic() + CONNECT_WAIT
            while len(links.up) < wanted and time.monotonic() < deadline:
                time.sleep(0.005)
                links.check()
            self._came_back = links.came_back
        if self.plan.initial:
            query = dict(self.query, since=self.plan.since_ns, until=self.plan.until_ns, last=self.plan.last)
            self._open(query, sync=self.plan.follow, raise_errors=True)

    def reconnected(self, links: LinkWatch) -> None:
        """Start the history of what a reconnect missed, if one happened since the last look."""
        if links.came_back == self._came_back or not self.plan.resume:
            return
        self._came_back = links.came_back
        anchor = self.last_live or self.opened_at
        if self._pending is not None:  # an earlier resume did not finish: start from where it started
            anchor = min(anchor, self._pending)
        self._pending = anchor
        since = max(anchor - RESUME_MARGIN, self.opened_at - RESUME_MARGIN)
        self.close_stream()
        self._open(dict(self.query, since=int(since * 1e9)), sync=True, raise_errors=False)

    def _open(self, query: dict[str, object], *, sync: bool, raise_errors: bool) -> None:
        if self._ctx is None:
            self._ctx = zmq.Context()
        endpoints = expand(self.plan.endpoints, self.resolver)
        self._stream = fetch(self._ctx, endpoints, {**query, "sync": sync}, self.curve)
        self._raise = raise_errors

    def next(self) -> Replayed | None:
        """The next message from history, or None when none is being read."""
        stream = self._stream
        if stream is None:
            return None
        try:
            _, frame = next(stream)
            return Replayed([frame])
        except StopIteration:
            self._pending = None  # read to its end: the next reconnect starts from its own last record
        except HistoryError as exc:
            if self._raise:
                self.close_stream()
                raise
            _diag.warning("could not fetch what the reconnect missed (reported as gaps instead): %s", exc)
        self.close_stream()
        if not self.plan.follow:
            self.done = True
        return None

    def close_stream(self) -> None:
        """Stop reading the history being read (its sockets close)."""
        if self._stream is not None:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
            self._stream = None

    def close(self) -> None:
        """Close the sockets and the context."""
        self.close_stream()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
