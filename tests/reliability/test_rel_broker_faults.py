"""Scenarios 5, 6, 7, 8 and 11: a broker process that is killed, drained, overrun, fed oversize or idle peers.

Every figure is the subscriber's own ledger: records delivered and records
reported lost (gap notices on ``logfabric.gaps``) per producer.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq

pytestmark = pytest.mark.timeout(150)

Factory = Callable[..., Any]


# --------------------------------------------------------------------------- 5: SIGKILL and restart


@pytest.mark.slow
def test_broker_sigkill_and_restart_mid_stream_loses_nothing_silently(
    rel_broker: Factory,
    rel_listener: Factory,
    rel_handler: Factory,
    rel_producer: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """SIGKILL mid-stream, restart on the same ports: producers run on, every record delivered or reported lost."""
    total, rate = 12_000, 2000.0
    broker = rel_broker()
    listener, ledger = rel_listener(broker.egress)
    rel.probe(rel_handler(broker.push_ingest), [ledger])
    push = rel_producer(broker.push_ingest, total, "--rate", rate, "--progress", 1000, "--service", "kill-push")
    pub = rel_producer(
        broker.pub_ingest, total, "--mode", "pub", "--wait-ready", 10, "--rate", rate, "--progress", 1000,
        "--service", "kill-pub",
    )  # fmt: skip
    for p in (push, pub):
        p.next_event("progress", n=2000)
    broker.kill()
    killed = time.monotonic()
    time.sleep(1.0)
    broker.start().wait_ready()
    down = time.monotonic() - killed
    reports = [p.finish(timeout=60) for p in (push, pub)]
    ids = [r["producer_id"] for r in reports]
    rel.wait_until(lambda: all(ledger.max_seq.get(i) == total for i in ids), timeout=20)
    rel.settle([ledger], quiet=0.5)

    for mode, report in zip(("push", "pub"), reports, strict=True):
        pid = report["producer_id"]
        delivered, gaps = ledger.of(pid)
        rel_figure(
            f"{mode}: broker down {down:.1f} s: sent {total}, delivered {delivered}, reported lost {gaps} "
            f"({ledger.late(pid)} of them arrived late), silently lost {ledger.silent(pid, total)}; "
            f"longest logging call {report['longest_pause'] * 1000:.0f} ms, producer stats {report['stats']}"
        )
    for report in reports:
        pid = report["producer_id"]
        delivered, gaps = ledger.of(pid)
        assert ledger.silent(pid, total) == 0, f"silent loss: {delivered} + {gaps} != {total}; {listener.stats}"
        assert delivered + gaps - ledger.late(pid) == total
        assert ledger.max_seq[report["producer_id"]] == total, "the last records never arrived"
        assert report["stats"]["errors"] == 0, report
        assert report["longest_pause"] < 0.5, f"a logging call blocked {report['longest_pause']:.2f} s"
        assert delivered > total // 2, "the producers did not keep delivering around the restart"
    assert ledger.duplicates == 0
    assert listener.stats["gaps"] == sum(ledger.of(i)[1] for i in ids)


# --------------------------------------------------------------------------- 6: SIGTERM drain


@pytest.mark.slow
def test_sigterm_drain_under_push_load_loses_nothing(
    rel_broker: Factory,
    rel_listener: Factory,
    rel_handler: Factory,
    rel_producer: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """SIGTERM while 3 push producers burst 10,000 records each: the broker drains, exits 0, 0 lost."""
    per, drain_timeout = 10_000, 10.0
    broker = rel_broker("--drain-timeout", str(drain_timeout))
    listener, ledger = rel_listener(broker.egress)
    rel.probe(rel_handler(broker.push_ingest), [ledger])
    producers = [rel_producer(broker.push_ingest, per, "--service", f"drain-{i}", "--pad", 100) for i in range(3)]
    starts = [p.next_event("start") for p in producers]
    time.sleep(0.05)
    at_signal = ledger.count("rel.load")
    began = time.monotonic()
    broker.signal(signal.SIGTERM)
    code = broker.wait(timeout=drain_timeout + 10)
    took = time.monotonic() - began
    reports = [p.finish(timeout=30) for p in producers]
    want = per * len(producers)
    rel.wait_until(lambda: ledger.count("rel.load") >= want, timeout=15)
    rel.settle([ledger], quiet=0.3)
    got = ledger.count("rel.load")
    stderr = broker.stderr()

    rel_figure(
        f"SIGTERM during a {want}-record push burst ({at_signal} delivered at the signal): {got}/{want} delivered, "
        f"lost {want - got}, gaps {listener.stats['gaps']}, broker exit {code} after {took:.2f} s"
    )
    assert code == 0, stderr
    assert at_signal < want, "the burst was over before SIGTERM: nothing was tested"
    assert took < drain_timeout + 1.5, f"drain took {took:.2f} s"
    # reported before exit: what the sender thread had not sent yet was still queued
    assert all(r["stats"]["sent"] + r["stats"]["queued"] == per and r["stats"]["dropped"] == 0 for r in reports), (
        reports
    )
    assert got == want, f"lost {want - got}: {listener.stats}\n{stderr}"
    assert listener.stats["gaps"] == 0 and ledger.duplicates == 0
    assert {s["producer_id"] for s in starts} == {r["producer_id"] for r in reports}


# --------------------------------------------------------------------------- 7: slow subscriber


class Stalled(logging.Handler):
    """A handler that blocks the listener thread until released (a subscriber that stopped reading)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.release.wait(60)


@pytest.mark.slow
def test_slow_subscriber_drops_are_counted_while_the_fast_one_gets_everything(
    rel_broker: Factory,
    rel_listener: Factory,
    rel_handler: Factory,
    rel_producer: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
    tmp_path: Path,
) -> None:
    """A 150,000-record burst with one stalled subscriber: the fast one gets 100 %, the stalled one counts its loss."""
    total, tail = 150_000, 100
    broker = rel_broker("--hwm", "10000")
    fast, fast_ledger = rel_listener(broker.egress)
    stalled = Stalled()
    slow, slow_ledger = rel_listener(broker.egress, stalled)
    rel.probe(rel_handler(broker.push_ingest), [fast_ledger, slow_ledger])
    go = tmp_path / "tail"
    producer = rel_producer(
        broker.push_ingest,
        total,
        "--pad",
        200,
        "--rate",
        20_000,
        "--service",
        "overrun",
        "--then",
        tail,
        "--then-wait-file",
        go,
    )
    producer.next_event("waiting", timeout=90)
    assert rel.wait_until(lambda: fast_ledger.count("rel.load") >= total, timeout=60), fast.stats
    stalled.release.set()  # the slow subscriber reads again: what it kept, then the tail
    rel.settle([slow_ledger], quiet=0.5, timeout=60)
    go.touch()
    report = producer.finish(timeout=60)
    pid, sent = report["producer_id"], total + tail
    rel.wait_until(lambda: fast_ledger.of(pid)[0] >= sent and slow_ledger.max_seq.get(pid) == sent, timeout=30)
    rel.settle([fast_ledger, slow_ledger], quiet=0.3)

    fast_got, fast_gaps = fast_ledger.of(pid)
    slow_got, slow_gaps = slow_ledger.of(pid)
    rel_figure(
        f"{sent} records, broker --hwm 10000: fast subscriber {fast_got}/{sent} ({100 * fast_got / sent:.1f} %), "
        f"gaps {fast_gaps}; stalled subscriber delivered {slow_got}, reported lost {slow_gaps}, "
        f"silently lost {slow_ledger.silent(pid, sent)}"
    )
    assert report["stats"]["sent"] + report["stats"]["queued"] == sent and report["stats"]["dropped"] == 0, report
    assert fast_got == sent and fast_gaps == 0, fast.stats
    assert slow_gaps > 0, "the stalled subscriber was never overrun: the test did not exercise the egress HWM"
    assert slow_ledger.silent(pid, sent) == 0, f"silent loss at the slow subscriber: {slow.stats}"
    assert slow_got + slow_gaps - slow_ledger.late(pid) == sent
    assert slow.stats["gaps"] == slow_gaps and fast_ledger.duplicates == slow_ledger.duplicates == 0
    assert broker.get("/healthz")[0] == 200


def test_a_stuck_subscriber_of_a_direct_pub_producer_costs_every_subscriber_counted_at_the_producer(
    rel_tcp_endpoint: str,
    rel_listener: Factory,
    rel_handler: Factory,
    rel_zmq: zmq.Context[zmq.Socket[bytes]],
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """Without a broker, a subscriber that never reads fills the XPUB: the producer drops for all, and counts it."""
    total = 30_000
    handler = rel_handler(rel_tcp_endpoint, mode="pub", bind=True, service="direct", hwm=1000)
    listener, ledger = rel_listener(rel_tcp_endpoint, loggers=["rel.direct"])
    stuck = rel_zmq.socket(zmq.SUB)
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.setsockopt(zmq.RCVHWM, 10)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(rel_tcp_endpoint)
    assert handler.wait_ready(10)
    log = logging.getLogger("rel.direct")
    log.propagate, log.level = False, logging.DEBUG
    log.addHandler(handler)
    # Probes go to a child logger (its own topic): the ones sent before the
    # reader's subscription arrived never reach it, so they are kept out of the count.
    probe_log = logging.getLogger("rel.direct.probe")
    try:
        probes = 0
        while ledger.count(probe_log.name) == 0 or not stuck.poll(0):  # both subscriptions have arrived
            probe_log.info("probe")
            probes += 1
            assert probes < 1000, "the subscriptions never arrived"
            time.sleep(0.01)
        base = dict(handler.stats)
        for i in range(total):
            log.info("record %d %s", i, "x" * 200)
        # The sender thread goes on sending what it queued while the stuck subscriber's
        # buffers still take some: read the counts once they have stopped moving.
        now, before = handler.stats, None
        deadline = time.monotonic() + 10
        while now != before and time.monotonic() < deadline:
            time.sleep(0.3)
            before, now = now, handler.stats
        sent, dropped, queued = now["sent"] - base["sent"], now["dropped"] - base["dropped"], now["queued"]
        rel.wait_until(lambda: ledger.count("rel.direct") >= sent, timeout=15)
        rel.settle([ledger], quiet=0.3)
    finally:
        log.removeHandler(handler)
    got = ledger.count("rel.direct")
    rel_figure(
        f"{total} records, one stuck direct subscriber: producer sent {sent}, dropped {dropped}, queued {queued}; "
        f"the reading subscriber got {got}, reported lost {listener.stats['gaps']}"
    )
    assert sent + dropped + queued == total
    assert dropped > total // 2, "the stuck subscriber never filled the producer's queue"
    assert got == sent, "what the producer counted as sent is what the reading subscriber got"


# --------------------------------------------------------------------------- 8: oversize


def test_oversize_record_is_refused_and_counted_and_the_connection_recovers(
    rel_broker: Factory,
    rel_listener: Factory,
    rel_handler: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """A 2 MiB record: a default producer counts it as oversize; one that sends it anyway gets reset and recovers."""
    broker = rel_broker()
    listener, ledger = rel_listener(broker.egress)
    rel.probe(rel_handler(broker.push_ingest), [ledger])
    results = {}
    for who, options in (("default", {}), ("unlimited", {"max_message": 64 * 1024 * 1024})):
        handler = rel_handler(broker.push_ingest, service=f"oversize-{who}", **options)
        pid, sent = _log_around_a_huge_record(handler, f"rel.oversize.{who}", ledger, rel)
        results[who] = (handler, pid, sent)
        delivered, gaps = ledger.of(pid)
        rel_figure(
            f"{who} producer: sent {sent} with one 2 MiB record: producer oversize {handler.stats['oversize']}, "
            f"delivered {delivered}, reported lost {gaps}, silently lost {ledger.silent(pid, sent)}"
        )

    default, pid, sent = results["default"]
    assert default.stats["oversize"] == 1
    assert ledger.of(pid) == (sent - 1, 1)  # the refused record shows as a gap of 1 too
    unlimited, pid, sent = results["unlimited"]
    assert unlimited.stats["oversize"] == 0
    delivered, gaps = ledger.of(pid)
    assert ledger.silent(pid, sent) == 0 and gaps >= 1, (delivered, gaps, sent)
    assert delivered + gaps - ledger.late(pid) == sent
    assert ledger.max_seq[pid] == sent, "records after the reset never arrived: the connection did not recover"
    assert listener.stats["malformed"] == 0 and broker.alive
    for _, pid, _ in results.values():
        assert 51 not in ledger.seqs[pid], "the 2 MiB record (seq 51) got through"


def _log_around_a_huge_record(handler: Any, name: str, ledger: Any, rel: Any) -> tuple[str, int]:
    """Log 50 records, one of 2 MiB, then more until later ones arrive; return (producer id, records logged)."""
    log = logging.getLogger(name)
    log.propagate, log.level = False, logging.DEBUG
    log.addHandler(handler)
    pid = f"{handler.identity.producer_id:016x}"
    try:
        for i in range(50):
            log.info("before %d", i)
        log.info("x" * (2 * 1024 * 1024))
        sent = 51
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # until records logged after the huge one arrive
            log.info("after %d", sent)
            sent += 1
            if rel.wait_until(lambda: ledger.max_seq.get(pid, 0) > 60, 0.05):
                break
        for _ in range(20):
            log.info("after %d", sent)
            sent += 1
        rel.wait_until(lambda: ledger.max_seq.get(pid) == sent, timeout=10)
        rel.settle([ledger], quiet=0.3)
    finally:
        log.removeHandler(handler)
    return pid, sent


# --------------------------------------------------------------------------- 11: idle connections


@pytest.mark.slow
def test_200_idle_tcp_connections_per_port_do_not_disturb_traffic(
    rel_broker: Factory,
    rel_listener: Factory,
    rel_handler: Factory,
    rel_producer: Factory,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """200 idle raw TCP connections on each broker port (HTTP too): 0 lost, probes answer, HTTP idlers are cut."""
    per_port, total = 200, 10_000
    broker = rel_broker()
    ports = {"pub_ingest": broker.pub_ingest, "push_ingest": broker.push_ingest, "egress": broker.egress}
    ports["http"] = broker.http
    idle: dict[str, list[socket.socket]] = {name: [] for name in ports}
    try:
        began = time.monotonic()
        for name, endpoint in ports.items():
            for _ in range(per_port):
                idle[name].append(socket.create_connection(rel.host_port(endpoint), timeout=5))
        opened = time.monotonic()
        status, _ = broker.get("/healthz", timeout=2.0)
        health_ms = (time.monotonic() - opened) * 1000
        listener, ledger = rel_listener(broker.egress)
        rel.probe(rel_handler(broker.push_ingest), [ledger])
        push = rel_producer(broker.push_ingest, total, "--service", "idle-push")
        pub = rel_producer(broker.pub_ingest, total, "--mode", "pub", "--wait-ready", 10, "--settle", 0.3)
        reports = [p.finish(timeout=60) for p in (push, pub)]
        ids = [r["producer_id"] for r in reports]
        rel.wait_until(lambda: all(ledger.of(i)[0] >= total for i in ids), timeout=20)
        rel.settle([ledger], quiet=0.3)
        status_after, _ = broker.get("/healthz", timeout=2.0)
        ready_after, _ = broker.get("/readyz", timeout=2.0)
        zmtp_open = sum(1 for name in ports if name != "http" for s in idle[name] if _open(s))
        # an HTTP connection that never sends a request is closed after the handler's 10 s timeout
        http_cut = rel.wait_until(
            lambda: not any(_open(s) for s in idle["http"]), timeout=opened + 15 - time.monotonic()
        )
        http_cut_after = time.monotonic() - opened
    finally:
        for socks in idle.values():
            for s in socks:
                s.close()
    got = [ledger.of(i)[0] for i in ids]
    rel_figure(
        f"{per_port} idle connections on each of {len(ports)} ports (opened in {opened - began:.1f} s): "
        f"push {got[0]}/{total}, pub {got[1]}/{total} delivered, gaps {listener.stats['gaps']}; "
        f"/healthz {status} in {health_ms:.0f} ms, afterwards {status_after}; {zmtp_open} idle ZMTP connections "
        f"still open; idle HTTP connections closed {http_cut_after:.1f} s after opening"
    )
    assert status == status_after == ready_after == 200
    assert health_ms < 1000, f"/healthz took {health_ms:.0f} ms behind the idle connections"
    assert got == [total, total], f"lost records: {listener.stats}"
    assert listener.stats["gaps"] == 0 and listener.stats["malformed"] == 0
    assert all(r["stats"]["dropped"] == 0 for r in reports), reports
    assert opened - began < 10, f"opening 800 connections took {opened - began:.1f} s: the broker accepts too slowly"
    assert http_cut, "idle HTTP connections are never closed: each holds a broker thread"


def _open(sock: socket.socket) -> bool:
    """Whether the peer still keeps ``sock`` open (no EOF or reset pending)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
