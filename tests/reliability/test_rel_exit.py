"""Scenarios 2 and 4: what a producer process does at exit, with the collector up and with it down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

Factory = Callable[..., Any]
TOTAL = 10_000


@pytest.mark.parametrize("mode", ["push", "pub"])
def test_sys_exit_right_after_10000_records_delivers_all_within_2_s(
    mode: str,
    rel_tcp_endpoint: str,
    rel_listener: Factory,
    rel_producer: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """sys.exit(0) right after logging 10,000 records: all 10,000 arrive and the process is gone within 2 s."""
    listener, ledger = rel_listener(rel_tcp_endpoint, mode="pull" if mode == "push" else "sub", bind=True)
    options: list[object] = ["--mode", mode, "--service", f"exit-{mode}", "--end", "exit"]
    if mode == "pub":
        options += ["--wait-ready", 10]
    producer = rel_producer(rel_tcp_endpoint, TOTAL, *options)
    report = producer.finish(timeout=30)
    exit_seconds = producer.exited_at - report["t_end"]
    pid = report["producer_id"]
    rel.wait_until(lambda: ledger.of(pid)[0] >= TOTAL, timeout=15)
    rel.settle([ledger], quiet=0.2)
    delivered, gaps = ledger.of(pid)

    rel_figure(
        f"{mode}, sys.exit after {TOTAL} records: {delivered}/{TOTAL} delivered, lost {TOTAL - delivered}, "
        f"exit took {exit_seconds:.2f} s after the last record"
    )
    assert delivered == TOTAL, f"lost {TOTAL - delivered}: {listener.stats}, producer {report['stats']}"
    assert gaps == 0 and ledger.duplicates == 0
    assert report["stats"]["dropped"] == 0, report
    assert exit_seconds <= 2.0, f"exit took {exit_seconds:.2f} s"


@pytest.mark.parametrize("mode", ["push", "pub"])
def test_collector_down_at_exit_costs_at_most_linger_plus_10_percent(
    mode: str,
    rel_tcp_endpoint: str,
    rel_producer: Factory,
    rel_figure: Callable[[str], None],
) -> None:
    """Nothing listens: 1,000 records are logged and sys.exit(0) returns within linger (3 s) + 10 %."""
    linger = 3.0
    producer = rel_producer(
        rel_tcp_endpoint, 1000, "--mode", mode, "--linger", linger, "--service", f"down-{mode}", "--end", "exit"
    )
    report = producer.finish(timeout=30)
    exit_seconds = producer.exited_at - report["t_end"]
    rel_figure(
        f"{mode}, collector down, linger {linger:g} s: exit took {exit_seconds:.2f} s after the last record "
        f"(bound {linger * 1.1:.2f} s); producer stats {report['stats']}"
    )
    assert exit_seconds <= linger * 1.1, f"exit took {exit_seconds:.2f} s with linger {linger} s"
    # the records were queued (push) or held for a subscriber (pub), not refused while logging
    assert report["stats"]["dropped"] == 0 and report["stats"]["errors"] == 0, report
    assert report["longest_pause"] < 0.5, f"a logging call blocked {report['longest_pause']:.2f} s"
