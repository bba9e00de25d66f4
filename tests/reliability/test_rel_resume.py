"""Gapless resume: a broker process SIGKILLed and restarted on the same --store DIR while a producer logs.

A listener with history fetches, on each reconnect, what it missed from the
restarted broker's store: every record the store holds reaches it exactly
once, and only records the store never got are reported as gaps (the notices
add up to exactly those).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import fabric
from tests.helpers.broker import BrokerProc
from tests.helpers.capture import Capture
from tests.helpers.net import free_ports
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(240)

RESTARTS = 3


@pytest.fixture
def stored_broker(tmp_path: Path) -> Iterator[tuple[BrokerProc, str]]:
    """A broker process with a store and a history endpoint on fixed ports (restartable); killed at the end."""
    (port,) = free_ports(1)
    history = f"tcp://127.0.0.1:{port}"
    proc = BrokerProc(tmp_path, "--store", str(tmp_path / "store"), "--history", history)
    try:
        yield proc.start().wait_ready(), history
    finally:
        proc.kill()


class Producer:
    """Logs numbered records from a thread at a steady pace until stopped, then a sentinel."""

    def __init__(self, endpoint: str) -> None:
        self.handler = fabric.ZmqHandler(endpoint, service="resume", buffer_bytes=256 * 1024 * 1024, hwm=1_000_000)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in range(20):
                self._log(f"r {self.sent}")
                self.sent += 1
            time.sleep(0.004)

    def _log(self, text: str) -> None:
        self.handler.handle(logging.makeLogRecord({"name": "app", "levelno": 20, "levelname": "INFO", "msg": text}))

    def start(self) -> Producer:
        self._thread.start()
        return self

    def finish(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._log("sentinel")
        self.handler.flush()


def history_of(egress: str, history: str) -> list[str]:
    """Every message the store holds now (a query that does not follow)."""
    with fabric.subscribe(egress, history=history, since="1h", follow=False, timeout=30) as records:
        return [r.getMessage() for r in records if not isinstance(r, fabric.GapNotice)]


def test_resume_after_sigkill_restarts_reports_only_what_the_store_lost(
    stored_broker: tuple[BrokerProc, str], rel_figure: Callable[[str], None]
) -> None:
    """Three SIGKILL restarts on the same store under a producer: nothing stored is missed or shown twice."""
    broker, history = stored_broker
    capture = Capture()
    producer = Producer(broker.push_ingest)
    listener = fabric.ZmqListener(broker.egress, capture, history=history)
    listener.start()
    try:
        producer.start()
        assert poll_until(lambda: len(capture.records) > 500, timeout=20)
        for _ in range(RESTARTS):
            broker.signal(signal.SIGKILL)
            broker.wait(10)
            time.sleep(0.3)  # the producer keeps logging into its outage buffer meanwhile
            broker.start().wait_ready()
            seen = len(capture.records)
            assert poll_until(lambda n=seen: len(capture.records) > n + 500, timeout=30)
        producer.finish()
        assert poll_until(lambda: any(r.getMessage() == "sentinel" for r in capture.records[-50:]), timeout=60), (
            "the sentinel never arrived"
        )
    finally:
        listener.stop()
        producer.handler.close()
    notices = [r for r in capture.records if isinstance(r, fabric.GapNotice)]
    delivered = [r.getMessage() for r in capture.records if not isinstance(r, fabric.GapNotice)]
    twice = [m for m, c in Counter(delivered).items() if c > 1]
    assert not twice, f"shown twice: {twice[:5]}"
    in_store = set(history_of(broker.egress, history))
    missing = in_store - set(delivered)
    assert not missing, f"{len(missing)} stored record(s) never delivered, e.g. {sorted(missing)[:5]}"
    lost = producer.sent + 1 - len(delivered)
    reported = sum(n.__dict__["lost"] for n in notices)
    assert reported == lost, (reported, lost)
    rel_figure(
        f"{RESTARTS} SIGKILL restarts, {producer.sent} records sent, {len(delivered)} delivered once, "
        f"{len(in_store)} in the store all delivered, {listener.stats['duplicates']} duplicates dropped, "
        f"{reported} reported lost (never stored)"
    )
