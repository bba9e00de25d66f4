"""Liveness: a frozen broker (SIGSTOP) is noticed within seconds, and everything resumes after SIGCONT.

The producer process reports its own socket's connection events (a socket
monitor on the handler's socket); a ``subscribe()`` iterator's socket is
monitored the same way in the test process.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

import fabric

pytestmark = pytest.mark.timeout(120)

Factory = Callable[..., Any]


def wait_event(monitor: zmq.Socket[bytes], kind: int, timeout: float) -> float | None:
    """Wall-clock time of the next monitor event ``kind`` within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if monitor.poll(int(left * 1000) + 1) and int(recv_monitor_message(monitor)["event"]) == kind:
            return time.time()
    return None


@pytest.mark.slow
def test_frozen_broker_is_noticed_within_seconds_and_traffic_resumes(
    rel_broker: Factory,
    rel_listener: Factory,
    rel_handler: Factory,
    rel_producer: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """SIGSTOP the broker: the producer drops the connection within 5 s, never blocks, and resumes after SIGCONT."""
    total, rate = 8000, 500.0
    broker = rel_broker()
    listener, ledger = rel_listener(broker.egress)
    sub = fabric.subscribe(broker.egress, loggers=["rel.load"])
    assert sub._sock is not None
    monitor = sub._sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        rel.probe(rel_handler(broker.push_ingest), [ledger])
        producer = rel_producer(broker.push_ingest, total, "--rate", rate, "--monitor", "--progress", 250)
        producer.next_event("progress", n=500)

        stopped = time.time()
        broker.signal(signal.SIGSTOP)
        noticed = producer.next_event("monitor", kind="disconnected", timeout=15)["t"] - stopped
        sub_noticed_at = wait_event(monitor, zmq.EVENT_DISCONNECTED, max(0.1, stopped + 5 - time.time()))
        frozen_for = time.time() - stopped
        continued = time.time()
        broker.signal(signal.SIGCONT)
        back = producer.next_event("monitor", kind="handshake", timeout=15)["t"] - continued
        sub_back_at = None if sub_noticed_at is None else wait_event(monitor, zmq.EVENT_HANDSHAKE_SUCCEEDED, 15)
        report = producer.finish(timeout=60)
    finally:
        monitor.close(linger=0)
        sub.close()
    pid = report["producer_id"]
    rel.wait_until(lambda: ledger.max_seq.get(pid) == total, timeout=20)
    rel.settle([ledger], quiet=0.3)
    delivered, gaps = ledger.of(pid)
    sub_noticed = None if sub_noticed_at is None else sub_noticed_at - stopped
    sub_back = None if sub_back_at is None else sub_back_at - continued

    if sub_noticed is None:
        sub_text = "subscriber kept its connection open (no disconnect within 5 s)"
    else:
        sub_text = f"subscriber noticed after {sub_noticed:.2f} s, back after {sub_back} s"
    rel_figure(
        f"broker frozen {frozen_for:.1f} s: producer noticed after {noticed:.2f} s, reconnected {back:.2f} s after "
        f"SIGCONT; {sub_text}; "
        f"longest logging call {report['longest_pause'] * 1000:.0f} ms; sent {total}, delivered {delivered}, "
        f"reported lost {gaps} ({ledger.late(pid)} of them arrived late), silently lost {ledger.silent(pid, total)}"
    )
    assert noticed <= 5.0, f"the producer took {noticed:.2f} s to notice the frozen broker"
    assert back <= 3.0, f"the producer took {back:.2f} s to reconnect after SIGCONT"
    assert report["longest_pause"] < 0.5, f"a logging call blocked {report['longest_pause']:.2f} s"
    assert report["stats"]["dropped"] == 0 and report["stats"]["errors"] == 0, report
    assert ledger.silent(pid, total) == 0, f"silent loss: {listener.stats}"
    assert delivered + gaps - ledger.late(pid) == total
    assert ledger.max_seq[pid] == total


@pytest.mark.slow
def test_a_subscriber_whose_handler_stalls_survives_and_counts_its_loss(
    rel_tcp_endpoint: str,
    rel_producer: Factory,
    rel_handler: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """A connecting subscriber stalled 6 s under a flood lives on (libzmq#3937 aborted it) and reports its loss."""
    handler = rel_handler(rel_tcp_endpoint, mode="pub", bind=True, service="flood")
    subscriber = rel_producer(rel_tcp_endpoint, 6, script="stalled_subscriber.py")
    subscriber.next_event("ready")
    assert handler.wait_ready(10), "the subscriber never subscribed"
    log = logging.getLogger("rel.load")
    log.propagate, log.level = False, logging.DEBUG
    log.addHandler(handler)
    try:
        log.info("first")
        subscriber.next_event("stalling", timeout=10)
        began = time.monotonic()
        sent = 1
        while time.monotonic() - began < 8.0:  # flood through the stall and past the heartbeat timeout
            for _ in range(1000):
                log.info("flood %d", sent)
                sent += 1
            time.sleep(0.01)
        time.sleep(0.5)
        log.info("last")
        sent += 1
        report = subscriber.finish(timeout=60)
    finally:
        log.removeHandler(handler)
    stats = report["stats"]
    rel_figure(
        f"subscriber stalled 6 s while {sent} records were logged: it lived (exit {subscriber.proc.returncode}), "
        f"handled {report['handled']}, reported lost {stats['gaps']}, producer dropped {handler.stats['dropped']}"
    )
    assert subscriber.proc.returncode == 0
    assert stats["gaps"] > 0, "the subscriber was never overrun: the stall did not fill its queue"
    assert stats["received"] + stats["gaps"] == sent, f"silent loss: {stats}, sent {sent}"
    assert stats["errors"] == 0
