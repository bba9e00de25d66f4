"""subscribe(): remote records as a plain iterator, for scripts and notebooks."""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Literal

import zmq

from fabric import _sockets
from fabric._catchup import Catchup
from fabric._intake import GapNotice, Intake
from fabric._receiver import Receiver, configure
from fabric.codec import Limits
from fabric.curve import CurveKeys
from fabric.discovery import Endpoints, Resolver

__all__ = ["GapNotice", "Subscription", "subscribe"]


def subscribe(
    endpoints: str | list[str] | tuple[str, ...],
    *,
    level: int | str | None = None,
    loggers: Iterable[str] = (),
    services: Iterable[str] = (),
    last: int | None = None,
    since: str | float | datetime.datetime | None = None,
    until: str | float | datetime.datetime | None = None,
    follow: bool = True,
    history: str | list[str] | tuple[str, ...] | None = None,
    resume: bool | None = None,
    mode: Literal["sub", "pull"] = "sub",
    bind: bool = False,
    timeout: float | None = None,
    limits: Limits | None = None,
    resolver: Resolver | None = None,
    resolve_interval: float = 10.0,
    curve_server_key: str | os.PathLike[str] | None = None,
    curve_client_key: str | os.PathLike[str] | None = None,
    curve_allow_open_key: bool = False,
) -> Subscription:
    """Return an iterator of remote records as :class:`logging.LogRecord` objects.

    Filtering and safety are those of :class:`fabric.ZmqListener`, and so are
    the options (but the listener's handler and dispatch options): the socket,
    the filter, ``limits``, ``dns+tcp://`` resolution and CurveZMQ. Gap notices
    come in line, before the record that revealed the loss, for the streams the
    filter wants; they are :class:`GapNotice` instances (logger
    ``logfabric.gaps``), which a remote record can never be, so test with
    ``isinstance(record, GapNotice)``, not by name. Iteration ends when no record has
    arrived for ``timeout`` seconds (``None``: never). The socket opens here, so
    a bad endpoint raises at once; it closes when iteration ends, on
    :meth:`Subscription.close`, or at the end of a ``with`` block.
    ``dns+tcp://NAME:PORT`` endpoints connect to every address of NAME (all
    brokers behind a headless Service) and follow it as it changes; a
    re-resolution that fails keeps the current connections and is reported on
    logger ``logfabric.listener``, never raised into the loop.
    ``curve_server_key`` and ``curve_client_key`` (default
    ``$LOGFABRIC_CURVE_SERVER_KEY`` and ``$LOGFABRIC_CURVE_CLIENT_KEY``) are the
    paths of the broker's public key file and this subscriber's secret key
    file, for CurveZMQ; ``curve_allow_open_key`` accepts a secret key file that
    group or others may read (see :class:`fabric.ZmqListener`).

    History (a broker run with ``--store`` and ``--history``): ``last=N``
    first yields the newest N stored records that match, ``since`` those
    stored from then on (a duration before now such as ``"10m"``, an ISO 8601
    time, seconds since the epoch or a datetime), ``until`` only those stored
    before then (and then iteration ends); then live records follow, with
    none shown twice and none missing at the switch, unless
    ``follow=False``, which ends iteration after the history. ``history``
    names the brokers' history endpoints (default: each endpoint's host on
    port 5559; a ``dns+tcp://`` endpoint asks every broker, merged by time).
    ``resume`` (default: when history is used) fetches, after a broker comes
    back, what was missed meanwhile. A first history the brokers cannot
    give raises :class:`fabric.ConfigError` from iteration, saying why.

    Example::

        with fabric.subscribe("tcp://127.0.0.1:5558", level="WARNING") as records:
            for record in records:
                print(record.service, record.levelname, record.getMessage())
    """
    setup = configure(
        _sockets.endpoint_list(endpoints),
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
        until=until,
        last=last,
        follow=follow,
        resume=resume,
    )
    return Subscription(setup.endpoints, setup.intake, mode, bind, timeout, curve=setup.curve, catchup=setup.catchup)


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
        catchup: Catchup | None = None,
    ) -> None:
        self.intake = intake
        self.timeout = timeout
        self._ready: deque[logging.LogRecord] = deque()
        # close() and __del__ work even if opening fails
        self._rx = Receiver(endpoints, intake, mode, bind, curve, catchup=catchup)
        self._rx.open()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: received, malformed, filtered, gaps, resyncs, truncated, errors."""
        return self.intake.stats

    @property
    def bound(self) -> list[str]:
        """With ``bind=True``: the endpoints bound, ``*`` ports resolved."""
        return list(self._rx.endpoints.bound)

    @property
    def _sock(self) -> zmq.Socket[bytes] | None:
        """The socket while the subscription is open."""
        return self._rx.sock

    def __next__(self) -> logging.LogRecord:
        ready = self._ready
        if not ready:
            rx = self._rx
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            while not ready:
                if rx.sock is None:
                    raise StopIteration
                try:
                    frames = rx.receive(None if deadline is None else deadline - time.monotonic())
                except ValueError:  # a history the brokers cannot give: said once, then iteration ends
                    self.close()
                    raise
                if frames is None:  # nothing for timeout seconds, or the end of a history not followed
                    self.close()
                    raise StopIteration
                ready.extend(self.intake.receive(frames))
        return ready.popleft()

    def close(self) -> None:
        """Close the socket; iteration then ends."""
        self._rx.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        rx = getattr(self, "_rx", None)
        if rx is not None:
            rx.close()
