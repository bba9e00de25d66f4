"""Fixtures for the fault suite: broker and producer subprocesses, a counting subscriber, figures.

Everything runs over 127.0.0.1 with real ZeroMQ sockets and real processes.
Every wait is bounded, every socket a fixture opens is closed with linger 0 and
every subprocess a fixture starts is killed at teardown. Fixture names carry a
``rel_`` prefix so they never clash with ``tests/conftest.py``.

Each test reports the figure it asserts through the ``rel_figure`` fixture: the
line is printed (``pytest -s`` shows it) and repeated in a "reliability
figures" section at the end of the run, so the figures can be quoted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import fabric
from tests.helpers import waiting
from tests.helpers.broker import BrokerProc
from tests.helpers.factories import counted_listener_factory, handler_factory, zmq_context
from tests.helpers.net import ROOT, child_env, free_ports, host_port, http_get, tcp_endpoint
from tests.helpers.wire import Wire

SCRIPTS = Path(__file__).resolve().parent / "scripts"

_FIGURES: list[str] = []


# --------------------------------------------------------------------------- figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat every figure the suite measured, in one section."""
    if _FIGURES:
        terminalreporter.section("reliability figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def rel_figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``rel_figure(text)``: print a measured figure and keep it for the end-of-run summary."""

    def report(text: str) -> None:
        line = f"{request.node.name}: {text}"
        print(f"FIGURE {line}", flush=True)
        _FIGURES.append(line)

    return report


# --------------------------------------------------------------------------- plain helpers


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """:func:`tests.helpers.waiting.wait_until` with this suite's defaults (10 s, polling every 20 ms)."""
    return waiting.wait_until(predicate, timeout, interval)


# --------------------------------------------------------------------------- subprocesses


class ProducerProc:
    """``scripts/producer.py`` in a subprocess; its JSON stdout lines are read in a thread."""

    def __init__(self, endpoint: str, count: int, *options: object, script: str = "producer.py") -> None:
        self.args = [sys.executable, str(SCRIPTS / script), endpoint, str(count), *(str(o) for o in options)]
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: forked children are killed with it
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.exited_at: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))
        self.events.put(None)

    def next_event(self, what: str, timeout: float = 20.0, **match: object) -> dict[str, Any]:
        """The next stdout event ``what`` (with fields ``match``), waiting at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(0.01, left))
            except queue.Empty:
                event = {}
            if event is None or (left <= 0 and not event):
                self.kill()
                err = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"producer never reported {what} {match} (exit {self.proc.returncode}); stderr:\n{err}")
            if event:
                self.seen.append(event)
            if event.get("event") == what and all(event.get(k) == v for k, v in match.items()):
                return event

    def finish(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait (bounded) for the report and a clean exit; return the report."""
        report = self.next_event("report", timeout)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"producer did not exit within {timeout} s")
        self.exited_at = time.time()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        assert self.proc.returncode == 0, f"producer exited {self.proc.returncode}:\n{err}"
        return report

    def kill(self) -> None:
        """SIGKILL the process and whatever it forked that is still running; reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


# --------------------------------------------------------------------------- the counting subscriber


class Ledger(logging.Handler):
    """Counts what a subscriber delivers, per producer: records, sequence numbers, gaps reported.

    For each ``producer_id`` it keeps the records delivered (and duplicates),
    the highest ``seq``, the sum of ``lost`` over the gap notices
    (``logfabric.gaps``) and the ranges those notices name. For a producer that
    logs on one topic, "no silent loss" means every ``seq`` up to the last one
    was either delivered or named by a gap notice (:meth:`silent` is 0). Then
    ``delivered + gaps == sent``, unless records arrived out of order after a
    reconnection: a record can be reported lost and then arrive (:meth:`late`).
    """

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self.delivered: Counter[str] = Counter()
        self.gaps: Counter[str] = Counter()
        self.max_seq: dict[str, int] = {}
        self.seqs: defaultdict[str, set[int]] = defaultdict(set)
        self.duplicates = 0
        self.names: Counter[str] = Counter()
        self.pids: defaultdict[str, set[int]] = defaultdict(set)
        self.reported: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)

    def emit(self, record: logging.LogRecord) -> None:
        attrs = record.__dict__
        pid = str(attrs.get("producer_id"))
        with self._guard:
            self.names[record.name] += 1
            if record.name == "logfabric.gaps":
                lost = int(attrs.get("lost", 0))
                self.gaps[pid] += lost
                found = re.search(r"seq (\d+) to (\d+) never arrived", record.getMessage())
                if found:
                    first, last = int(found.group(1)), int(found.group(2))
                    assert last - first + 1 == lost, record.getMessage()
                    self.reported[pid].append((first, last))
                return
            seq = int(attrs.get("seq") or 0)
            if seq in self.seqs[pid]:
                self.duplicates += 1
            self.seqs[pid].add(seq)
            self.delivered[pid] += 1
            self.max_seq[pid] = max(self.max_seq.get(pid, 0), seq)
            if record.process is not None:
                self.pids[pid].add(record.process)

    def count(self, name: str | None = None) -> int:
        """Records delivered (of logger ``name``), gap notices excluded."""
        with self._guard:
            if name is not None:
                return self.names[name]
            return sum(n for k, n in self.names.items() if k != "logfabric.gaps")

    def _reported(self, producer_id: str) -> set[int]:
        return {seq for first, last in self.reported[producer_id] for seq in range(first, last + 1)}

    def silent(self, producer_id: str, sent: int) -> int:
        """Records 1..``sent`` of a producer neither delivered nor named by a gap notice."""
        with self._guard:
            missing = set(range(1, sent + 1)) - self.seqs[producer_id]
            return len(missing - self._reported(producer_id))

    def late(self, producer_id: str) -> int:
        """Records reported lost that arrived afterwards (reordered across a reconnection)."""
        with self._guard:
            return len(self._reported(producer_id) & self.seqs[producer_id])

    def of(self, producer_id: str) -> tuple[int, int]:
        """(delivered, gaps reported) for one producer."""
        with self._guard:
            return self.delivered[producer_id], self.gaps[producer_id]


def settle(ledgers: list[Ledger], quiet: float = 0.5, timeout: float = 20.0) -> None:
    """Wait (bounded) until no ledger has grown for ``quiet`` seconds."""
    waiting.wait_quiet(lambda: [len(ledger.names) + ledger.count() for ledger in ledgers], quiet, timeout)


def probe(handler: fabric.ZmqHandler, ledgers: list[Ledger], name: str = "rel.probe", timeout: float = 10.0) -> int:
    """Send probe records until every ledger got a new one (subscriptions have travelled); return how many."""
    before = [ledger.count(name) for ledger in ledgers]

    def send(n: int) -> None:
        handler.handle(logging.LogRecord(name, logging.ERROR, __file__, 1, "probe %d", (n,), None))

    sent = waiting.send_until(
        send, lambda: all(lg.count(name) > n for lg, n in zip(ledgers, before, strict=True)), timeout
    )
    if sent is None:
        pytest.fail(f"probes never reached every subscriber within {timeout} s")
    return sent


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def rel_broker(tmp_path: Path) -> Iterator[Callable[..., BrokerProc]]:
    """Start ``python -m broker`` subprocesses (ready before returned); all killed at teardown."""
    started: list[BrokerProc] = []

    def start(*extra: str, wait: bool = True) -> BrokerProc:
        for _ in range(3):  # a port picked free may be taken by a concurrent test before the broker binds it
            broker = BrokerProc(tmp_path, *extra).start()
            started.append(broker)
            if not wait:
                return broker
            assert broker.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                broker.proc.wait(0.3)
            if broker.proc.poll() == 2 and "already in use" in broker.stderr():
                broker.kill()
                continue
            return broker.wait_ready()
        pytest.fail(f"no free ports for a broker after 3 tries:\n{broker.stderr()}")

    yield start
    for broker in started:
        broker.kill()


@pytest.fixture
def rel_producer() -> Iterator[Callable[..., ProducerProc]]:
    """Start ``scripts/*.py`` producer subprocesses; all killed at teardown."""
    started: list[ProducerProc] = []

    def start(endpoint: str, count: int, *options: object, script: str = "producer.py") -> ProducerProc:
        proc = ProducerProc(endpoint, count, *options, script=script)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def rel_listener() -> Iterator[Callable[..., tuple[fabric.ZmqListener, Ledger]]]:
    """Started ZmqListeners, each with its own :class:`Ledger`; all stopped at teardown."""
    with counted_listener_factory(Ledger) as make:
        yield make


@pytest.fixture
def rel_handler() -> Iterator[Callable[..., fabric.ZmqHandler]]:
    """In-process ZmqHandlers (probes); all closed at teardown with a short linger."""
    with handler_factory("rel-probe", linger=0.5, max_linger=0.5) as make:
        yield make


@pytest.fixture
def rel_zmq() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A zmq context for raw sockets; every socket closed with linger 0 at teardown."""
    with zmq_context() as ctx:
        yield ctx


@pytest.fixture
def rel_tcp_endpoint() -> str:
    """A fresh ``tcp://127.0.0.1:PORT``."""
    return tcp_endpoint()


@pytest.fixture(scope="session")
def rel() -> Any:
    """The plain helpers of this conftest, for test modules (which do not import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        Ledger=Ledger,
        ROOT=ROOT,
        SCRIPTS=SCRIPTS,
        child_env=child_env,
        free_ports=free_ports,
        host_port=host_port,
        http_get=http_get,
        probe=probe,
        settle=settle,
        wait_until=wait_until,
    )


@pytest.fixture(scope="session")
def rel_wire() -> Wire:
    """The current frame layout, learnt from a real handler (see :class:`tests.helpers.wire.Wire`)."""
    return Wire.learn(service="wire", name="rel.wire")
