"""Connection counts from ZeroMQ socket monitor events."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

__all__ = ["ConnectionMonitor"]

_EVENTS = (
    zmq.EVENT_ACCEPTED
    | zmq.EVENT_CONNECTED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)

_KINDS: dict[int, str] = {
    int(zmq.EVENT_ACCEPTED): "accepted",
    int(zmq.EVENT_CONNECTED): "connected",
    int(zmq.EVENT_DISCONNECTED): "disconnected",
    int(zmq.EVENT_HANDSHAKE_SUCCEEDED): "handshakes",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "failed_protocol",
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "failed_auth",
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "failed_other",
}


#: Events taken from one monitor socket before the others get their turn.
_BATCH = 256

#: The value of a HANDSHAKE_FAILED_AUTH event whose ZAP handler answered 300 (a temporary refusal).
_PENALIZED = 300


class ConnectionMonitor:
    """Count connections and handshake failures per socket, in a background thread.

    Attach every socket with :meth:`watch` before its proxy starts (monitoring
    is set up from the thread that owns the socket).
    """

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self._ctx = ctx
        self._monitors: dict[zmq.Socket[bytes], str] = {}
        self.counts: Counter[tuple[str, str]] = Counter()
        self._fds: dict[str, dict[int, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logfabric-monitor", daemon=True)
        self.on_event: Callable[[str, int, int], None] | None = None
        """Called as ``on_event(name, event, value)`` for every event, in the monitor thread."""
        self._gates: dict[str, Callable[[int], object]] = {}
        self._closers: dict[str, Callable[[int], object]] = {}

    def watch(self, name: str, sock: zmq.Socket[bytes]) -> None:
        """Start counting events of ``sock`` under ``name``."""
        self._monitors[sock.get_monitor_socket(_EVENTS)] = name

    def gate(
        self, name: str, on_accepted: Callable[[int], object], on_closed: Callable[[int], object] | None = None
    ) -> None:
        """Call ``on_accepted(fd)`` for each connection ``name`` accepts, before anything else is done with the event.

        The connection's handshake and first messages are being taken in
        meanwhile, so the gate is called as soon as the event arrives (it may
        shut the connection down; libzmq then reports it disconnected).
        ``on_closed(fd)`` is called for each DISCONNECTED event of ``name``;
        the events of one socket arrive in order.
        """
        self._gates[name] = on_accepted
        if on_closed is not None:
            self._closers[name] = on_closed

    def start(self) -> None:
        """Start the counting thread."""
        self._thread.start()

    def connections(self, name: str) -> int:
        """Open connections on ``name`` (accepted or connected, minus disconnected)."""
        with self._lock:
            c = self.counts
            return max(0, c[(name, "accepted")] + c[(name, "connected")] - c[(name, "disconnected")])

    def disconnects(self, name: str) -> int:
        """Connections of ``name`` that ended, whoever ended them."""
        with self._lock:
            return self.counts[(name, "disconnected")]

    def accepted_fds(self, name: str) -> dict[int, float]:
        """The file descriptors of the connections bound socket ``name`` accepted and still holds, with when.

        libzmq names them in its ACCEPTED and DISCONNECTED events. A number can
        be stale for the moment between a close and its event, so whoever uses
        one checks what it is first.
        """
        with self._lock:
            return dict(self._fds.get(name, {}))

    def handshake_failures(self, name: str) -> dict[str, int]:
        """Refused peers on ``name`` by reason: protocol, auth, other."""
        with self._lock:
            return {reason: self.counts[(name, f"failed_{reason}")] for reason in ("protocol", "auth", "other")}

    def _run(self) -> None:
        poller = zmq.Poller()
        for mon in self._monitors:
            poller.register(mon, zmq.POLLIN)
        while not self._stop.is_set():
            for mon, _ in poller.poll(100):
                # Every event waiting, not one a poll: gates free their descriptors sooner in a flood.
                for _ in range(_BATCH):
                    try:
                        event = recv_monitor_message(mon, zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._handle(self._monitors[mon], int(event["event"]), int(event["value"]))

    def _handle(self, name: str, kind: int, value: int) -> None:
        gate = self._gates.get(name) if kind == zmq.EVENT_ACCEPTED else None
        if gate is not None:
            gate(value)
        self._count(name, kind, value)
        closer = self._closers.get(name) if kind == zmq.EVENT_DISCONNECTED else None
        if closer is not None:
            closer(value)
        if self.on_event is not None:
            self.on_event(name, kind, value)

    def _count(self, name: str, event: int, value: int) -> None:
        kind = _KINDS.get(event)
        if kind is None:
            return
        if kind == "failed_auth" and value == _PENALIZED:
            kind = "penalized"  # refused for a while, not for bad security (see broker._subscriptions)
        with self._lock:
            self.counts[(name, kind)] += 1
            if kind == "accepted":
                self._fds.setdefault(name, {})[value] = time.monotonic()
            elif kind == "disconnected":
                self._fds.get(name, {}).pop(value, None)

    def stop(self) -> None:
        """Stop the thread and close the monitor sockets (sockets must be closed after)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        for mon in self._monitors:
            mon.close(linger=0)
