"""Scenario 1: a 10,000-record burst on the healthy path loses nothing, push and pub, through a broker process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

Factory = Callable[..., Any]
TOTAL = 10_000


@pytest.mark.parametrize("mode", ["push", "pub"])
def test_burst_of_10000_through_the_broker_loses_nothing(
    mode: str,
    rel_broker: Factory,
    rel_listener: Factory,
    rel_handler: Factory,
    rel_producer: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """A producer process logs 10,000 records as fast as it can: the subscriber gets 10,000, no gap, no drop."""
    broker = rel_broker()
    listener, ledger = rel_listener(broker.egress)
    rel.probe(rel_handler(broker.push_ingest), [ledger])
    ingest = broker.push_ingest if mode == "push" else broker.pub_ingest
    options: list[object] = ["--mode", mode, "--service", f"burst-{mode}", "--end", "exit"]
    if mode == "pub":
        options += ["--wait-ready", 10, "--settle", 0.3]
    producer = rel_producer(ingest, TOTAL, *options)
    start = producer.next_event("start")
    began = time.monotonic()
    report = producer.finish(timeout=60)
    pid = start["producer_id"]
    rel.wait_until(lambda: ledger.of(pid)[0] >= TOTAL, timeout=30)
    took = time.monotonic() - began
    rel.settle([ledger], quiet=0.3)

    delivered, gaps = ledger.of(pid)
    rel_figure(
        f"{mode} via broker: {delivered}/{TOTAL} delivered, lost {TOTAL - delivered}, gaps {gaps}, "
        f"producer dropped {report['stats']['dropped']}, burst logged in {report['log_seconds']:.2f} s, "
        f"all delivered {took:.2f} s after the first record"
    )
    stats = dict(report["stats"])
    stats["sent"] += stats.pop("queued")  # reported before exit: the sender thread may not have sent all yet
    assert stats == {
        "sent": TOTAL,
        "dropped": 0,
        "oversize": 0,
        "errors": 0,
        "upstream_discarded": 0,
        "subscriptions_reset": 0,
        "received_not_sent": 0,
    }, report
    assert delivered == TOTAL, f"lost {TOTAL - delivered}; listener {listener.stats}"
    assert gaps == 0 and listener.stats["gaps"] == 0, listener.stats
    assert ledger.duplicates == 0
    assert ledger.seqs[pid] == set(range(1, TOTAL + 1))
    assert listener.stats["malformed"] == 0 and listener.stats["errors"] == 0, listener.stats
