"""subscribe(): remote records as a plain iterator, for scripts and notebooks."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Literal

import zmq

from fabric import _sockets
from fabric._intake import GapNotice, Intake, open_socket, sees_whole_stream
from fabric.codec import Limits
from fabric.curve import CurveKeys, HandshakeWatch, client_keys
from fabric.discovery import Endpoints, Resolver

__all__ = ["GapNotice", "Subscription", "subscribe"]


def subscribe(
    endpoints: str | list[str] | tuple[str, ...],
    *,
    level: int | str | None = None,
    loggers: Iterable[str] = (),
    services: Iterable[str] = (),
    mode: Literal["sub", "pull"] = "sub",
    bind: bool = False,
    timeout: float | None = None,
    limits: Limits | None = None,
    resolver: Resolver | None = None,
    resolve_interval: float = 10.0,
    curve_server_key: str | os.PathLike[str] | None = None,
    curve_client_key: str | os.PathLike[str] | None = None,
) -> Subscription:
    """Return an iterator of remote records as :class:`logging.LogRecord` objects.

    Filtering and safety are those of :class:`fabric.ZmqListener`. Gap notices
    come in line, before the record that revealed the loss, for the streams the
    filter wants; they are :class:`GapNotice` instances (logger
    ``logfabric.gaps``), which a remote record can never be, so test with
    ``isinstance(record, GapNotice)``, not by name. Iteration ends when no record has
    arrived for ``timeout`` seconds (``None``: never). The socket opens here, so
    a bad endpoint raises at once; it closes when iteration ends, on
    :meth:`Subscription.close`, or at the end of a ``with`` block.
    ``dns+tcp://NAME:PORT`` endpoints connect to every address of NAME (all
    brokers behind a headless Service) and follow it as it changes.
    ``curve_server_key`` and ``curve_client_key`` (default
    ``$LOGFABRIC_CURVE_SERVER_KEY`` and ``$LOGFABRIC_CURVE_CLIENT_KEY``) are the
    paths of the broker's public key file and this subscriber's secret key
    file, for CurveZMQ (see :class:`fabric.ZmqListener`).

    Example::

        with fabric.subscribe("tcp://127.0.0.1:5558", level="WARNING") as records:
            for record in records:
                print(record.service, record.levelname, record.getMessage())
    """
    checked = Endpoints(_sockets.endpoint_list(endpoints), resolver, resolve_interval)
    keys = client_keys(curve_server_key, curve_client_key)
    intake = Intake(level, loggers, services, limits, gaps=sees_whole_stream(mode, bind))
    return Subscription(checked, intake, mode, bind, timeout, curve=keys)


class Subscription(Iterator[logging.LogRecord]):
    """The iterator :func:`subscribe` returns; ``stats`` counts as a listener's do."""

    def __init__(
        self,
        endpoints: Endpoints,
        intake: Intake,
        mode: str,
        bind: bool,
        timeout: float | None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.intake = intake
        self._endpoints = endpoints
        self.timeout = timeout
        self._sock: zmq.Socket[bytes] | None = None  # close() and __del__ work even if opening fails
        self._watch: HandshakeWatch | None = None
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

        def watch(sock: zmq.Socket[bytes]) -> None:  # a refused CURVE handshake is reported, not silent
            if curve is not None:
                self._watch = HandshakeWatch(sock, curve)

        try:
            self._sock = open_socket(
                self._ctx, endpoints, mode, bind, intake.subscriptions(), curve=curve, before_attach=watch
            )
        except Exception:
            if self._watch is not None:
                self._watch.close()
            self._ctx.term()
            raise
        self._ready: deque[logging.LogRecord] = deque()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: received, malformed, filtered, gaps, resyncs, truncated, errors."""
        return self.intake.stats

    @property
    def bound(self) -> list[str]:
        """With ``bind=True``: the endpoints bound, ``*`` ports resolved."""
        return list(self._endpoints.bound)

    def __next__(self) -> logging.LogRecord:
        idle_since = time.monotonic()
        while not self._ready:
            sock = self._sock
            if sock is None:
                raise StopIteration
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                if time.monotonic() >= self._endpoints.next_refresh:
                    self._endpoints.refresh(sock)
                if self._watch is not None:
                    self._watch.check()
                if self.timeout is None:
                    sock.poll(100)
                    continue
                left = self.timeout - (time.monotonic() - idle_since)
                if left <= 0:
                    self.close()
                    raise StopIteration from None
                sock.poll(max(1, int(min(left, 0.1) * 1000)))
                continue
            self._ready.extend(self.intake.receive(frames))
        return self._ready.popleft()

    def close(self) -> None:
        """Close the socket; iteration then ends."""
        if self._sock is not None:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            self._sock.close(linger=0)
            self._ctx.term()
            self._sock = None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
