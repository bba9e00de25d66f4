"""ZmqListener: a QueueListener whose queue is a ZeroMQ SUB or PULL socket."""

from __future__ import annotations

import contextlib
import datetime
import logging
import logging.handlers
import math
import os
import queue
import sys
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Literal

from fabric import _sockets
from fabric._receiver import Receiver, configure
from fabric._threads import signals_blocked
from fabric.codec import Limits
from fabric.discovery import Resolver

__all__ = ["Dispatch", "ZmqListener"]

Dispatch = Literal["handlers", "loggers"]

_FAILURE_KINDS = 100  # distinct (where, exception type) pairs reported; past that, failures are only counted
_diag = logging.getLogger("logfabric.listener")


class ZmqListener(logging.handlers.QueueListener):
    """Receive remote records and hand them to local handlers, safely.

    ``ZmqListener(endpoints, *handlers, respect_handler_level=True, mode="sub",
    bind=False, level=None, loggers=(), services=(), dispatch="handlers")``
    follows the ``QueueListener`` seams: its queue is the socket itself, so
    :meth:`dequeue` returns the next raw message, :meth:`handle` rehydrates it
    (see :func:`fabric.codec.decode`) and passes each record through
    :meth:`prepare` to the handlers, and :meth:`enqueue_sentinel` asks the
    thread to drain and end (see :meth:`stop`).

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
            the local logging tree as ``logging.getLogger(record.name).handle``
            (then no handlers may be given: they would never be called).
        limits: caps for untrusted text (see :class:`fabric.codec.Limits`).
        resolver, resolve_interval: for ``dns+tcp://NAME:PORT`` endpoints, which
            connect to every address of NAME and re-resolve it every
            ``resolve_interval`` seconds (see :mod:`fabric.discovery`);
            ``resolver(host, port)`` returns addresses (default: getaddrinfo).
            A re-resolution that fails keeps the current connections and is
            reported on logger ``logfabric.listener`` (as by :func:`fabric.subscribe`).
        curve_server_key, curve_client_key: paths of the broker's public key
            file and of this subscriber's secret key file, to encrypt and
            authenticate with CurveZMQ (both or neither; default
            ``$LOGFABRIC_CURVE_SERVER_KEY`` and ``$LOGFABRIC_CURVE_CLIENT_KEY``,
            else plaintext). Read here, so a bad key file raises at once. A
            refused handshake is reported on logger ``logfabric.curve``.
        curve_allow_open_key: accept a secret key file that group or others
            may read or write (refused by default; see
            :func:`fabric.curve.check_secret_key_mode`).
        last, since, history: first the newest ``last`` stored records that
            match, or those stored since ``since`` (``"10m"``, an ISO 8601
            time, seconds since the epoch, a datetime), from the brokers'
            history endpoints (``history``; default: each endpoint's host on
            port 5559), then live ones: none twice, none missing at the
            switch. A history that cannot be had is reported on logger
            ``logfabric.listener`` and live records follow.
        resume: after a broker restarts (on the same store), fetch from its
            history what this listener missed meanwhile, so only records the
            store never got are reported as gaps (default: when history is used).

    Attributes:
        stats: ``received``, ``malformed``, ``filtered``, ``gaps``,
            ``resyncs``, ``truncated``, ``errors`` (local handler failures) and
            ``discarded`` (messages :meth:`stop` read but did not handle) counts.
            A jump in a producer's sequence is reported as a WARNING
            :class:`fabric.GapNotice` on logger ``logfabric.gaps``, made here
            (a remote record can never be one) and only for streams the filter
            wants; a sequence far behind a stream's highest restarts its
            tracking with a ``resync`` notice.
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
        last: int | None = None,
        since: str | float | datetime.datetime | None = None,
        history: str | list[str] | tuple[str, ...] | None = None,
        resume: bool | None = None,
        dispatch: Dispatch = "handlers",
        limits: Limits | None = None,
        resolver: Resolver | None = None,
        resolve_interval: float = 10.0,
        curve_server_key: str | os.PathLike[str] | None = None,
        curve_client_key: str | os.PathLike[str] | None = None,
        curve_allow_open_key: bool = False,
    ) -> None:
        if not isinstance(endpoints, (str, list, tuple)) or not all(isinstance(e, str) for e in endpoints):
            # dictConfig's "listener" key under a QueueHandler entry builds its listener as
            # klass(queue, *handlers): a ZmqListener subscribes to endpoints, it has no queue.
            raise ValueError(
                f"ZmqListener takes an endpoint or a list of endpoints, got {type(endpoints).__name__}; "
                "it subscribes over ZeroMQ, so it cannot be a QueueHandler's 'listener' in dictConfig: "
                "run it in the subscribing process (fabric.ZmqListener or fabric.listen_from_config)"
            )
        if dispatch not in ("handlers", "loggers"):
            raise ValueError(f"unknown dispatch {dispatch!r}: use 'handlers' or 'loggers'")
        if dispatch == "loggers" and handlers:
            raise ValueError(
                "dispatch='loggers' routes records through the local logging tree, so the handlers given would "
                "never be called: attach them to loggers, or use dispatch='handlers'"
            )
        self.endpoints = _sockets.endpoint_list(endpoints)
        self.mode = mode
        self.bind = bind
        self.dispatch = dispatch
        setup = configure(
            self.endpoints,
            mode=mode,
            bind=bind,
            level=level,
            loggers=loggers,
            services=services,
            limits=limits,
            resolver=resolver,
            resolve_interval=resolve_interval,
            curve_server_key=curve_server_key,
            curve_client_key=curve_client_key,
            curve_allow_open_key=curve_allow_open_key,
            history=history,
            since=since,
            last=last,
            resume=resume,
        )
        self._endpoints = setup.endpoints
        self.intake = setup.intake
        self.intake.stats.setdefault("discarded", 0)
        self.curve = setup.curve
        # The socket is the queue: dequeue() reads it, so the stdlib's queue stays unused.
        super().__init__(None, *handlers, respect_handler_level=respect_handler_level)  # type: ignore[arg-type]
        self._rx = Receiver(self._endpoints, self.intake, mode, bind, self.curve, setup.catchup, raise_history=False)
        self._left: float | None = None  # messages stop() may still read; set when the thread starts draining
        self._handle_until = math.inf  # after this (monotonic) time, stop() counts messages instead
        self._reported: set[tuple[str, type[BaseException]]] = set()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: received, malformed, filtered, gaps, resyncs, truncated, errors, discarded."""
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
        if self._rx.sock is not None:
            raise RuntimeError("this ZmqListener is already started; stop() it first")
        self._rx.open()
        self._left, self._handle_until = None, math.inf
        with signals_blocked():  # the thread blocks every signal (see fabric._threads)
            super().start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop receiving, hand every record that already arrived to the handlers, then close the socket.

        Like ``QueueListener.stop()``, nothing already received is lost. New
        arrivals stop first: a bound ``tcp://`` or ``ipc://`` endpoint is
        unbound (producers keep what they have not sent for the next listener),
        and from a connected endpoint (or an ``inproc://`` one) stop() takes at
        most a full receive queue (``RCVHWM`` messages) per connection, which is
        all that can be waiting, so a peer that never stops sending cannot keep
        stop() running. With ``timeout`` (seconds), what is still queued after
        it is read without being handled and counted in ``stats["discarded"]``
        (and reported on logger ``logfabric.listener``).
        """
        if self._rx.sock is None:
            return
        if timeout is not None:
            self._handle_until = time.monotonic() + max(0.0, timeout)
        discarded = self.stats["discarded"]
        super().stop()  # enqueue_sentinel(), then wait for the thread to drain and end
        self._rx.close()
        discarded = self.stats["discarded"] - discarded
        if discarded:
            _diag.warning(
                "stop() discarded %d message(s) that had arrived but were not handled within %.3g s",
                discarded,
                timeout or 0.0,
            )

    def __enter__(self) -> ZmqListener:
        """Start the listener unless it already runs (as one from ``listen_from_config`` does)."""
        if self._rx.sock is None:
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

    def enqueue_sentinel(self) -> None:
        """Ask the listener thread to stop receiving, drain what arrived and end (called by :meth:`stop`).

        Only the listener thread touches the socket, so this sets a flag the
        thread sees within 50 ms.
        """
        self._rx.interrupted = True

    def dequeue(self, block: bool) -> Any:
        """Return the next raw message (a list of frames) from the socket.

        Raises ``queue.Empty`` when nothing is waiting and ``block`` is false,
        and once :meth:`stop` has drained the socket, which ends the thread.
        """
        rx = self._rx
        while not rx.interrupted:
            frames = rx.receive(None if block else 0.0)
            if frames is not None:
                return frames
            if not block:
                raise queue.Empty
        return self._drain()

    def handle(self, record: Any) -> None:
        """Rehydrate one raw message and dispatch what it yields; never raises.

        (The stdlib name is kept: ``record`` here is the raw multipart message
        returned by :meth:`dequeue`.) Whatever a local handler or a
        :meth:`prepare` override raises, ``SystemExit`` and
        ``KeyboardInterrupt`` included, is counted in ``stats["errors"]`` and
        said once per kind on logger ``logfabric.listener``; the thread goes on.
        """
        where = "receiving a message"
        try:
            for rehydrated in self.intake.receive(record):
                where = "prepare"
                prepared = self.prepare(rehydrated)
                if prepared is not None:
                    self._dispatch(prepared)
        except BaseException as exc:  # the listener thread must survive anything
            self._failed(where, exc)

    def _dispatch(self, record: logging.LogRecord) -> None:
        if self.dispatch == "loggers":
            try:
                _route(record.name).handle(record)
            except BaseException as exc:
                self._failed("the local logging tree", exc)
            return
        levelno = record.levelno
        respect = self.respect_handler_level
        for handler in self.handlers:
            try:
                if not respect or levelno >= handler.level:
                    handler.handle(record)
            except BaseException as exc:
                self._failed(repr(handler), exc)

    # ------------------------------------------------------------------ internals (listener thread)

    def _drain(self) -> list[bytes]:
        rx = self._rx
        if self._left is None:
            self._left = rx.detach()
        while self._left >= 1:
            frames = rx.take()
            if frames is None:
                break
            self._left -= 1
            if time.monotonic() < self._handle_until:
                return frames
            self.stats["discarded"] += 1
        self._left = 0.0  # the thread ends; a later dequeue() finds nothing more to drain
        raise queue.Empty  # QueueListener's thread ends on Empty

    def _failed(self, where: str, exc: BaseException) -> None:
        """Count a local failure; say it once per (where, exception type)."""
        self.intake.stats["errors"] += 1
        kind = (where, type(exc))
        if kind in self._reported or len(self._reported) >= _FAILURE_KINDS:
            return
        self._reported.add(kind)
        fatal = not isinstance(exc, Exception)
        note = f" ({type(exc).__name__} would have ended the listener's thread)" if fatal else ""
        text = (
            f"{where} raised {type(exc).__name__}: {exc}{note}; counted in stats['errors'] and the listener "
            "goes on; later failures of this kind are only counted. Fix or remove that handler"
        )
        try:
            _diag.warning("%s", text, exc_info=(type(exc), exc, exc.__traceback__))
        except BaseException:  # the failing handler may be the one this warning reaches
            with contextlib.suppress(Exception):
                sys.stderr.write(f"logfabric.listener: {text}\n")


#: (how many names the logging manager knew, the most dots in one of them): see :func:`_route`.
_depth = (-1, 0)


def _route(name: str) -> logging.Logger:
    """Return the logger that routes ``name`` without creating one per remote name.

    A logger that does not exist locally has no handlers or filters of its own,
    so its nearest existing ancestor routes the record identically; creating
    loggers for every name a remote peer invents would leak memory.
    """
    global _depth
    known = logging.Logger.manager.loggerDict
    if _depth[0] != len(known):  # a logger was made here since: measure the deepest name again
        _depth = (len(known), max((n.count(".") for n in list(known)), default=0))
    # Only the first parts of a name deeper than every local logger can route it: cut the
    # rest at once, or a remote name of thousands of parts costs thousands of look-ups.
    if name.count(".") > _depth[1]:
        name = ".".join(name.split(".", _depth[1] + 1)[:-1])
    while name:
        found = known.get(name)
        if isinstance(found, logging.Logger):
            return found
        cut = name.rfind(".")
        name = name[:cut] if cut > 0 else ""
    return logging.getLogger()
