"""Fixtures for the broker tests: real broker processes, real producers, real ZeroMQ sockets.

Everything here talks over 127.0.0.1 only (the broker's defaults bind
``tcp://*``, so every broker gets explicit endpoints), every wait is bounded,
every socket is closed with linger 0 and every subprocess is killed at teardown.
Names carry a ``broker_`` prefix so they never clash with ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import zmq

import fabric
from broker import Broker
from tests.helpers.broker import BrokerProc, Metrics, embedded_brokers
from tests.helpers.factories import counted_listener_factory, handler_factory, zmq_context
from tests.helpers.net import ROOT, child_env, free_ports, host_port, http_get
from tests.helpers.waiting import send_until, wait_quiet, wait_until

#: The logger name of synchronisation probes; tests count records without them.
PROBE = "probe"

# A producer process: ``python -c PRODUCER_SCRIPT SPEC_JSON``. It prints
# ``START`` just before its first record and one JSON line of handler stats
# after its last, then closes the handler (delivering what is queued).
PRODUCER_SCRIPT = r"""
import json, logging, sys, time
import fabric

spec = json.loads(sys.argv[1])
handler = fabric.ZmqHandler(
    spec["endpoint"],
    mode=spec.get("mode", "push"),
    service=spec.get("service", "producer"),
    linger=spec.get("linger", 5.0),
)
if spec.get("mode") == "pub":
    if not handler.wait_ready(spec.get("wait_ready", 10.0)):
        print("no subscriber reached the pub producer", file=sys.stderr, flush=True)
        sys.exit(3)
    time.sleep(spec.get("settle", 0.3))  # let every subscriber's prefixes arrive
pad = "x" * spec.get("pad", 0)
plan = []
for name, level, count in spec["plan"]:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(1)
    log.addHandler(handler)
    plan.append((log, level, count))
print("START", flush=True)
started = last = time.monotonic()
longest = 0.0  # the longest pause between two records (a stalled process shows here)
for log, level, count in plan:
    for i in range(count):
        log.log(level, "record %d%s", i, pad)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
report = {"stats": handler.stats, "seconds": last - started, "longest_pause": longest}
print(json.dumps(report), flush=True)
handler.close()
"""


# --------------------------------------------------------------------------- plain helpers


def broker_wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """:func:`wait_until` with the broker tests' defaults (10 s, polling every 20 ms)."""
    return wait_until(predicate, timeout, interval)


def probe_until_seen(
    handler: fabric.ZmqHandler,
    captures: list[BrokerCapture],
    name: str = PROBE,
    level: int = logging.ERROR,
    timeout: float = 10.0,
) -> int:
    """Send probe records through ``handler`` until every capture got a new one; return how many were sent.

    This is how a test knows that subscriptions have travelled all the way
    from its subscribers through the broker(s) before it starts counting.
    """
    before = [c.count(name) for c in captures]

    def arrived() -> list[bool]:
        return [c.count(name) > n for c, n in zip(captures, before, strict=True)]

    sent = send_until(lambda n: emit(handler, name, level, "probe %d", n), lambda: all(arrived()), timeout)
    if sent is None:
        missing = [i for i, ok in enumerate(arrived()) if not ok]
        pytest.fail(f"probe {name!r} never reached subscriber(s) {missing} within {timeout} s")
    return sent


def settle(captures: list[BrokerCapture], quiet: float = 0.5, timeout: float = 15.0) -> None:
    """Wait (bounded) until no capture has received anything for ``quiet`` seconds."""
    wait_quiet(lambda: [c.count() for c in captures], quiet, timeout)


def is_probe(name: str) -> bool:
    """Whether ``name`` is a probe logger (``probe`` or ``*.probe``)."""
    return name == PROBE or name.endswith("." + PROBE)


def emit(handler: logging.Handler, name: str, level: int, msg: str, *args: object) -> None:
    """Hand one record of logger ``name`` to ``handler`` (no logger tree involved)."""
    handler.handle(logging.LogRecord(name, level, __file__, 1, msg, args, None))


class BrokerCapture(logging.Handler):
    """A handler that counts what a listener delivers, by logger name and service."""

    def __init__(self) -> None:
        super().__init__()
        self.names: Counter[str] = Counter()
        self.services: Counter[tuple[str, str]] = Counter()
        self.messages: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.names[record.name] += 1
            self.services[(record.__dict__.get("service", ""), record.name)] += 1
            if record.name != "logfabric.gaps":
                self.messages.append(f"{record.__dict__.get('service')}/{record.name}/{record.getMessage()}")

    def count(self, name: str | None = None) -> int:
        """Records of logger ``name``; with no name, every record except probes and gap notices."""
        with self._guard:
            if name is not None:
                return self.names[name]
            return sum(n for k, n in self.names.items() if k != "logfabric.gaps" and not is_probe(k))

    def by_service(self, service: str) -> int:
        """Non-probe records from producers of ``service``."""
        with self._guard:
            return sum(n for (svc, name), n in self.services.items() if svc == service and not is_probe(name))

    def names_seen(self) -> set[str]:
        with self._guard:
            return set(self.names)


# --------------------------------------------------------------------------- subprocesses


class ProducerProcess:
    """A producer subprocess running :data:`PRODUCER_SCRIPT`; stdout lines are read in a thread."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRODUCER_SCRIPT, json.dumps(spec)],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, prefix: str, timeout: float = 15.0) -> str:
        """Return the next stdout line starting with ``prefix`` (bounded wait)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, left))
            except queue.Empty:
                line = ""
            if line is None or (left <= 0 and not line):
                self.kill()
                _, err = self.proc.communicate(timeout=10)
                pytest.fail(f"producer never printed {prefix!r} (exit {self.proc.returncode}); stderr:\n{err}")
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait (bounded) for the producer to end well; return its report."""
        report = json.loads(self.wait_line("{", timeout))
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"producer did not exit within {timeout} s")
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        assert self.proc.returncode == 0, f"producer exited {self.proc.returncode}:\n{err}"
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def broker_tools() -> SimpleNamespace:
    """The helpers of this conftest, for test modules (which do not import conftest)."""
    return SimpleNamespace(
        PROBE=PROBE,
        BrokerCapture=BrokerCapture,
        BrokerProcess=BrokerProc,
        ProducerProcess=ProducerProcess,
        Metrics=Metrics,
        emit=emit,
        env=child_env,
        free_ports=free_ports,
        host_port=host_port,
        http_get=http_get,
        is_probe=is_probe,
        probe_until_seen=probe_until_seen,
        settle=settle,
        wait_until=broker_wait_until,
    )


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[Callable[..., BrokerProc]]:
    """Start ``python -m broker`` subprocesses (ready before returned); all killed at teardown."""
    started: list[BrokerProc] = []

    def start(*extra: str, wait: bool = True, **options: Any) -> BrokerProc:
        proc = BrokerProc(tmp_path, *extra, **options).start()
        started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def broker_producer() -> Iterator[Callable[..., ProducerProcess]]:
    """Start producer subprocesses from a spec; all killed at teardown."""
    started: list[ProducerProcess] = []

    def start(endpoint: str, plan: list[tuple[str, int, int]], **spec: Any) -> ProducerProcess:
        proc = ProducerProcess({"endpoint": endpoint, "plan": plan, **spec})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def broker_handler() -> Iterator[Callable[..., fabric.ZmqHandler]]:
    """In-process ZmqHandlers; all closed at teardown (linger at most 1 s)."""
    with handler_factory("inproc", linger=1.0, max_linger=1.0) as make:
        yield make


@pytest.fixture
def broker_listener() -> Iterator[Callable[..., tuple[fabric.ZmqListener, BrokerCapture]]]:
    """Started ZmqListeners, each with its own counting handler; all stopped at teardown."""
    with counted_listener_factory(BrokerCapture) as make:
        yield make


@pytest.fixture
def broker_zmq() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A zmq context for raw sockets; every socket closed with linger 0 at teardown."""
    with zmq_context() as ctx:
        yield ctx


@pytest.fixture
def broker_embedded() -> Iterator[Callable[..., Broker]]:
    """Started in-process Brokers on 127.0.0.1 ``*`` ports (HTTP on port 0); stopped at teardown."""
    with embedded_brokers(stop_drain=0.5, drain_timeout=2.0) as make:
        yield make


#: What each producer of :func:`broker_routed` logs: (logger, level, count).
ROUTED_LOGGERS = ("app.db", "app.db.pool", "app.dbx", "app.web")
ROUTED_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
ROUTED_PLAN = [(name, level, 25) for name in ROUTED_LOGGERS for level in ROUTED_LEVELS]


@pytest.fixture(scope="module")
def broker_routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One broker process fed by a push and a pub producer process, read by two filtered listeners.

    Listener ``warn`` has level=WARNING, listener ``db`` has loggers=["app.db"].
    Both are synchronised with probe records (logger ``app.db.probe``, ERROR)
    from an in-process push handler before the producers (services ``pusher``
    and ``publisher``) each log :data:`ROUTED_PLAN`. Everything stays connected
    until the module ends.
    """
    broker = BrokerProc(tmp_path_factory.mktemp("routed")).start()
    listeners: list[fabric.ZmqListener] = []
    probe_handler: fabric.ZmqHandler | None = None
    producers: list[ProducerProcess] = []
    try:
        broker.wait_ready()
        warn_capture, db_capture = BrokerCapture(), BrokerCapture()
        warn = fabric.ZmqListener(broker.egress, warn_capture, level="WARNING")
        db = fabric.ZmqListener(broker.egress, db_capture, loggers=["app.db"])
        for listener in (warn, db):
            listener.start()
            listeners.append(listener)
        probe_handler = fabric.ZmqHandler(broker.push_ingest, service="prober", linger=1.0)
        probes = probe_until_seen(probe_handler, [warn_capture, db_capture], name="app.db.probe")
        producers = [
            ProducerProcess({"endpoint": broker.push_ingest, "mode": "push", "service": "pusher", "plan": ROUTED_PLAN}),
            ProducerProcess(
                {"endpoint": broker.pub_ingest, "mode": "pub", "service": "publisher", "plan": ROUTED_PLAN}
            ),
        ]
        reports = [p.finish(timeout=30) for p in producers]
        # wait (bounded) for what the filters should let through, then for anything extra
        want_warn = 2 * sum(n for _, level, n in ROUTED_PLAN if level >= logging.WARNING)
        want_db = 2 * sum(n for name, _, n in ROUTED_PLAN if name == "app.db" or name.startswith("app.db."))
        broker_wait_until(lambda: warn_capture.count() >= want_warn and db_capture.count() >= want_db, timeout=15)
        settle([warn_capture, db_capture])
        yield SimpleNamespace(
            broker=broker,
            plan=ROUTED_PLAN,
            warn=warn,
            db=db,
            warn_capture=warn_capture,
            db_capture=db_capture,
            probe_handler=probe_handler,
            probes=probes,
            reports=reports,
        )
    finally:
        for listener in listeners:
            listener.stop()
        if probe_handler is not None:
            probe_handler.close()
        for p in producers:
            p.kill()
        broker.kill()
