"""The broker embedded in this process: ``Broker(...).start()``, ``stop()``, ``with Broker(...)``."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

import fabric
from broker import Broker, BrokerConfig, ConfigError
from tests.helpers.capture import Capture, emit, probe_until_seen
from tests.helpers.net import free_ports, http_get
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(60)


LOCAL = {
    "pub_ingest": "tcp://127.0.0.1:*",
    "push_ingest": "tcp://127.0.0.1:*",
    "egress": "tcp://127.0.0.1:*",
}


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def accepting(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class TestLifecycle:
    """start(), stop(), the context manager and what they leave behind."""

    def test_start_binds_and_resolves_wildcard_ports(self) -> None:
        """'*' ports are bound to real ports and reported in endpoints, HTTP included."""
        broker = Broker(**LOCAL, pipeline="tcp://127.0.0.1:*", http="127.0.0.1:0")
        try:
            assert broker.start() is broker
            assert set(broker.endpoints) == {"pub_ingest", "push_ingest", "egress", "pipeline", "http"}
            for role in ("pub_ingest", "push_ingest", "egress", "pipeline"):
                endpoint = broker.endpoints[role]
                assert endpoint.startswith("tcp://127.0.0.1:") and port_of(endpoint) > 0, endpoint
                assert accepting(port_of(endpoint)), f"{role} is not listening on {endpoint}"
            host, _, port = broker.endpoints["http"].rpartition(":")
            assert host == "127.0.0.1" and int(port) > 0
            assert len({port_of(e) for e in broker.endpoints.values()}) == 5
            assert broker.ready and broker.alive and not broker.draining
        finally:
            broker.stop(0)

    def test_http_is_off_unless_asked_for(self) -> None:
        """An embedded broker serves no HTTP by default and has no pipeline unless configured."""
        with Broker(**LOCAL) as broker:
            assert broker.config.http is None
            assert "http" not in broker.endpoints and "pipeline" not in broker.endpoints

    def test_double_start_raises(self, start_embedded_broker: Callable[..., Broker]) -> None:
        """Starting a started broker is a RuntimeError and leaves it running."""
        broker = start_embedded_broker()
        with pytest.raises(RuntimeError, match="already started"):
            broker.start()
        assert broker.ready

    def test_context_manager_starts_and_stops(self) -> None:
        """``with Broker(...)`` is ready inside and has released its ports and HTTP after."""
        with Broker(**LOCAL, http="127.0.0.1:0") as broker:
            assert broker.ready
            ports = [port_of(broker.endpoints[r]) for r in LOCAL]
            http = broker.endpoints["http"]
            assert http_get(http, "/readyz")[0] == 200
        assert not broker.ready and broker.draining
        assert not any(accepting(p) for p in ports), "a port is still bound after the with block"
        with pytest.raises(OSError):
            http_get(http, "/readyz", timeout=1)

    def test_stop_returns_drained_count_and_second_stop_is_a_noop(
        self, start_embedded_broker: Callable[..., Broker]
    ) -> None:
        """stop() returns the records drained (>= 0, kept in .drained); a second stop returns 0 at once."""
        broker = start_embedded_broker()
        drained = broker.stop(drain_timeout=1)
        assert drained == broker.drained == 0
        began = time.monotonic()
        assert broker.stop(drain_timeout=5) == 0
        assert time.monotonic() - began < 0.5

    def test_stop_before_start_is_a_noop(self) -> None:
        """stop() on a broker that never started returns 0 and binds nothing."""
        broker = Broker(**LOCAL)
        assert broker.stop() == 0
        assert broker.endpoints == {} and not broker.ready and not broker.alive

    def test_failed_bind_releases_what_was_bound(self) -> None:
        """A start that fails on a busy pipeline port leaves the ports it bound before free again."""
        pub, push, egress = free_ports(3)
        fixed = {
            "pub_ingest": f"tcp://127.0.0.1:{pub}",
            "push_ingest": f"tcp://127.0.0.1:{push}",
            "egress": f"tcp://127.0.0.1:{egress}",
        }
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
            with pytest.raises(ValueError, match="cannot bind"):
                Broker(**fixed, pipeline=busy).start()
        with Broker(**fixed) as again:  # the same fixed ports bind again
            assert again.ready

    def test_failed_http_start_leaves_nothing_running(self) -> None:
        """A start that fails on a busy HTTP port raises and leaves no bound port, proxy or readiness behind."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            broker = Broker(**LOCAL, http=f"127.0.0.1:{taken.getsockname()[1]}")
            try:
                with pytest.raises(RuntimeError, match="cannot serve HTTP"):
                    broker.start()
                leftovers = [t.name for t in threading.enumerate() if t.name.startswith("logfabric-proxy")]
                bound = [e for r, e in broker.endpoints.items() if r != "http" and accepting(port_of(e))]
                assert not broker.ready, "a broker whose start failed reports ready"
                assert bound == [], f"a failed start left {bound} bound"
                assert poll_until(
                    lambda: not [t for t in threading.enumerate() if t.name.startswith("logfabric-proxy")], timeout=3
                ), f"a failed start left proxies running: {leftovers}"
            finally:
                broker.stop(0)

    def test_repr_shows_state(self, start_embedded_broker: Callable[..., Broker]) -> None:
        """repr names the state and the endpoints."""
        broker = start_embedded_broker()
        assert repr(broker).startswith("<Broker ready {") and broker.endpoints["egress"] in repr(broker)
        broker.stop(0)
        assert repr(broker).startswith("<Broker draining")


class TestConfiguration:
    """How an embedded broker takes its settings."""

    def test_config_object_with_keyword_overrides(self) -> None:
        """Keywords override fields of a BrokerConfig; the rest is kept."""
        base = BrokerConfig(**LOCAL, http=None, hwm=500, drain_timeout=3)
        broker = Broker(base, hwm=7)
        assert (broker.config.hwm, broker.config.drain_timeout, broker.config.egress) == (7, 3, LOCAL["egress"])

    def test_invalid_override_raises_before_binding(self) -> None:
        """A bad keyword is a ConfigError at construction, naming the field."""
        with pytest.raises(ConfigError, match=r"^egress: invalid endpoint"):
            Broker(**{**LOCAL, "egress": "127.0.0.1:5558"})


class TestEmbeddedTraffic:
    """Records through an embedded broker, its statistics and connection counts."""

    def test_records_flow_and_statistics_count_them(
        self,
        start_embedded_broker: Callable[..., Broker],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
    ) -> None:
        """Pushed records reach a subscriber; statistics() counts one frame per record at each proxy."""
        broker = start_embedded_broker()
        listener, capture = capturing_listener(broker.endpoints["egress"])
        handler = make_handler(broker.endpoints["push_ingest"])
        probes = probe_until_seen(handler, [capture])
        for i in range(100):
            emit(handler, "embedded", "record %d", i, level=logging.INFO)
        assert poll_until(lambda: capture.count("embedded") == 100, timeout=10)
        stats = broker.statistics()
        assert set(stats) == {"pub", "push", "egress"}
        assert stats["push"][0] == 100 + probes  # frames in at the push ingest
        assert stats["egress"][6] >= 100 + 1  # frames out to subscribers (some early probes unwanted)
        assert listener.stats["gaps"] == 0

    def test_connections_rise_and_fall(
        self, start_embedded_broker: Callable[..., Broker], make_handler: Callable[..., fabric.ZmqHandler]
    ) -> None:
        """connections() counts a producer while it is connected and forgets it once it closes."""
        broker = start_embedded_broker()
        assert broker.connections("push_ingest") == 0
        handler = make_handler(broker.endpoints["push_ingest"])
        emit(handler, "hello", "hello", level=logging.INFO)  # the socket opens lazily
        assert poll_until(lambda: broker.connections("push_ingest") == 1, timeout=5)
        handler.close()
        assert poll_until(lambda: broker.connections("push_ingest") == 0, timeout=5)

    def test_refusals_count_a_bad_greeting(self, start_embedded_broker: Callable[..., Broker]) -> None:
        """A ZMTP greeting with an unknown mechanism is refused and counted as a protocol refusal."""
        broker = start_embedded_broker()
        assert broker.refusals("push_ingest") == {"protocol": 0, "auth": 0, "other": 0}
        greeting = b"\xff" + struct.pack(">Q", 1) + b"\x7f\x03\x01" + b"BOGUS".ljust(20, b"\0") + bytes(32)
        with socket.create_connection(("127.0.0.1", port_of(broker.endpoints["push_ingest"])), timeout=3) as conn:
            conn.sendall(greeting)
            deadline = time.monotonic() + 3
            try:
                while conn.recv(4096) and time.monotonic() < deadline:
                    pass
            except ConnectionResetError:
                pass
        poll_until(lambda: broker.refusals("push_ingest")["protocol"] > 0, timeout=5)
        assert broker.refusals("push_ingest")["protocol"] == 1

    def test_stop_under_a_trickle_forwards_what_arrives(
        self,
        start_embedded_broker: Callable[..., Broker],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
    ) -> None:
        """Records still arriving while stop() drains are forwarded: drained > 0 and the subscriber has them all."""
        broker = start_embedded_broker()
        listener, capture = capturing_listener(broker.endpoints["egress"])
        handler = make_handler(broker.endpoints["push_ingest"], service="trickler")
        probe_until_seen(handler, [capture])
        stop = threading.Event()
        trickled = [0]

        def trickle() -> None:
            while not stop.wait(0.005):
                emit(handler, "trickle", "trickle %d", trickled[0], level=logging.INFO)
                trickled[0] += 1

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            assert poll_until(lambda: capture.count("trickle") > 0), "the trickle never reached the subscriber"
            stopper = threading.Thread(target=lambda: broker.stop(drain_timeout=5), daemon=True)
            stopper.start()
            assert poll_until(lambda: broker.draining, timeout=2)
            time.sleep(0.3)  # a duration: trickle on into the drain (nothing shows when the proxies have ended)
        finally:
            stop.set()
            thread.join(5)
        stopper.join(10)
        assert not stopper.is_alive(), "stop() did not return"
        assert broker.drained > 0
        assert handler.stats["dropped"] == 0
        assert poll_until(lambda: capture.count("trickle") >= trickled[0], timeout=5)
        assert capture.count("trickle") == trickled[0] > 0
        assert listener.stats["gaps"] == 0, listener.stats
