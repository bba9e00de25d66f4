"""ZmqListener: a QueueListener whose queue is a ZeroMQ SUB or PULL socket."""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Literal

import zmq

from fabric import _sockets
from fabric._intake import Intake, open_socket, sees_whole_stream
from fabric.codec import Limits
from fabric.curve import client_keys
from fabric.discovery import Endpoints, Resolver

__all__ = ["Dispatch", "ZmqListener"]

Dispatch = Literal["handlers", "loggers"]

_POLL_MS = 50
_DRAIN_SECONDS = 2.0


class _Inbox:
    """The listener's queue: ``get`` reads the socket, ``put_nowait`` asks it to stop.

    Only the listener thread reads the socket. ``put_nowait`` (called by
    ``QueueListener.stop`` with the sentinel) sets a flag; the next ``get`` then
    hands out what has already arrived and finally the sentinel.
    """

    def __init__(self, sock: zmq.Socket[bytes], sentinel: object, endpoints: Endpoints) -> None:
        self.sock = sock
        self.sentinel = sentinel
        self.endpoints = endpoints
        self._count = 0
        self.stopping = False
        self._drain_deadline = 0.0

    def put_nowait(self, item: object) -> None:
        if item is not self.sentinel:
            raise TypeError("a ZmqListener's queue only accepts its stop sentinel")
        self._drain_deadline = time.monotonic() + _DRAIN_SECONDS
        self.stopping = True

    def get(self, block: bool = True) -> Any:
        sock = self.sock
        while True:
            if self.stopping:
                if time.monotonic() > self._drain_deadline:
                    return self.sentinel
                try:
                    return sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return self.sentinel
            self._count += 1
            if self._count & 1023 == 0 and time.monotonic() >= self.endpoints.next_refresh:
                self.endpoints.refresh(sock)
            try:
                return sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                if not block:
                    raise queue.Empty from None
                if time.monotonic() >= self.endpoints.next_refresh:
                    self.endpoints.refresh(sock)
                sock.poll(_POLL_MS)


class ZmqListener(logging.handlers.QueueListener):
    """Receive remote records and hand them to local handlers, safely.

    ``ZmqListener(endpoints, *handlers, respect_handler_level=True, mode="sub",
    bind=False, level=None, loggers=(), services=(), dispatch="handlers")``
    follows the ``QueueListener`` seams: :meth:`dequeue` returns the next raw
    message, :meth:`handle` rehydrates it (see :func:`fabric.codec.decode`) and
    passes each record through :meth:`prepare` to the handlers.

    Args:
        endpoints: one endpoint or a list; the socket attaches to all of them.
        handlers: local handlers that receive every record (``dispatch="handlers"``).
        respect_handler_level: skip handlers whose level is above the record's.
        mode: ``"sub"`` (a broker's egress or pub producers) or ``"pull"`` (push
            producers sending straight to this listener).
        bind: bind instead of connect (pull listeners usually bind).
        level, loggers, services: the filter. In ``"sub"`` mode level and logger
            prefixes are applied by the socket subscription, so excluded records
            never arrive; everything is then checked exactly here.
        dispatch: ``"handlers"``, or ``"loggers"`` to route each record through
            the local logging tree as ``logging.getLogger(record.name).handle``.
        limits: caps for untrusted text (see :class:`fabric.codec.Limits`).
        resolver, resolve_interval: for ``dns+tcp://NAME:PORT`` endpoints, which
            connect to every address of NAME and re-resolve it every
            ``resolve_interval`` seconds (see :mod:`fabric.discovery`);
            ``resolver(host, port)`` returns addresses (default: getaddrinfo).
        curve_server_key, curve_client_key: paths of the broker's public key
            file and of this subscriber's secret key file, to encrypt and
            authenticate with CurveZMQ (both or neither; default
            ``$LOGFABRIC_CURVE_SERVER_KEY`` and ``$LOGFABRIC_CURVE_CLIENT_KEY``,
            else plaintext). Read here, so a bad key file raises at once.

    Attributes:
        stats: ``received``, ``malformed``, ``filtered``, ``gaps``,
            ``truncated`` and ``errors`` counts. A jump in a producer's sequence
            is reported as a WARNING record on logger ``logfabric.gaps``.
    """

    def __init__(
        self,
        endpoints: str | list[str] | tuple[str, ...],
        *handlers: logging.Handler,
        respect_handler_level: bool = True,
        mode: Literal["sub", "pull"] = "sub",
        bind: bool = False,
        level: int | str | None = None,
        loggers: Iterable[str] = (),
        services: Iterable[str] = (),
        dispatch: Dispatch = "handlers",
        limits: Limits | None = None,
        resolver: Resolver | None = None,
        resolve_interval: float = 10.0,
        curve_server_key: str | os.PathLike[str] | None = None,
        curve_client_key: str | os.PathLike[str] | None = None,
    ) -> None:
        if mode not in ("sub", "pull"):
            raise ValueError(f"unknown mode {mode!r}: use 'sub' or 'pull'")
        if dispatch not in ("handlers", "loggers"):
            raise ValueError(f"unknown dispatch {dispatch!r}: use 'handlers' or 'loggers'")
        self.endpoints = _sockets.endpoint_list(endpoints)
        self._endpoints = Endpoints(self.endpoints, resolver, resolve_interval)
        self.mode = mode
        self.bind = bind
        self.dispatch = dispatch
        self.intake = Intake(level, loggers, services, limits, gaps=sees_whole_stream(mode, bind))
        self.curve = client_keys(curve_server_key, curve_client_key)
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        super().__init__(None, *handlers, respect_handler_level=respect_handler_level)  # type: ignore[arg-type]
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> dict[str, int]:
        """Counters: received, malformed, filtered, gaps, truncated, errors."""
        return self.intake.stats

    @property
    def bound(self) -> list[str]:
        """With ``bind=True``, after :meth:`start`: the endpoints bound, ``*`` ports resolved.

        ``ZmqListener("tcp://127.0.0.1:*", mode="pull", bind=True)`` binds a free
        port; ``listener.bound[0]`` is the endpoint producers should use.
        """
        return list(self._endpoints.bound)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open the socket (raising a clear error for a bad endpoint) and start the thread."""
        if self._thread is not None:
            raise RuntimeError("this ZmqListener is already started; stop() it first")
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            sock = open_socket(
                ctx, self._endpoints, self.mode, self.bind, self.intake.subscriptions(), curve=self.curve
            )
        except Exception:
            ctx.term()
            raise
        self._ctx = ctx
        self.queue = _Inbox(sock, self._sentinel, self._endpoints)  # type: ignore[attr-defined]
        super().start()

    def stop(self) -> None:
        """Handle what has already arrived (for up to 2 s), then stop and close the socket."""
        if self._thread is None:
            return
        super().stop()
        self._thread = None
        inbox: _Inbox = self.queue  # type: ignore[assignment]
        inbox.sock.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self) -> ZmqListener:
        """Start the listener unless it already runs (as one from ``listen_from_config`` does)."""
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ QueueListener seams

    def handle(self, record: Any) -> None:
        """Rehydrate one raw message and dispatch what it yields; never raises.

        (The stdlib name is kept: ``record`` here is the raw multipart message
        returned by :meth:`dequeue`.)
        """
        try:
            for rehydrated in self.intake.receive(record):
                prepared = self.prepare(rehydrated)
                if prepared is not None:
                    self._dispatch(prepared)
        except Exception:  # the listener thread must survive anything
            self.intake.stats["errors"] += 1

    def _dispatch(self, record: logging.LogRecord) -> None:
        if self.dispatch == "loggers":
            _route(record.name).handle(record)
            return
        levelno = record.levelno
        for handler in self.handlers:
            if self.respect_handler_level and levelno < handler.level:
                continue
            try:
                handler.handle(record)
            except Exception:
                self.intake.stats["errors"] += 1


def _route(name: str) -> logging.Logger:
    """Return the logger that routes ``name`` without creating one per remote name.

    A logger that does not exist locally has no handlers or filters of its own,
    so its nearest existing ancestor routes the record identically; creating
    loggers for every name a remote peer invents would leak memory.
    """
    known = logging.Logger.manager.loggerDict
    while name:
        found = known.get(name)
        if isinstance(found, logging.Logger):
            return found
        cut = name.rfind(".")
        name = name[:cut] if cut > 0 else ""
    return logging.getLogger()
