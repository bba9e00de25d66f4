"""Fixtures for the framework tests: a broker subprocess, a subscriber that keeps every record, app processes.

Each test runs a real framework (gunicorn, uvicorn, Django, Celery, structlog,
loguru, multiprocessing) as its own subprocess, configured the way
docs/frameworks.md shows, and counts what arrives through a real broker
(``python -m broker``) at a ``ZmqListener`` subscribed to its egress. The
listener's subscription is known to have reached the broker before a test
starts its app: probe records are sent until one comes back.

Every wait is bounded, every app runs in its own process group and is killed
with it at teardown, and all traffic stays on 127.0.0.1. The helpers behind
them are in ``fwkit.py``; what the apps sent has all arrived once a sentinel
sent after them has (``Fabric.settle``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import fabric
from tests.frameworks.fwkit import APPS, PROBE_SERVICE, App, Fabric, start_broker
from tests.helpers.capture import Capture, emit
from tests.helpers.waiting import send_until


@pytest.fixture
def fw_fabric(tmp_path: Path) -> Iterator[Fabric]:
    """A broker and a subscribed, probed listener that keeps everything; all stopped at teardown."""
    broker = start_broker(tmp_path)
    collector = Capture()
    listener = fabric.ZmqListener(broker.egress, collector, mode="sub")
    probe = fabric.ZmqHandler(broker.push_ingest, service=PROBE_SERVICE, linger=0.5)
    try:
        listener.start()

        def send(n: int) -> None:
            emit(probe, "fw.probe", "probe %d", n, level=logging.INFO)

        if send_until(send, lambda: collector.of(PROBE_SERVICE), timeout=10.0) is None:
            pytest.fail(f"no probe came back through the broker within 10 s:\n{broker.stderr()}")
        yield Fabric(broker, listener, collector, probe)
    finally:
        probe.close()
        listener.stop()
        broker.kill()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Start app subprocesses (``start(argv, env=..., cwd=APPS)``); every process group is killed at teardown."""
    started: list[App] = []

    def start(argv: list[str], *, env: dict[str, str], cwd: Path = APPS) -> App:
        app = App(argv, cwd=cwd, env=env, log=tmp_path / f"app-{len(started)}.log")
        started.append(app)
        return app

    yield start
    for app in started:
        app.kill()
