"""Shared fixtures for the end-to-end tests: real sockets, real processes, bounded waits.

Every wait here is bounded so a broken fabric fails a test quickly instead of
hanging it, and every handler, listener, logger and subprocess a fixture hands
out is cleaned up at teardown.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import fabric
from tests.helpers.capture import Capture
from tests.helpers.factories import Link, handler_factory, listener_factory
from tests.helpers.keys import KeySet, make_keys
from tests.helpers.net import free_port, tcp_endpoint
from tests.helpers.processes import ProducerRunner
from tests.helpers.waiting import wait_until
from tests.helpers.wire import Craft

_names = itertools.count()


def unique_name(prefix: str = "t") -> str:
    """Return a logger name no other test uses."""
    return f"{prefix}.{os.getpid()}.{next(_names)}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def endpoint() -> str:
    """A fresh TCP endpoint on 127.0.0.1."""
    return tcp_endpoint()


@pytest.fixture
def curve_keys(tmp_path: Path) -> KeySet:
    """A fresh set of CurveZMQ key files (see :class:`tests.helpers.keys.KeySet`)."""
    return make_keys(tmp_path / "keys")


@pytest.fixture
def capture() -> Iterator[Capture]:
    """A capturing handler, closed at teardown."""
    handler = Capture()
    yield handler
    handler.close()


@pytest.fixture
def make_capture() -> Iterator[Callable[..., Capture]]:
    """A factory of capturing handlers, all closed at teardown."""
    made: list[Capture] = []

    def make(level: int = logging.NOTSET) -> Capture:
        handler = Capture(level)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()


@pytest.fixture
def make_logger() -> Iterator[Callable[..., logging.Logger]]:
    """A factory of isolated loggers (propagate=False, DEBUG); handlers removed and state restored at teardown."""
    made: list[tuple[logging.Logger, bool, int, bool]] = []

    def make(name: str | None = None, *handlers: logging.Handler, level: int = logging.DEBUG) -> logging.Logger:
        logger = logging.getLogger(name or unique_name())
        made.append((logger, logger.propagate, logger.level, logger.disabled))
        logger.propagate = False
        logger.setLevel(level)
        logger.disabled = False
        for handler in handlers:
            logger.addHandler(handler)
        return logger

    yield make
    for logger, propagate, level, disabled in reversed(made):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for flt in list(logger.filters):
            logger.removeFilter(flt)
        logger.propagate, logger.level, logger.disabled = propagate, level, disabled


@pytest.fixture
def make_handler() -> Iterator[Callable[..., fabric.ZmqHandler]]:
    """A factory of ZmqHandlers, all closed at teardown (linger bounded)."""
    with handler_factory("test-svc") as make:
        yield make


@pytest.fixture
def make_listener() -> Iterator[Callable[..., fabric.ZmqListener]]:
    """A factory of started ZmqListeners, all stopped at teardown."""
    with listener_factory() as make:
        yield make


@pytest.fixture
def make_subscription() -> Iterator[Callable[..., fabric.Subscription]]:
    """A factory of subscribe() iterators, all closed at teardown."""
    made: list[fabric.Subscription] = []

    def make(endpoints: str | list[str], **options: Any) -> fabric.Subscription:
        sub = fabric.subscribe(endpoints, **options)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def producers() -> Iterator[ProducerRunner]:
    """Run ``tests/helpers/producer.py`` in subprocesses; any still running is killed at teardown."""
    runner = ProducerRunner()
    yield runner
    runner.reap()


@pytest.fixture
def helpers(producers: ProducerRunner) -> ProducerRunner:
    """The same as ``producers``, under the name some modules still use."""
    return producers


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., bool]:
    """The bounded ``wait_until(predicate, timeout)`` helper."""
    return wait_until


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """The ``free_port()`` helper: a TCP port on 127.0.0.1 nothing listens on."""
    return free_port


@pytest.fixture
def make_link(
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_logger: Callable[..., logging.Logger],
    make_capture: Callable[..., Capture],
) -> Callable[..., Link]:
    """Wire a producer to a listener over 127.0.0.1 TCP and wait until records can flow.

    ``mode`` is the producer's ("push" pairs with a pull listener, "pub" with a
    sub listener); ``producer_binds`` says which side binds. A binding push
    producer gets a send timeout so its first records wait for the listener to
    connect instead of being dropped (drop mode is tested on its own).
    """

    def link(
        mode: str = "push",
        *,
        producer_binds: bool = False,
        codec: str = "protobuf",
        handler_options: dict[str, Any] | None = None,
        listener_options: dict[str, Any] | None = None,
        logger_name: str | None = None,
    ) -> Link:
        endpoint = tcp_endpoint()
        capture = make_capture()
        listener = make_listener(
            endpoint,
            capture,
            mode="pull" if mode == "push" else "sub",
            bind=not producer_binds,
            **(listener_options or {}),
        )
        options = dict(handler_options or {})
        if mode == "push" and producer_binds:
            options.setdefault("send_timeout", 5.0)
        handler = make_handler(endpoint, mode=mode, codec=codec, bind=producer_binds, **options)
        assert handler.wait_ready(5.0), f"no subscriber reached the {mode} handler on {endpoint} within 5 s"
        logger = make_logger(logger_name, handler)
        return Link(handler, listener, capture, logger, endpoint)

    return link


@pytest.fixture
def craft() -> type[Craft]:
    """Hand-made records and frames (see :class:`Craft`)."""
    return Craft


@pytest.fixture
def raw_push() -> Iterator[Callable[[str], zmq.Socket[bytes]]]:
    """A factory of raw zmq PUSH sockets connected to an endpoint; all closed at teardown."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    socks: list[zmq.Socket[bytes]] = []

    def make(endpoint: str) -> zmq.Socket[bytes]:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, 5000)  # a send never hangs a test
        sock.connect(endpoint)
        socks.append(sock)
        return sock

    yield make
    for sock in socks:
        sock.close(linger=0)
    ctx.term()
