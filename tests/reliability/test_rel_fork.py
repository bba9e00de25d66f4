"""Scenario 3: forked producers deliver everything and never send on a socket they inherited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

Factory = Callable[..., Any]


def children_of(producer: Any) -> list[dict[str, Any]]:
    return [e for e in producer.seen if e.get("event") == "child"]


def test_8_multiprocessing_fork_children_ending_in_os_exit_deliver_8000_of_8000(
    rel_tcp_endpoint: str,
    rel_listener: Factory,
    rel_producer: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """8 'fork' children log 1,000 records each, close() and os._exit(0): 8,000 of 8,000 arrive, each from its child."""
    per_child, workers = 1000, 8
    listener, ledger = rel_listener(rel_tcp_endpoint, mode="pull", bind=True)
    producer = rel_producer(rel_tcp_endpoint, per_child, "--style", "mp", "--workers", workers, script="forking.py")
    report = producer.finish(timeout=90)
    children = children_of(producer)
    assert len(children) == workers, children
    ids = {c["producer_id"] for c in children}
    want = per_child * workers
    rel.wait_until(lambda: sum(ledger.of(i)[0] for i in ids) >= want, timeout=20)
    rel.settle([ledger], quiet=0.2)
    got = sum(ledger.of(i)[0] for i in ids)

    rel_figure(f"mp fork x{workers}, os._exit after close(): {got}/{want} delivered, gaps {listener.stats['gaps']}")
    assert got == want, f"lost {want - got}: {listener.stats}"
    assert len(ids) == workers and report["producer_id"] not in ids, "children must not reuse a producer id"
    for child in children:
        pid = child["producer_id"]
        assert ledger.pids[pid] == {child["pid"]}, f"records of {pid} carry pids {ledger.pids[pid]}"
        assert ledger.seqs[pid] == set(range(1, per_child + 1))
        assert child["sent"] + child["queued"] == per_child
        assert not child["own_socket_is_inherited"] and child["inherited_set_aside"], child
    assert ledger.of(report["producer_id"]) == (2, 0)  # the parent: before and after, nothing else
    assert report["stats"]["sent"] + report["stats"]["queued"] == 2 and report["parent_socket_unchanged"], report
    assert listener.stats["gaps"] == 0 and ledger.duplicates == 0


def test_preloaded_parent_and_4_forked_workers_lose_nothing_and_never_share_a_socket(
    rel_tcp_endpoint: str,
    rel_listener: Factory,
    rel_producer: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """gunicorn-style preload: the parent logs, forks 4 workers that log 2,000 each, logs again; 0 lost, 0 shared."""
    per_worker, workers, parent = 2000, 4, 100
    listener, ledger = rel_listener(rel_tcp_endpoint, mode="pull", bind=True)
    options = ("--style", "preload", "--workers", workers, "--parent", parent)
    producer = rel_producer(rel_tcp_endpoint, per_worker, *options, script="forking.py")
    report = producer.finish(timeout=90)
    children = children_of(producer)
    assert len(children) == workers, children
    ids = {c["producer_id"] for c in children}
    want = per_worker * workers + 2 * parent
    rel.wait_until(lambda: ledger.count("rel.fork") >= want, timeout=20)
    rel.settle([ledger], quiet=0.2)
    got = ledger.count("rel.fork")

    shared = [c for c in children if c["own_socket_is_inherited"] or not c["inherited_set_aside"]]
    distinct = len(ids | {report["producer_id"]})
    rel_figure(
        f"preload parent + {workers} forked workers: {got}/{want} delivered, lost {want - got}, "
        f"workers that sent on the inherited socket: {len(shared)}, distinct producer ids {distinct}"
    )
    assert got == want, f"lost {want - got}: {listener.stats}"
    assert shared == [], shared
    # every worker record carries that worker's own pid and a producer id of its own
    assert len(ids) == workers and report["producer_id"] not in ids
    for child in children:
        pid = child["producer_id"]
        assert ledger.pids[pid] == {child["pid"]} and child["pid"] != report["pid"]
        assert ledger.seqs[pid] == set(range(1, per_worker + 1))
    # the parent's own series is whole: nothing of it was sent from a child
    assert ledger.pids[report["producer_id"]] == {report["pid"]}
    assert ledger.seqs[report["producer_id"]] == set(range(1, 2 * parent + 1))
    sent = report["stats"]["sent"] + report["stats"]["queued"]
    assert sent == 2 * parent and report["parent_socket_unchanged"], report
    assert listener.stats["gaps"] == 0 and ledger.duplicates == 0
