"""Shared fixtures for the end-to-end tests: real sockets, real processes, bounded waits.

Every wait here is bounded so a broken fabric fails a test quickly instead of
hanging it, and every handler, listener, logger and subprocess a fixture hands
out is cleaned up at teardown.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import selectors
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import fabric
from fabric.codec import Encoder, ProducerIdentity
from fabric.topic import join_message, make_topic
from tests.helpers.factories import handler_factory, listener_factory
from tests.helpers.net import ROOT, free_port, tcp_endpoint
from tests.helpers.waiting import wait_until

HELPERS = Path(__file__).resolve().parent / "helpers"
PRODUCER = HELPERS / "producer.py"

_names = itertools.count()


# --------------------------------------------------------------------------- plain helpers


def unique_name(prefix: str = "t") -> str:
    """Return a logger name no other test uses."""
    return f"{prefix}.{os.getpid()}.{next(_names)}"


class Capture(logging.Handler):
    """A handler that keeps every record it is given, safely across threads."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._records: list[logging.LogRecord] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self._records.append(record)

    @property
    def records(self) -> list[logging.LogRecord]:
        """A snapshot of the records received so far."""
        with self._guard:
            return list(self._records)

    def __len__(self) -> int:
        with self._guard:
            return len(self._records)

    def named(self, name: str) -> list[logging.LogRecord]:
        """The records whose logger is ``name``."""
        return [r for r in self.records if r.name == name]

    def wait_for(self, count: int, timeout: float = 5.0, name: str | None = None) -> bool:
        """Wait (bounded) until at least ``count`` records (of logger ``name``) arrived."""
        if name is None:
            return wait_until(lambda: len(self) >= count, timeout)
        return wait_until(lambda: len(self.named(name)) >= count, timeout)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def endpoint() -> str:
    """A fresh TCP endpoint on 127.0.0.1."""
    return tcp_endpoint()


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


class Spawner:
    """Runs ``tests/helpers/producer.py`` in subprocesses; what it starts it also reaps."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    @staticmethod
    def command(*args: object) -> list[str]:
        """The argv that runs the producer helper with ``args``."""
        return [sys.executable, str(PRODUCER), *(str(a) for a in args)]

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        """The environment for a helper: this checkout importable, no fabric variables, ``extra`` added."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.pop("LOGFABRIC_ENDPOINT", None)
        env.pop("LOGFABRIC_SERVICE", None)
        env.update(extra)
        return env

    def start(self, *args: object, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the producer helper with ``args``."""
        proc = subprocess.Popen(
            self.command(*args),
            env=env or self.env(),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def read_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
        """Read one line of a helper's stdout, failing (not hanging) if none comes within ``timeout``."""
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                pytest.fail(f"helper {proc.args!r} printed nothing within {timeout}s")
        return proc.stdout.readline()

    @staticmethod
    def finish(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
        """Wait (bounded) for a helper to exit 0 and return its stdout; fail with its stderr otherwise."""
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"helper {proc.args!r} did not exit within {timeout}s; stderr:\n{err}")
        assert proc.returncode == 0, f"helper {proc.args!r} exited {proc.returncode}; stderr:\n{err}"
        return out

    def reap(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                proc.communicate(timeout=10)


@pytest.fixture
def helpers() -> Iterator[Spawner]:
    """Run producer helper subprocesses; any still running is killed at teardown."""
    spawner = Spawner()
    yield spawner
    spawner.reap()


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., bool]:
    """The bounded ``wait_until(predicate, timeout)`` helper."""
    return wait_until


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """The ``free_port()`` helper: a TCP port on 127.0.0.1 nothing listens on."""
    return free_port


class Link:
    """One producer handler wired to one started listener, with a logger that feeds the handler."""

    def __init__(
        self,
        handler: fabric.ZmqHandler,
        listener: fabric.ZmqListener,
        capture: Capture,
        logger: logging.Logger,
        endpoint: str,
    ) -> None:
        self.handler = handler
        self.listener = listener
        self.capture = capture
        self.logger = logger
        self.endpoint = endpoint


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


class Craft:
    """Builds records and wire messages by hand, as a foreign or hostile producer would."""

    identity = ProducerIdentity("raw-svc", "raw-host", 4242, 0xFEEDFACE)

    @staticmethod
    def record(name: str, msg: str, levelno: int = logging.INFO, **extra: object) -> logging.LogRecord:
        """A LogRecord built without logging.getLogger (so no local logger is created)."""
        fields = {"name": name, "msg": msg, "levelno": levelno, "levelname": logging.getLevelName(levelno)}
        return logging.makeLogRecord({**fields, **extra})

    @classmethod
    def frames(cls, record: logging.LogRecord, seq: int, codec: str = "protobuf") -> list[bytes]:
        """The one-frame message (topic NUL payload) this identity sends as its ``seq``-th record on its topic."""
        return [
            join_message(
                make_topic(record.levelno, record.name, cls.identity.service),
                Encoder(cls.identity, codec).encode(record, seq),  # type: ignore[arg-type]
            )
        ]


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
