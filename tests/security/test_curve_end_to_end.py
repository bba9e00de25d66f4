"""Records cross a CURVE broker end to end (push, pub, listener, subscribe(), pipeline), encrypted on the wire."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

import fabric
from broker import Broker
from tests.helpers.broker import auth_refused, records_received
from tests.helpers.capture import PROBE, Capture, emit, probe_until
from tests.helpers.keys import KeySet
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(60)

COUNT = 500


def _messages(capture: Any) -> list[str]:
    return [r.getMessage() for r in capture.records if r.name == "sec.data"]


@pytest.mark.parametrize("mode", ["push", "pub"])
def test_records_cross_with_curve(
    mode: str,
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
) -> None:
    """Every record of a registered producer (push or pub) reaches a registered subscriber through a CURVE broker."""
    broker = start_curve_broker()
    capture = make_capture()
    listener = make_listener(broker.endpoints["egress"], capture, **curve_keys.client(curve_keys.subscriber))
    handler = make_handler(broker.endpoints[f"{mode}_ingest"], mode=mode, **curve_keys.client(curve_keys.producer))
    probe_until(handler, lambda: len(capture.named(PROBE)))
    for i in range(COUNT):
        emit(handler, "sec.data", f"record {i}")
    assert poll_until(lambda: len(_messages(capture)) >= COUNT, timeout=15)
    assert _messages(capture) == [f"record {i}" for i in range(COUNT)]
    assert listener.stats["malformed"] == 0 and listener.stats["gaps"] == 0
    assert handler.stats["dropped"] == 0
    assert auth_refused(broker, f"{mode}_ingest", "unknown_key") == 0
    assert auth_refused(broker, "egress", "unknown_key") == 0


def test_subscribe_iterator_with_curve(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_subscription: Callable[..., fabric.Subscription],
) -> None:
    """subscribe() with a registered subscriber key yields the records of a registered producer."""
    broker = start_curve_broker()
    records = make_subscription(broker.endpoints["egress"], timeout=15.0, **curve_keys.client(curve_keys.subscriber))
    got: list[tuple[str, str]] = []

    def iterate() -> None:  # ends after 15 s without a record, or when 50 data records arrived
        for record in records:
            got.append((record.name, record.getMessage()))
            if sum(name == "sec.data" for name, _ in got) == 50:
                return

    reader = threading.Thread(target=iterate, daemon=True)
    reader.start()
    handler = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    probe_until(handler, lambda: sum(name == PROBE for name, _ in list(got)))
    for i in range(50):
        emit(handler, "sec.data", f"record {i}")
    reader.join(20)
    assert not reader.is_alive()
    assert [m for name, m in got if name == "sec.data"] == [f"record {i}" for i in range(50)]
    assert records.stats["malformed"] == 0


def test_pipeline_consumer_with_a_subscriber_key(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
) -> None:
    """The pipeline is a CURVE server of the subscribers' list: a subscriber key pulls every record."""
    broker = start_curve_broker(pipeline="tcp://127.0.0.1:*")
    capture = make_capture()
    make_listener(broker.endpoints["pipeline"], capture, mode="pull", **curve_keys.client(curve_keys.subscriber))
    handler = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    probe_until(handler, lambda: len(capture.named(PROBE)))
    for i in range(100):
        emit(handler, "sec.data", f"record {i}")
    assert poll_until(lambda: len(_messages(capture)) >= 100, timeout=10)
    assert _messages(capture) == [f"record {i}" for i in range(100)]


class _Tap:
    """A TCP relay on 127.0.0.1 that keeps every byte the client sends to the server."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("tcp://").rpartition(":")
        self.target = (host, int(port))
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.endpoint = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.seen = bytearray()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, keep: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    return
                if keep:
                    with self._lock:
                        self.seen += data
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        for s in self._sockets:
            s.close()


@pytest.fixture
def tap() -> Iterator[Callable[[str], _Tap]]:
    """TCP relays that record what crosses them; closed at teardown."""
    made: list[_Tap] = []

    def make(target: str) -> _Tap:
        relay = _Tap(target)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.close()


@pytest.mark.parametrize("curve", [True, False], ids=["curve", "plaintext"])
def test_the_wire_is_encrypted(
    curve: bool,
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
    tap: Callable[[str], _Tap],
) -> None:
    """With CURVE a record's text never appears in the producer's TCP bytes; without it (the control), it does."""
    if curve:
        broker = start_curve_broker()
        producer, subscriber = curve_keys.client(curve_keys.producer), curve_keys.client(curve_keys.subscriber)
    else:
        broker = start_curve_broker(curve_secret_key=None, curve_producers=None, curve_subscribers=None)
        producer, subscriber = {}, {}
    relay = tap(broker.endpoints["push_ingest"])
    capture = make_capture()
    make_listener(broker.endpoints["egress"], capture, **subscriber)
    handler = make_handler(relay.endpoint, **producer)
    probe_until(handler, lambda: len(capture.named(PROBE)))
    secret = "card 4111-1111-1111-1111 for ada@example.com"
    emit(handler, "sec.data", secret)
    assert poll_until(lambda: secret in _messages(capture), timeout=10)
    with relay._lock:
        seen = bytes(relay.seen)
    assert len(seen) > 100
    if curve:
        assert secret.encode() not in seen and b"sec.data" not in seen
        assert b"CURVE" in seen[:64]  # the ZMTP greeting names the mechanism
    else:
        assert secret.encode() in seen


def test_curve_client_to_a_plaintext_broker_gets_nothing(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
) -> None:
    """Keys are never silently dropped: a CURVE producer cannot talk to a plaintext broker (0 records taken in)."""
    broker = start_curve_broker(curve_secret_key=None, curve_producers=None, curve_subscribers=None)
    handler = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    for i in range(20):
        emit(handler, "sec.data", f"record {i}")
    # the mismatch shows as a protocol error, or as the CURVE client hanging up first ("other")
    assert poll_until(lambda: sum(broker.refusals("push_ingest").values()) >= 1, timeout=10)
    assert records_received(broker, "push") == 0


def test_zmq_has_curve() -> None:
    """The bundled libzmq supports CURVE (everything above depends on it)."""
    assert zmq.has("curve")


def test_replicas_sharing_a_key_behind_dns(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
) -> None:
    """Two brokers with one key (a StatefulSet's replicas) and one dns+tcp:// subscriber: records from both arrive."""
    port = None
    brokers = []
    for address in ("127.0.0.2", "127.0.0.3"):
        egress = f"tcp://{address}:{port}" if port else f"tcp://{address}:*"
        try:
            broker = start_curve_broker(egress=egress)
        except ValueError as exc:  # pragma: no cover - a loopback without 127.0.0.2-3
            pytest.skip(f"cannot bind {egress}: {exc}")
        port = int(broker.endpoints["egress"].rpartition(":")[2])
        brokers.append(broker)
    capture = make_capture()
    make_listener(
        f"dns+tcp://logfabric-headless.test:{port}",
        capture,
        resolver=lambda host, p: ["127.0.0.2", "127.0.0.3"],
        **curve_keys.client(curve_keys.subscriber),
    )
    for i, broker in enumerate(brokers):
        handler = make_handler(
            broker.endpoints["push_ingest"], service=f"via-{i}", **curve_keys.client(curve_keys.producer)
        )
        probe_until(handler, lambda: len(capture.named(PROBE)))
        emit(handler, "sec.data", f"from broker {i}")
    assert poll_until(lambda: len(capture.named("sec.data")) == 2, timeout=10)
    assert sorted(r.getMessage() for r in capture.named("sec.data")) == ["from broker 0", "from broker 1"]
