"""The broker as a real ``python -m broker`` process: routing, metrics, health, drain, robustness.

Producers are subprocesses or in-process ZmqHandlers, subscribers are
ZmqListeners or raw zmq sockets; nothing is mocked. Every broker binds explicit
127.0.0.1 endpoints (see ``start_broker`` in conftest.py).
"""

from __future__ import annotations

import json
import logging
import random
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import zmq

import fabric
from fabric.topic import subscriptions
from tests.helpers.broker import BrokerProc, RoutedBroker
from tests.helpers.capture import PROBE, Capture, emit, probe_until_seen, send_sentinel
from tests.helpers.net import host_port
from tests.helpers.processes import ProducerRunner
from tests.helpers.waiting import poll_until, send_until, wait_until

pytestmark = pytest.mark.timeout(120)


def wants_warning(name: str, level: int) -> bool:
    return level >= logging.WARNING


def wants_db(name: str, level: int) -> bool:
    return name == "app.db" or name.startswith("app.db.")


def wants_either(name: str, level: int) -> bool:
    return wants_warning(name, level) or wants_db(name, level)


def expected(plan: list[tuple[str, int, int]], predicate: Callable[[str, int], bool]) -> int:
    """How many records of ``plan`` ``predicate`` selects."""
    return sum(count for name, level, count in plan if predicate(name, level))


def drained_count(stderr: str) -> int:
    """The N of the broker's last 'drained N record(s)' log line."""
    found = re.findall(r"drained (\d+) record\(s\)", stderr)
    assert found, f"the broker never logged 'drained N record(s)':\n{stderr}"
    return int(found[-1])


# --------------------------------------------------------------------------- routing and metrics


class TestRoutingThroughBrokerProcess:
    """Push and pub producer processes to two differently filtered subscribers through one broker process."""

    def test_producers_sent_every_record(self, routed_broker: RoutedBroker) -> None:
        """Both producer processes sent their whole plan, their probes and their sentinel without a drop."""
        for report in routed_broker.reports.values():
            want = expected(routed_broker.plan, lambda n, lv: True) + report["probes"] + 1
            assert report["stats"]["sent"] == want, report
            assert report["stats"]["dropped"] == 0, report

    def test_level_subscriber_gets_exactly_warning_and_above(self, routed_broker: RoutedBroker) -> None:
        """A level=WARNING subscriber gets exactly the WARNING+ records of each producer, nothing else."""
        cap, want = routed_broker.warn_capture, expected(routed_broker.plan, wants_warning)
        assert cap.by_service("pusher") == want
        assert cap.by_service("publisher") == want
        assert cap.count() == 2 * want
        assert cap.by_service("pusher", "app.db.probe") == 1, "the push producer's sentinel, once"

    def test_logger_subscriber_gets_exactly_app_db_and_descendants(self, routed_broker: RoutedBroker) -> None:
        """A loggers=["app.db"] subscriber gets app.db and app.db.pool at every level, never app.dbx."""
        cap, want = routed_broker.db_capture, expected(routed_broker.plan, wants_db)
        assert cap.by_service("pusher") == want
        assert cap.by_service("publisher") == want
        assert cap.count() == 2 * want
        assert cap.names_seen() == {"app.db", "app.db.pool", "app.db.probe"}
        assert cap.by_service("pusher", "app.db.probe") == 1, "the push producer's sentinel, once"

    def test_subscribers_see_no_gaps_and_nothing_malformed(self, routed_broker: RoutedBroker) -> None:
        """Neither subscriber saw a sequence gap, a malformed frame or a record outside its filter."""
        for listener in (routed_broker.warn, routed_broker.db):
            assert listener.stats["gaps"] == 0, listener.stats
            assert listener.stats["malformed"] == 0, listener.stats
            assert listener.stats["filtered"] == 0, listener.stats


class TestMetricsOfBrokerProcess:
    """/metrics of the routed broker against what was actually sent."""

    def test_records_received_per_ingest(self, routed_broker: RoutedBroker) -> None:
        """received_total{push} counts every pushed record; {pub} only what subscribers asked PUB producers for."""
        m = routed_broker.broker.metrics()
        plan = routed_broker.plan
        sync = routed_broker.sync  # each producer's probes and sentinel
        pushed = expected(plan, lambda n, lv: True) + sync["pusher"] + routed_broker.probe_handler.stats["sent"]
        assert m.get("logfabric_broker_records_received_total", ingest="push") == pushed
        # a PUB producer only sends what some subscriber wants: the union of both filters
        published = expected(plan, wants_either) + sync["publisher"]
        assert m.get("logfabric_broker_records_received_total", ingest="pub") == published
        assert m.get("logfabric_broker_bytes_received_total", ingest="push") > 0
        assert m.get("logfabric_broker_records_received_total", ingest="upstream") is None

    def test_records_sent_to_subscribers(self, routed_broker: RoutedBroker) -> None:
        """sent_total{subscribers} counts only records some subscriber wants (filtered before the egress)."""
        m = routed_broker.broker.metrics()
        union = expected(routed_broker.plan, wants_either)
        synced = routed_broker.probes + sum(routed_broker.sync.values())
        assert m.get("logfabric_broker_records_sent_total", egress="subscribers") == 2 * union + synced
        sent_bytes = m.get("logfabric_broker_bytes_sent_total", egress="subscribers")
        assert 0 < sent_bytes < m.total("logfabric_broker_bytes_received_total")
        assert m.get("logfabric_broker_records_sent_total", egress="pipeline") is None

    def test_subscription_messages(self, routed_broker: RoutedBroker) -> None:
        """Every distinct subscription prefix of the two listeners reached the egress exactly once."""
        m = routed_broker.broker.metrics()
        prefixes = set(subscriptions(logging.WARNING)) | set(subscriptions(None, ["app.db"]))
        assert m.get("logfabric_broker_subscription_messages_total") == len(prefixes)

    def test_connection_gauges_while_connected(self, routed_broker: RoutedBroker) -> None:
        """connections{egress} counts both listeners, {push_ingest} the probe handler; exited producers are gone."""

        def gauges() -> dict[str, float | None]:
            m = routed_broker.broker.metrics()
            return {s: m.get("logfabric_broker_connections", socket=s) for s in ("egress", "push_ingest", "pub_ingest")}

        want = {"egress": 2, "push_ingest": 1, "pub_ingest": 0}
        poll_until(lambda: gauges() == want, timeout=5)
        assert gauges() == want

    def test_state_metrics(self, routed_broker: RoutedBroker) -> None:
        """ready is 1, nothing malformed or drained, uptime positive, build_info names these versions."""
        m = routed_broker.broker.metrics()
        assert m.get("logfabric_broker_ready") == 1
        assert m.total("logfabric_broker_malformed_total") == 0
        assert m.get("logfabric_broker_drained_records_total") == 0
        assert m.get("logfabric_broker_uptime_seconds") > 0
        (info,) = m.labels("logfabric_broker_build_info")
        assert info["version"] == fabric.__version__
        assert info["libzmq"] == zmq.zmq_version()


# --------------------------------------------------------------------------- health


def pushed_in(b: BrokerProc) -> float:
    """Records the broker took in at its push ingest, by its /metrics."""
    return b.metrics().total("logfabric_broker_records_received_total", ingest="push")


def start_trickle(handler: fabric.ZmqHandler, every: float = 0.02) -> tuple[threading.Event, threading.Thread]:
    """Send one record every ``every`` seconds from a thread until the returned event is set."""
    stop = threading.Event()

    def run() -> None:
        i = 0
        while not stop.wait(every):
            emit(handler, "trickle", "trickle %d", i, level=logging.INFO)
            i += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return stop, thread


class TestHealthEndpoints:
    """/healthz, /readyz, /metrics and unknown paths of a broker process."""

    def test_ready_and_healthy_while_running(self, start_broker: Callable[..., BrokerProc]) -> None:
        """A running broker answers /readyz 200, /healthz 200, /metrics 200 and 404 elsewhere."""
        b = start_broker()
        assert b.get("/readyz") == (200, "ready\n")
        assert b.get("/readyz?verbose=1")[0] == 200
        assert b.get("/healthz") == (200, "ok\n")
        status, body = b.get("/metrics")
        assert status == 200 and "logfabric_broker_ready 1.0" in body
        status, body = b.get("/nope")
        assert status == 404 and "/metrics" in body

    def test_readyz_turns_503_during_the_sigterm_drain(
        self, start_broker: Callable[..., BrokerProc], make_handler: Callable[..., fabric.ZmqHandler]
    ) -> None:
        """After SIGTERM the draining broker answers /readyz 503 and /healthz 200, then exits 0."""
        b = start_broker("--drain-timeout", "8")
        stop, thread = start_trickle(make_handler(b.push_ingest))  # keeps the drain going
        try:
            assert poll_until(lambda: pushed_in(b) > 0), "the trickle never reached the broker"
            b.signal(signal.SIGTERM)
            seen: list[tuple[int, str]] = []
            turned = poll_until(lambda: seen.append(b.get("/readyz")) or seen[-1][0] == 503, timeout=5)
            assert turned, f"/readyz never turned 503 during the drain: {seen[-3:]}"
            assert b.alive, "the broker exited before the drain could be observed"
            assert b.get("/readyz") == (503, "not ready\n")
            assert b.get("/healthz")[0] == 200  # draining is not dead
            assert b.metrics().get("logfabric_broker_ready") == 0
            # A duration: keep trickling into the drain, which starts once the proxies have ended (nothing shows when).
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(5)
        assert b.wait(timeout=8 + 5) == 0, b.stderr()
        assert drained_count(b.stderr()) > 0, "records trickled in during the drain were not forwarded"


# --------------------------------------------------------------------------- SIGTERM drain


class TestSigtermDrain:
    """SIGTERM and SIGINT: stop taking work, forward what still arrives, exit 0 within the drain timeout."""

    @pytest.mark.slow
    def test_sigterm_under_push_load_loses_nothing(
        self,
        start_broker: Callable[..., BrokerProc],
        producers: ProducerRunner,
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
    ) -> None:
        """SIGTERM during a 20,000-record push burst: exit 0 within the timeout, the subscriber gets all 20,000."""
        total, drain_timeout = 20_000, 10.0
        b = start_broker("--drain-timeout", str(drain_timeout))
        listener, capture = capturing_listener(b.egress)
        probe_until_seen(make_handler(b.push_ingest), [capture])
        producer = producers.start(
            b.push_ingest, total, "--logger", "load", "--service", "burst", "--linger", 5, "--end", "close"
        )
        assert wait_until(lambda: capture.count("load") > 0, timeout=15), "the burst never reached the subscriber"
        at_signal = capture.count("load")
        began = time.monotonic()
        b.signal(signal.SIGTERM)
        code = b.wait(timeout=drain_timeout + 10)
        took = time.monotonic() - began
        report = json.loads(producers.finish(producer, timeout=30))

        assert code == 0, b.stderr()
        assert took < drain_timeout + 1.5, f"exit took {took:.2f} s, drain timeout {drain_timeout} s"
        assert report["stats"]["sent"] == total and report["stats"]["dropped"] == 0, report
        assert at_signal < total, "the burst was already delivered when SIGTERM was sent: nothing was tested"
        poll_until(lambda: capture.count("load") >= total, timeout=15)
        context = f"{listener.stats}, producer {report}, at SIGTERM {at_signal}, broker:\n{b.stderr()}"
        assert capture.count("load") == total, f"lost {total - capture.count('load')} record(s); {context}"
        assert listener.stats["gaps"] == 0, context
        assert drained_count(b.stderr()) > 0

    def test_sigint_on_an_idle_broker_exits_zero_at_once(self, start_broker: Callable[..., BrokerProc]) -> None:
        """SIGINT on an idle broker drains 0 records and exits 0 well before the drain timeout."""
        b = start_broker("--drain-timeout", "10")
        began = time.monotonic()
        b.signal(signal.SIGINT)
        assert b.wait(timeout=10) == 0, b.stderr()
        assert time.monotonic() - began < 3.0
        assert drained_count(b.stderr()) == 0
        assert "received SIGINT" in b.stderr()

    def test_drain_timeout_bounds_the_exit(
        self, start_broker: Callable[..., BrokerProc], make_handler: Callable[..., fabric.ZmqHandler]
    ) -> None:
        """An ingest that never goes quiet cannot keep the broker alive past --drain-timeout."""
        b = start_broker("--drain-timeout", "1.5")
        stop, thread = start_trickle(make_handler(b.push_ingest), every=0.01)
        try:
            assert poll_until(lambda: pushed_in(b) > 0), "the trickle never reached the broker"
            began = time.monotonic()
            b.signal(signal.SIGTERM)
            code = b.wait(timeout=10)
            took = time.monotonic() - began
        finally:
            stop.set()
            thread.join(5)
        assert code == 0, b.stderr()
        assert 1.0 <= took < 1.5 + 1.5, f"exit took {took:.2f} s with --drain-timeout 1.5"
        assert "drain timeout reached" in b.stderr()


# --------------------------------------------------------------------------- garbage


def zmtp_greeting(mechanism: bytes = b"NULL", signature_length: int = 1) -> bytes:
    """A ZMTP 3.1 greeting; its signature's 8 bytes are a frame length in ZMTP 1.0 terms."""
    return (
        b"\xff" + struct.pack(">Q", signature_length) + b"\x7f" + b"\x03\x01" + mechanism.ljust(20, b"\0") + bytes(32)
    )


def zmtp_ready(socket_type: bytes) -> bytes:
    """A NULL-mechanism READY command announcing ``socket_type``."""
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return b"\x04" + bytes([len(body)]) + body


PEER_TYPE = {"pub_ingest": b"PUB", "push_ingest": b"PUSH", "egress": b"SUB", "pipeline": b"PULL"}


def garbage(role: str) -> dict[str, bytes]:
    """Byte strings that are no usable ZMTP conversation for a peer of ``role``."""
    rng = random.Random(role)
    return {
        "random bytes": b"\x17" + rng.randbytes(4095),
        "an HTTP request": b"GET /metrics HTTP/1.1\r\nHost: broker\r\n\r\n",
        "a huge length prefix": zmtp_greeting(b"GARBAGE", signature_length=2**62) + rng.randbytes(64),
        "a huge frame after a valid handshake": (
            zmtp_greeting() + zmtp_ready(PEER_TYPE[role]) + b"\x02" + struct.pack(">Q", 2**62) + rng.randbytes(64)
        ),
    }


def hung_up(address: tuple[str, int], data: bytes, timeout: float = 3.0) -> bool:
    """Send ``data`` over raw TCP; return whether the peer closed the connection within ``timeout``."""
    with socket.create_connection(address, timeout=timeout) as conn:
        deadline = time.monotonic() + timeout
        try:
            conn.sendall(data)
            while time.monotonic() < deadline:
                if not conn.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


class TestGarbageAtPorts:
    """Non-ZMTP bytes at every broker port are refused; real traffic keeps flowing."""

    def test_garbage_at_every_port_is_refused_and_traffic_still_flows(
        self,
        start_broker: Callable[..., BrokerProc],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
    ) -> None:
        """Random bytes, HTTP and huge length prefixes at each port: hung up on, counted, never forwarded."""
        b = start_broker(pipeline=True)
        listener, capture = capturing_listener(b.egress)
        push = make_handler(b.push_ingest, service="push-after")
        pub = make_handler(b.pub_ingest, mode="pub", service="pub-after")
        assert pub.wait_ready(5)
        probe_until_seen(push, [capture])
        ports = {"pub_ingest": b.pub_ingest, "push_ingest": b.push_ingest, "egress": b.egress, "pipeline": b.pipeline}
        before = b.metrics()

        kept_open = [
            f"{what} at {role}"
            for role, endpoint in ports.items()
            for what, data in garbage(role).items()
            if not hung_up(host_port(endpoint), data)
        ]

        assert kept_open == [], f"the broker kept talking to garbage: {kept_open}"
        assert b.alive and b.get("/healthz")[0] == 200, b.stderr()

        def refused(role: str, m: Any) -> float:
            return m.total("logfabric_broker_malformed_total", socket=role)

        for role in ports:
            assert poll_until(lambda r=role: refused(r, b.metrics()) > refused(r, before), timeout=5), (
                f"malformed_total{{socket={role!r}}} did not increase: "
                f"{[s for s in b.metrics().samples if s[0] == 'logfabric_broker_malformed_total']}"
            )

        for i in range(50):
            emit(push, "after", "push %d", i, level=logging.INFO)
            emit(pub, "after", "pub %d", i, level=logging.INFO)
        assert poll_until(lambda: capture.count("after") >= 100, timeout=10)
        send_sentinel(push, [capture])
        send_sentinel(pub, [capture])
        assert capture.by_service("push-after") == 50 and capture.by_service("pub-after") == 50
        assert listener.stats["malformed"] == 0, f"garbage reached a subscriber: {listener.stats}"
        assert listener.stats["gaps"] == 0, listener.stats
        m = b.metrics()
        # garbage is never counted, nor forwarded, as records
        assert m.get("logfabric_broker_records_received_total", ingest="push") == push.stats["sent"]
        assert m.get("logfabric_broker_records_received_total", ingest="pub") == pub.stats["sent"]
        want = {"pub_ingest": 1, "push_ingest": 1, "egress": 1, "pipeline": 0}

        def gauges() -> dict[str, float | None]:
            m = b.metrics()
            return {r: m.get("logfabric_broker_connections", socket=r) for r in ports}

        assert poll_until(lambda: gauges() == want, timeout=5), f"still counted as open: {gauges()}"


# --------------------------------------------------------------------------- slow subscriber


class TestSlowSubscriber:
    """A subscriber that never reads must not hold back the others."""

    @pytest.mark.slow
    def test_a_subscriber_that_never_reads_does_not_hold_back_others(
        self,
        start_broker: Callable[..., BrokerProc],
        producers: ProducerRunner,
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
        zmq_context: zmq.Context[zmq.Socket[bytes]],
    ) -> None:
        """A 20,000-record burst: the reading subscriber gets all of it, the stuck one is cut off, the broker lives."""
        total = 20_000
        b = start_broker("--hwm", "10000")
        listener, capture = capturing_listener(b.egress)
        stuck = zmq_context.socket(zmq.SUB)
        stuck.setsockopt(zmq.LINGER, 0)
        stuck.setsockopt(zmq.RCVHWM, 10)
        stuck.setsockopt(zmq.RCVBUF, 4096)
        stuck.setsockopt(zmq.SUBSCRIBE, b"")
        stuck.connect(b.egress)
        probe = make_handler(b.push_ingest)
        probe_until_seen(probe, [capture])
        # make sure the stuck subscriber is subscribed: wait for one probe, then never read again
        deadline = time.monotonic() + 10
        while not stuck.poll(50):
            emit(probe, PROBE, "stuck probe")
            assert time.monotonic() < deadline, "the stuck subscriber never got a probe"

        producer = producers.start(
            b.push_ingest,
            total,
            "--logger",
            "load",
            "--service",
            "burst",
            "--pad",
            1000,
            "--linger",
            5,
            "--end",
            "close",
        )
        report = json.loads(producers.finish(producer, timeout=60))
        assert report["stats"]["sent"] == total and report["stats"]["dropped"] == 0, report
        poll_until(lambda: capture.count("load") >= total, timeout=30)
        assert capture.count("load") == total, f"the reading subscriber lost records: {listener.stats}"
        assert listener.stats["gaps"] == 0, listener.stats
        assert b.alive and b.get("/healthz")[0] == 200 and b.get("/readyz")[0] == 200

        stuck_got = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and stuck.poll(1000):
            if stuck.recv_multipart()[0].startswith(b"2load"):
                stuck_got += 1
        assert stuck_got < total, "the stuck subscriber was never overrun: the test did not exercise its HWM"
        # the broker still serves the reading subscriber afterwards
        emit(probe, "after", "after the burst", level=logging.INFO)
        assert poll_until(lambda: capture.count("after") == 1, timeout=5)


# --------------------------------------------------------------------------- pipeline


class TestPipeline:
    """--pipeline: every record load-balanced over PULL consumers."""

    def test_pipeline_load_balances_every_record_over_consumers(
        self,
        start_broker: Callable[..., BrokerProc],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
    ) -> None:
        """Two PULL consumers on the pipeline share the records: both get some, together exactly all, once each."""
        total = 400
        b = start_broker(pipeline=True)
        listeners = [capturing_listener(b.pipeline, mode="pull") for _ in range(2)]
        consumers = [capture for _, capture in listeners]
        connected = poll_until(
            lambda: b.metrics().get("logfabric_broker_connections", socket="pipeline") == 2, timeout=10
        )
        assert connected, "the consumers never connected to the pipeline"
        push = make_handler(b.push_ingest, service="piped")
        for i in range(total):
            emit(push, "piped", "record %d", i, level=logging.DEBUG)
        assert poll_until(lambda: sum(c.count("piped") for c in consumers) >= total, timeout=10)
        # Sentinels until each consumer has one: each comes after that consumer's share of the records.
        sentinels = send_until(
            lambda n: emit(push, PROBE, "sentinel %d", n), lambda: all(c.count(PROBE) for c in consumers)
        )
        assert sentinels is not None, "no sentinel reached each consumer"
        counts = [c.count("piped") for c in consumers]
        assert sum(counts) == total, counts
        assert all(n > 0 for n in counts), f"not load-balanced: {counts}"
        delivered = {r.getMessage() for c in consumers for r in c.named("piped")}
        assert len(delivered) == total, "a record reached more than one consumer"
        sent = b.metrics().get("logfabric_broker_records_sent_total", egress="pipeline")
        assert sent == total + sentinels
        # Each consumer's share skips the other's records: those are not losses.
        assert [c.count("logfabric.gaps") for c in consumers] == [0, 0]
        assert [listener.stats["gaps"] for listener, _ in listeners] == [0, 0]
