"""One zmq.proxy_steerable in its own thread, with a control socket for statistics and stop."""

from __future__ import annotations

import itertools
import logging
import struct
import threading

import zmq

__all__ = ["Proxy", "ProxyStats"]

_log = logging.getLogger("logfabric.broker")
_ids = itertools.count()

#: The proxy's own counters, in frames and bytes (libzmq counts message parts).
ProxyStats = tuple[int, int, int, int, int, int, int, int]
ZERO: ProxyStats = (0, 0, 0, 0, 0, 0, 0, 0)


class Proxy:
    """Forward between two sockets in C; ask it for counters; stop it.

    Until :meth:`terminate` the proxy thread owns ``frontend`` and ``backend``;
    afterwards the caller may use them again (the thread has been joined).
    """

    def __init__(
        self, ctx: zmq.Context[zmq.Socket[bytes]], name: str, frontend: zmq.Socket[bytes], backend: zmq.Socket[bytes]
    ) -> None:
        self.name = name
        self.frontend = frontend
        self.backend = backend
        address = f"inproc://logfabric-control-{next(_ids)}-{name}"
        self._theirs = ctx.socket(zmq.PAIR)
        self._theirs.bind(address)
        self._ours = ctx.socket(zmq.PAIR)
        self._ours.connect(address)
        self._lock = threading.Lock()
        self._final: ProxyStats | None = None
        self.last: ProxyStats = ZERO
        """The last counters the proxy answered (what to show while it is too busy to answer)."""
        self.failed: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"logfabric-proxy-{name}", daemon=True)

    def start(self) -> None:
        """Start forwarding."""
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the forwarding thread is running."""
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self.frontend, self.backend, None, self._theirs)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                self.failed = str(exc)
                _log.error("proxy %s stopped: %s", self.name, exc)

    def statistics(self, timeout_ms: int = 1000) -> ProxyStats:
        """Frames and bytes in and out of each side; the last figures once stopped."""
        with self._lock:
            if self._final is not None:
                return self._final
            if not self.alive:
                return ZERO
            while self._ours.poll(0):  # a late answer to a request that timed out
                self._ours.recv_multipart()
            self._ours.send(b"STATISTICS")
            if not self._ours.poll(timeout_ms):
                raise TimeoutError(f"proxy {self.name} did not answer STATISTICS")
            frames = self._ours.recv_multipart()
            values: ProxyStats = tuple(struct.unpack("=Q", f)[0] for f in frames)
            if len(values) != 8:
                raise RuntimeError(f"proxy {self.name} answered {len(values)} counters, expected 8")
            self.last = values
            return values

    def terminate(self, timeout: float = 5.0) -> None:
        """Record the final counters, stop the thread and join it."""
        if self._final is not None:
            return
        try:
            final = self.statistics() if self.alive else self.last
        except (TimeoutError, RuntimeError, zmq.ZMQError):  # too busy to answer: stop it all the same
            final = self.last
        with self._lock:
            self._final = final
            if self.alive:
                self._ours.send(b"TERMINATE")
        self._thread.join(timeout)
        if self.alive:
            raise RuntimeError(f"proxy {self.name} did not stop within {timeout} s")

    def close(self) -> None:
        """Close the control sockets (after :meth:`terminate`)."""
        self._ours.close(linger=0)
        self._theirs.close(linger=0)
