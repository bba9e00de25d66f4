"""Fixtures for the broker tests: real broker processes, real producers, real ZeroMQ sockets.

Everything here talks over 127.0.0.1 only (the broker's defaults bind
``tcp://*``, so every broker gets explicit endpoints), every wait is bounded,
every socket is closed with linger 0 and every subprocess is killed at teardown.
The helpers behind them are in ``tests/helpers`` (brokers in ``broker.py``,
captures, probes and sentinels in ``capture.py``, child processes in
``processes.py``).
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import fabric
from broker import Broker
from tests.helpers import factories, processes
from tests.helpers.broker import BrokerProc, RoutedBroker, embedded_brokers
from tests.helpers.capture import Capture, probe_until_seen
from tests.helpers.processes import ProducerRunner, plan_options
from tests.helpers.waiting import poll_until


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., BrokerProc]]:
    """``start_broker(*flags, wait=True, **options)``: a ready ``python -m broker`` process; killed at teardown."""
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
def capturing_listener() -> Iterator[Callable[..., tuple[fabric.ZmqListener, Capture]]]:
    """``capturing_listener(endpoints, **options)``: a started ZmqListener and the Capture it feeds; all stopped."""
    with factories.counted_listener_factory(Capture) as make:
        yield make


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A zmq context for raw sockets; every socket closed with linger 0 at teardown."""
    with factories.zmq_context() as ctx:
        yield ctx


@pytest.fixture
def start_embedded_broker() -> Iterator[Callable[..., Broker]]:
    """``start_embedded_broker(**options)``: a started in-process Broker on 127.0.0.1 ``*`` ports (HTTP on port 0)."""
    with embedded_brokers(stop_drain=0.5, drain_timeout=2.0) as make:
        yield make


@pytest.fixture
def start_attacker() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``start_attacker(endpoint, count=450, size=4000, keys=())``: a hostile subscriber process; killed at teardown.

    See ``tests/helpers/attacker.py``: it has queued every subscription when
    returned, and libzmq reconnects it (and it subscribes again) until killed.
    """
    started: list[subprocess.Popen[str]] = []

    def start(endpoint: str, count: int = 450, size: int = 4000, keys: tuple[Path, ...] = ()) -> subprocess.Popen[str]:
        proc = processes.start_attacker(endpoint, count, size, keys)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        processes.stop(proc)


#: What each producer of :func:`routed_broker` logs: (logger, level, count).
ROUTED_LOGGERS = ("app.db", "app.db.pool", "app.dbx", "app.web")
ROUTED_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
ROUTED_PLAN = [(name, level, 25) for name in ROUTED_LOGGERS for level in ROUTED_LEVELS]
#: The probe and sentinel logger of :func:`routed_broker`: at ERROR both listeners take it.
ROUTED_PROBE = "app.db.probe"


@pytest.fixture(scope="module")
def routed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoutedBroker]:
    """One broker process fed by a push and a pub producer process, read by two filtered listeners.

    Listener ``warn`` has level=WARNING, listener ``db`` has loggers=["app.db"].
    Both are synchronised with probe records (logger ``app.db.probe``, ERROR)
    from an in-process push handler before the producers (services ``pusher``
    and ``publisher``) each log :data:`ROUTED_PLAN`, then one sentinel record
    on the probe logger. The pub producer first sends probes on that logger
    until both listeners have one, so its records find them subscribed.
    Everything stays connected until the module ends.
    """
    workdir = tmp_path_factory.mktemp("routed")
    broker = BrokerProc(workdir).start()
    listeners: list[fabric.ZmqListener] = []
    probe_handler: fabric.ZmqHandler | None = None
    producers = ProducerRunner()
    try:
        broker.wait_ready()
        warn_capture, db_capture = Capture(), Capture()
        captures = [warn_capture, db_capture]
        warn = fabric.ZmqListener(broker.egress, warn_capture, level="WARNING")
        db = fabric.ZmqListener(broker.egress, db_capture, loggers=["app.db"])
        for listener in (warn, db):
            listener.start()
            listeners.append(listener)
        probe_handler = fabric.ZmqHandler(broker.push_ingest, service="prober", linger=1.0)
        probes = probe_until_seen(probe_handler, captures, name=ROUTED_PROBE)
        go = workdir / "go"
        common = [*plan_options(ROUTED_PLAN), "--sentinel", ROUTED_PROBE, "--linger", "5", "--end", "close"]
        pub = ["--mode", "pub", "--wait-ready", "10", "--probe", ROUTED_PROBE, "--go-file", str(go)]
        procs = {
            "publisher": producers.start(broker.pub_ingest, 0, "--service", "publisher", *pub, *common),
            "pusher": producers.start(broker.push_ingest, 0, "--service", "pusher", *common),
        }

        def heard(service: str) -> set[str]:
            """The messages of ``service`` on the probe logger that both listeners have."""
            return set.intersection(*({r.getMessage() for r in c.of(service, ROUTED_PROBE)} for c in captures))

        # The publisher probes until both listeners have one of its probes: then they are subscribed.
        if not poll_until(lambda: heard("publisher"), timeout=15):
            pytest.fail(f"no probe of the pub producer reached both listeners within 15 s:\n{broker.stderr()}")
        go.touch()
        reports = {service: json.loads(producers.finish(proc, timeout=30)) for service, proc in procs.items()}
        # Each producer's sentinel follows its plan: once both listeners have both, nothing more is on its way.
        if not poll_until(lambda: all("sentinel" in heard(service) for service in procs), timeout=15):
            pytest.fail("the producers' sentinels did not both reach both listeners within 15 s")
        sync = {service: warn_capture.by_service(service, ROUTED_PROBE) for service in procs}
        assert sync == {service: db_capture.by_service(service, ROUTED_PROBE) for service in procs}
        yield RoutedBroker(
            broker=broker,
            plan=ROUTED_PLAN,
            warn=warn,
            db=db,
            warn_capture=warn_capture,
            db_capture=db_capture,
            probe_handler=probe_handler,
            probes=probes,
            reports=reports,
            sync=sync,
        )
    finally:
        for listener in listeners:
            listener.stop()
        if probe_handler is not None:
            probe_handler.close()
        producers.reap()
        broker.kill()
