"""The record store in a real broker process: records land, survive SIGKILL, retention holds, a full disk degrades.

Every broker is ``python -m broker --store DIR`` on 127.0.0.1; records come from
real producers (a producer process, or a ZmqHandler here); the store is read
back with :class:`broker._store.Store` once the broker is gone (it holds the
directory while it runs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import fabric
from broker._store import RecordFilter, Store
from tests.helpers.broker import BrokerProc
from tests.helpers.net import ROOT, child_env
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

APPENDS = "logfabric_broker_store_appends_total"


def metric(broker: BrokerProc, name: str, **labels: str) -> float:
    return broker.metrics().get(name, **labels) or 0.0


def killed(broker: BrokerProc) -> None:
    """SIGKILL the broker and wait (bounded) until it is gone."""
    broker.signal(signal.SIGKILL)
    assert broker.wait(10) == -signal.SIGKILL


def read_store(where: Path, **query: Any) -> list[Any]:
    store = Store(where)
    store.open()
    try:
        return store.read(**query)
    finally:
        store.close()


#: A producer process: ``python -c PRODUCER SPEC_JSON`` logs its plan through a push ZmqHandler, then closes it.
PRODUCER = r"""
import json, logging, sys
import fabric

spec = json.loads(sys.argv[1])
handler = fabric.ZmqHandler(spec["endpoint"], service=spec["service"], linger=10.0)
pad = "x" * spec.get("pad", 0)
for name, level, count in spec["plan"]:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(1)
    log.addHandler(handler)
    for i in range(count):
        log.log(level, "record %d%s", i, pad)
handler.close()
print(json.dumps(handler.stats), flush=True)
"""


def produce(endpoint: str, plan: list[tuple[str, int, int]], service: str = "producer", pad: int = 0) -> None:
    """Run a producer process to its end (bounded); fail if it did not send everything."""
    spec = {"endpoint": endpoint, "plan": plan, "service": service, "pad": pad}
    done = subprocess.run(
        [sys.executable, "-c", PRODUCER, json.dumps(spec)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] == sum(n for _, _, n in plan), done.stdout


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Callable[..., BrokerProc]]:
    """Start ``python -m broker`` processes (ready when returned); all killed at teardown."""
    started: list[BrokerProc] = []

    def start(*extra: str) -> BrokerProc:
        proc = BrokerProc(tmp_path, *extra)
        started.append(proc)
        return proc.start().wait_ready()

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def zmq_ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A context whose sockets are all closed with linger 0 at teardown."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def push() -> Iterator[Callable[[str, str], logging.Logger]]:
    """In-process push producers: ``push(endpoint, logger_name)`` gives a logger feeding one; closed at teardown."""
    handlers: list[fabric.ZmqHandler] = []

    def make(endpoint: str, name: str) -> logging.Logger:
        handler = fabric.ZmqHandler(endpoint, service="tester", linger=1.0)
        handlers.append(handler)
        log = logging.getLogger(f"{name}.{uuid.uuid4().hex[:8]}")
        log.propagate = False
        log.setLevel(logging.DEBUG)
        log.addHandler(handler)
        return log

    yield make
    for handler in handlers:
        handler.close()


def test_records_from_a_producer_land_and_survive_sigkill(tmp_path: Path, brokers: Callable[..., BrokerProc]) -> None:
    """A producer process's records are all in the store, in wire form; SIGKILL and restart keep every one."""
    where = tmp_path / "store"
    broker = brokers("--store", str(where))
    produce(broker.push_ingest, [("app.db", logging.INFO, 3000), ("app.web", logging.ERROR, 2000)], "shop")
    assert wait_until(lambda: metric(broker, APPENDS) >= 5000, 20, 0.1), broker.stderr()
    killed(broker)
    stored = read_store(where)
    assert len(stored) == 5000 and [r.position for r in stored] == list(range(5000))
    web = read_store(where, which=RecordFilter(loggers=("app.web",), level=logging.ERROR))
    assert len(web) == 2000
    newest = fabric.decode(web[-1].payload).record
    assert (newest.getMessage(), newest.name, newest.__dict__["service"]) == ("record 1999", "app.web", "shop")

    broker.start().wait_ready()
    assert wait_until(lambda: metric(broker, "logfabric_broker_store_records") == 5000, 10, 0.1)
    assert metric(broker, "logfabric_broker_store_errors_total", kind="torn") == 0
    status, body = broker.get("/readyz")
    assert status == 200 and "store: ok, 5000 records" in body


def test_sigkill_in_a_flood_keeps_what_was_written_and_cuts_a_torn_tail(
    tmp_path: Path, brokers: Callable[..., BrokerProc], push: Callable[[str, str], logging.Logger]
) -> None:
    """Killed mid-flood: every record on disk reads back; a torn last record is cut, counted and logged."""
    where = tmp_path / "store"
    broker = brokers("--store", str(where))
    log = push(broker.push_ingest, "flood")
    for i in range(20_000):
        log.info("flood %d", i)
        if i == 10_000:
            assert wait_until(lambda: metric(broker, APPENDS) > 0, 10, 0.05)
    killed(broker)
    stored = read_store(where)
    assert stored, "nothing was stored before the kill"
    assert [r.position for r in stored] == list(range(len(stored)))
    assert [fabric.decode(r.payload).record.getMessage() for r in stored] == [f"flood {i}" for i in range(len(stored))]
    newest = sorted(where.glob("*.seg"))[-1]
    with newest.open("ab") as f:
        f.write(b"\x00\x10\x00\x00torn")  # the start of a record the kill cut short

    broker.start().wait_ready()
    assert wait_until(lambda: metric(broker, "logfabric_broker_store_errors_total", kind="torn") == 1, 10, 0.1)
    # At least what was stored: the producer delivers what it still held to the new broker, after these.
    assert metric(broker, "logfabric_broker_store_records") >= len(stored)
    assert "torn record" in broker.stderr()


def test_retention_deletes_the_oldest(tmp_path: Path, brokers: Callable[..., BrokerProc]) -> None:
    """4 MB into a 1 MiB store: it holds at most 1 MiB, the newest records, and counts what retention deleted."""
    where = tmp_path / "store"
    broker = brokers("--store", str(where), "--retention-bytes", str(1024 * 1024))
    produce(broker.push_ingest, [("app.big", logging.INFO, 2000)], pad=2000)
    assert wait_until(lambda: metric(broker, APPENDS) >= 2000, 20, 0.1), broker.stderr()
    m = broker.metrics()
    assert (m.get("logfabric_broker_store_deleted_records_total", reason="bytes") or 0) > 0
    assert (m.get("logfabric_broker_store_bytes") or 0) <= 1024 * 1024
    killed(broker)
    stored = read_store(where)
    assert stored[-1].position == 1999 and stored[0].position > 0
    assert fabric.decode(stored[-1].payload).record.getMessage().startswith("record 1999")
    assert sum(p.stat().st_size for p in where.glob("*.seg")) <= 1024 * 1024


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test (needs root and mount; skipped otherwise)."""
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_degrades_the_store_not_forwarding(
    tiny_fs: Path,
    brokers: Callable[..., BrokerProc],
    zmq_ctx: zmq.Context[zmq.Socket[bytes]],
    push: Callable[[str, str], logging.Logger],
) -> None:
    """A full filesystem: live subscribers get every record, /readyz and /metrics say degraded; then it recovers."""
    broker = brokers("--store", str(tiny_fs / "store"))
    sub = zmq_ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(broker.egress)
    log = push(broker.push_ingest, "live")

    def arrived(n: int) -> int:
        got = 0
        while got < n and sub.poll(5000):
            sub.recv()
            got += 1
        return got

    assert wait_until(lambda: (log.info("probe"), sub.poll(100))[1], 10, 0.05)
    while sub.poll(300):
        sub.recv()
    filler = tiny_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\xff" * 4096)
    os.close(fd)
    for i in range(3000):
        log.info("while full %d %s", i, "x" * 200)
    assert arrived(3000) == 3000, "live forwarding lost records while the store's disk was full"
    assert wait_until(lambda: metric(broker, "logfabric_broker_store_up") == 0, 10, 0.1), broker.stderr()
    status, body = broker.get("/readyz")
    assert status == 200 and "store: degraded" in body and "No space left" in body
    assert metric(broker, "logfabric_broker_store_missed_records_total", reason="unwritable") > 0
    assert "No space left on device" in broker.stderr()

    filler.unlink()
    assert wait_until(lambda: (log.info("again"), metric(broker, "logfabric_broker_store_up") == 1)[1], 15, 0.2)
    assert "store: ok" in broker.get("/readyz")[1]
    killed(broker)
    assert read_store(tiny_fs / "store", last=1)[0].payload.find(b"again") > 0
