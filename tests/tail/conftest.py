"""Fixtures for the ``logfabric tail`` and ``listen_from_config`` tests.

The tail runs as a real subprocess against a real broker embedded in the test
process; records come from real ``ZmqHandler`` producers. Every wait is bounded,
every endpoint is on 127.0.0.1, and every subprocess, handler, logger and
logging change a fixture makes is undone at teardown. Names carry a ``tail_``
prefix so they never clash with ``tests/conftest.py``.

Synchronisation: a tail only receives what is published after its
subscription reached the broker, so tests *stream* records (one every few
milliseconds) until the tail exits on its own with ``--count``. The records a
tail prints are then consecutive, and anything sent between two of them that
it did not print was filtered out, not lost to the start-up race.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pty
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import fabric
from broker import Broker
from tests.helpers.waiting import stream_until

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TAIL = [sys.executable, "-m", "fabric.cli", "tail"]

_ids = itertools.count()


def _unique(prefix: str = "tailt") -> str:
    """A name (logger prefix or service) no other test uses."""
    return f"{prefix}{os.getpid()}x{next(_ids)}"


def _env(**changes: str | None) -> dict[str, str]:
    """The tail's environment: this checkout and tests/tail importable, no colour or fabric variables."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(ROOT), env.get("PYTHONPATH")]))
    for name in ("LOGFABRIC_SUBSCRIBE", "LOGFABRIC_ENDPOINT", "LOGFABRIC_SERVICE", "NO_COLOR", "FORCE_COLOR"):
        env.pop(name, None)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@dataclass
class TailResult:
    """What a finished tail left behind."""

    returncode: int
    stdout: bytes
    stderr: str
    sent: int = 0

    @property
    def text(self) -> str:
        """stdout as text (undecodable bytes escaped, line endings untouched)."""
        return self.stdout.decode("utf-8", "backslashreplace")

    @property
    def lines(self) -> list[str]:
        """stdout split on LF only (a raw CR stays visible inside its line)."""
        return self.text.split("\n")[:-1] if self.text else []

    def describe(self) -> str:
        """A summary for assertion messages."""
        return f"exit {self.returncode}, {self.sent} record(s) sent\nstdout:\n{self.text}\nstderr:\n{self.stderr}"


@contextlib.contextmanager
def _sigint_inherited_as_default() -> Iterator[None]:
    """Let children started here get SIGINT's default action even if this process ignores SIGINT.

    A shell starts background jobs with SIGINT ignored, and an ignored signal
    stays ignored across exec, so a tail started from such a test run could
    not be interrupted. A handled signal is reset to its default by exec.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class TailProcess:
    """One running ``logfabric tail``; stdout is a pipe or, with ``tty=True``, a pseudo-terminal."""

    def __init__(self, argv: list[str], env: dict[str, str], tty: bool) -> None:
        self.master: int | None = None
        self.early = b""  # stdout read before finish()
        if tty:
            master, slave = pty.openpty()
            try:
                with _sigint_inherited_as_default():
                    self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=slave, stderr=subprocess.PIPE)
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            self.master = master
        else:
            with _sigint_inherited_as_default():
                self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stream(self, emit: Callable[[int], object], timeout: float = 15.0, interval: float = 0.01) -> TailResult:
        """Call ``emit(0)``, ``emit(1)``, ... every ``interval`` s until the tail exits (bounded); return its result."""
        sent = stream_until(emit, lambda: self.proc.poll() is not None, timeout, interval)
        result = self.finish(timeout=5.0)
        result.sent = sent
        return result

    def stream_until_output(self, emit: Callable[[int], object], timeout: float = 15.0) -> int:
        """Call ``emit(0)``, ``emit(1)``, ... until the tail has printed something (bounded); return the count.

        What was read is kept and handed back by :meth:`finish`.
        """
        assert self.proc.stdout is not None, "stream_until_output needs a piped stdout"
        stdout = self.proc.stdout
        os.set_blocking(stdout.fileno(), False)

        def printed() -> bool:
            self.early += stdout.read() or b""
            return bool(self.early) or self.proc.poll() is not None

        sent = stream_until(emit, printed, timeout)
        os.set_blocking(stdout.fileno(), True)
        if not self.early:
            self.kill()
            pytest.fail(f"tail {self.proc.args!r} printed nothing within {timeout} s")
        return sent

    def finish(self, timeout: float = 10.0) -> TailResult:
        """Wait (bounded) for the tail to exit on its own; fail the test with its output if it does not."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate(timeout=10)
            pytest.fail(f"tail {self.proc.args!r} did not exit within {timeout} s; stderr:\n{err.decode()}")
        if self.master is not None:
            out = self._drain_tty()
        out = self.early + (out or b"")
        return TailResult(self.proc.returncode, out, err.decode("utf-8", "backslashreplace"))

    def _drain_tty(self) -> bytes:
        assert self.master is not None
        data = b""
        try:
            while select.select([self.master], [], [], 1.0)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child closed the terminal and everything was read
                    break
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(self.master)
            self.master = None
        return data

    def kill(self) -> None:
        """Kill the tail if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()

    def reap(self) -> None:
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            self.proc.communicate(timeout=10)
        if self.master is not None:
            os.close(self.master)
            self.master = None


class TailRunner:
    """Starts ``logfabric tail`` subprocesses against one broker; kills them all at teardown."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.egress = broker.endpoints["egress"]
        self.running: list[TailProcess] = []

    def start(
        self,
        *args: str,
        endpoint: bool = True,
        env: dict[str, str] | None = None,
        tty: bool = False,
        argv0: list[str] = TAIL,
    ) -> TailProcess:
        """Start a tail with ``args`` (after the broker's egress endpoint unless ``endpoint=False``)."""
        argv = [*argv0, *([self.egress] if endpoint else []), *args]
        tail = TailProcess(argv, env or _env(), tty)
        self.running.append(tail)
        return tail

    def run(self, *args: str, timeout: float = 20.0, env: dict[str, str] | None = None) -> TailResult:
        """Run a tail with exactly ``args`` (no endpoint added) to completion, bounded."""
        done = subprocess.run(
            [*TAIL, *args], env=env or _env(), cwd=ROOT, capture_output=True, timeout=timeout, check=False
        )
        return TailResult(done.returncode, done.stdout, done.stderr.decode("utf-8", "backslashreplace"))

    def close(self) -> None:
        for tail in self.running:
            tail.reap()


class TailProducer:
    """A ``ZmqHandler`` pushing to the broker, and isolated loggers (``propagate=False``) feeding it."""

    def __init__(self, endpoint: str, service: str, prefix: str, **options: Any) -> None:
        options.setdefault("linger", 1.0)
        self.handler = fabric.ZmqHandler(endpoint, service=service, **options)
        self.created = _Created()
        self.handler.addFilter(self.created)
        self.service = service
        self.prefix = prefix
        self._loggers: list[tuple[logging.Logger, bool, int]] = []

    def logger(self, suffix: str = "app") -> logging.Logger:
        """The isolated logger ``<prefix>.<suffix>`` (DEBUG, handler attached)."""
        logger = logging.getLogger(f"{self.prefix}.{suffix}" if suffix else self.prefix)
        if self.handler not in logger.handlers:
            self._loggers.append((logger, logger.propagate, logger.level))
            logger.propagate = False
            logger.setLevel(1)
            logger.addHandler(self.handler)
        return logger

    def send(self, name: str, msg: str, levelno: int = logging.INFO, **attrs: Any) -> logging.LogRecord:
        """Ship a hand-made record named ``name`` without creating a local logger of that name."""
        record = logging.makeLogRecord(
            {"name": name, "msg": msg, "levelno": levelno, "levelname": logging.getLevelName(levelno), **attrs}
        )
        self.handler.handle(record)
        return record

    def close(self) -> None:
        for logger, propagate, level in reversed(self._loggers):
            logger.removeHandler(self.handler)
            logger.propagate, logger.level = propagate, level
        self.handler.linger = min(self.handler.linger, 1.0)
        self.handler.close()


class _Created(logging.Filter):
    """Remembers each record's ``created`` and ``msecs`` by message, to check printed times."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[str, tuple[float, float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        self.times[record.getMessage()] = (record.created, record.msecs)
        return True


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def tail_unique() -> Callable[..., str]:
    """``tail_unique(prefix)``: a logger prefix or service name no other test uses."""
    return _unique


@pytest.fixture
def tail_env() -> Callable[..., dict[str, str]]:
    """``tail_env(NAME=value, OTHER=None)``: the tail's environment with changes (None removes a variable)."""
    return _env


@pytest.fixture(scope="module")
def tail_broker() -> Iterator[Broker]:
    """A broker in this process on 127.0.0.1 ephemeral ports, shared by one module's tests."""
    broker = Broker(pub_ingest="tcp://127.0.0.1:*", push_ingest="tcp://127.0.0.1:*", egress="tcp://127.0.0.1:*")
    broker.start()
    yield broker
    broker.stop(drain_timeout=1)


@pytest.fixture
def tail_cli(tail_broker: Broker) -> Iterator[TailRunner]:
    """Runs ``logfabric tail`` subprocesses against ``tail_broker``; any still running is killed at teardown."""
    runner = TailRunner(tail_broker)
    yield runner
    runner.close()


@pytest.fixture
def tail_producer(tail_broker: Broker) -> Iterator[Callable[..., TailProducer]]:
    """A factory of producers pushing to ``tail_broker`` (unique service and logger prefix); closed at teardown."""
    made: list[TailProducer] = []

    def make(service: str | None = None, prefix: str | None = None, **options: Any) -> TailProducer:
        producer = TailProducer(
            tail_broker.endpoints["push_ingest"], service or _unique("svc"), prefix or _unique(), **options
        )
        made.append(producer)
        return producer

    yield make
    for producer in made:
        producer.close()


@pytest.fixture
def tail_logging_sandbox() -> Iterator[None]:
    """Contain a dictConfig applied in this process (by ``listen_from_config``).

    dictConfig closes every handler the process knows and replaces the root
    logger's handlers and level. Here it only sees the handlers the test makes;
    at teardown those are closed and the root logger is put back.
    """
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers), root.disabled)
    with logging._lock:  # type: ignore[attr-defined]
        saved_list = list(logging._handlerList)  # type: ignore[attr-defined]
        saved_named = dict(logging._handlers)  # type: ignore[attr-defined]
        logging._handlerList[:] = []  # type: ignore[attr-defined]
        logging._handlers.clear()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        with logging._lock:  # type: ignore[attr-defined]
            made = [ref() for ref in logging._handlerList]  # type: ignore[attr-defined]
            mine = {id(h) for h in made if h is not None and type(h).__module__.split(".")[0] != "_pytest"}
        loggers = [root, *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
        for logger in loggers:
            for handler in list(logger.handlers):
                if id(handler) in mine:
                    logger.removeHandler(handler)
        for handler in made:
            if handler is not None and id(handler) in mine:
                handler.close()
        root.setLevel(saved_root[0])
        root.disabled = saved_root[2]
        for handler in saved_root[1]:
            if type(handler).__module__.split(".")[0] != "_pytest" and handler not in root.handlers:
                root.addHandler(handler)
        with logging._lock:  # type: ignore[attr-defined]
            alive = [ref for ref in logging._handlerList if ref() is not None and id(ref()) not in mine]  # type: ignore[attr-defined]
            logging._handlerList[:] = saved_list + alive  # type: ignore[attr-defined]
            logging._handlers.clear()  # type: ignore[attr-defined]
            logging._handlers.update(saved_named)  # type: ignore[attr-defined]


@pytest.fixture
def tail_listen(tail_logging_sandbox: None) -> Iterator[Callable[..., fabric.ZmqListener]]:
    """``fabric.listen_from_config`` inside ``tail_logging_sandbox``; every listener it returned is stopped at teardown.

    dictConfig closes the handlers the process already has: create producers
    (``tail_producer``) after calling it, not before.
    """
    started: list[fabric.ZmqListener] = []

    def listen(source: Any, **overrides: Any) -> fabric.ZmqListener:
        listener = fabric.listen_from_config(source, **overrides)
        started.append(listener)
        return listener

    yield listen
    for listener in started:
        listener.stop()
