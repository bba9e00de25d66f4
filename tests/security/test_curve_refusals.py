"""Fault scenario 10: unregistered CURVE keys and plaintext peers get nothing in or out; refusals counted and logged."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import zmq

import fabric
from broker import Broker
from tests.helpers.broker import auth_refused, embedded_metrics, records_received
from tests.helpers.capture import PROBE, Capture, emit, probe_until, send_sentinel
from tests.helpers.keys import KeySet
from tests.helpers.waiting import poll_until, stream_until

pytestmark = pytest.mark.timeout(60)

#: How long a refused peer keeps trying before the test counts what got through.
TRYING = 1.5


def _refused(broker: Broker, role: str, reason: str) -> float:
    """Refusals of ``reason``; for plaintext peers also ``aborted``, their other face.

    A client without CURVE notices the mechanism mismatch as the broker does;
    whichever side acts first decides whether the broker sees a protocol
    error (``plaintext``) or a peer hanging up mid-handshake (``aborted``).
    """
    count = auth_refused(broker, role, reason)
    if reason == "plaintext":
        count += auth_refused(broker, role, "aborted")
    return float(count)


def _logged(message: str, role: str, reason: str) -> bool:
    """Whether a broker log line reports a refusal of ``reason`` (plaintext: or aborted) on ``role``."""
    reasons = (reason, "aborted") if reason == "plaintext" else (reason,)
    return any(f"on {role} ({r})" in message for r in reasons)


def _try_producing(handler: fabric.ZmqHandler, seconds: float = TRYING) -> int:
    """Log records through ``handler`` for ``seconds`` (one every 10 ms); return how many were logged."""
    return stream_until(lambda n: emit(handler, "sec.intruder", f"forged {n}"), lambda: False, seconds)


@pytest.mark.parametrize("mode", ["push", "pub"])
@pytest.mark.parametrize("who", ["unregistered key", "plaintext"])
def test_refused_producer_gets_zero_records_in(
    mode: str,
    who: str,
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unregistered key or no CURVE at a producer: 0 records taken in or delivered; refusal counted and logged."""
    caplog.set_level(logging.WARNING, logger="logfabric.broker")
    broker = start_curve_broker()
    role, reason = f"{mode}_ingest", ("unknown_key" if who == "unregistered key" else "plaintext")
    capture = make_capture()
    make_listener(broker.endpoints["egress"], capture, **curve_keys.client(curve_keys.subscriber))
    good = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    probe_until(good, lambda: len(capture.named(PROBE)))  # the subscriber is attached and hears everything
    before = records_received(broker, mode)  # the probes, in push mode
    options = curve_keys.client(curve_keys.stranger) if reason == "unknown_key" else {}
    intruder = make_handler(broker.endpoints[role], mode=mode, **options)
    logged = _try_producing(intruder)
    assert poll_until(lambda: _refused(broker, role, reason) >= 1, timeout=10)
    assert logged > 50
    assert records_received(broker, mode) == before  # nothing crossed the ingest
    messages = [r.getMessage() for r in caplog.records if r.name == "logfabric.broker"]
    assert any(_logged(m, role, reason) for m in messages), messages
    if reason == "unknown_key":  # the log names the refused key, so an operator can find its owner
        stranger = fabric.curve.load_key_pair(curve_keys.stranger)[0].decode()
        assert any(stranger in m for m in messages)
    # the legitimate producer is unaffected; its record, sent after the intruder's, is the sentinel
    emit(good, "sec.data", "still here")
    assert poll_until(lambda: len(capture.named("sec.data")) == 1, timeout=10)
    assert capture.named("sec.intruder") == []


@pytest.mark.parametrize("who", ["unregistered key", "plaintext", "producer key"])
@pytest.mark.parametrize("where", ["egress", "pipeline"])
def test_refused_subscriber_gets_zero_records_out(
    who: str,
    where: str,
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At the egress and the pipeline, an unregistered key, a plaintext peer or a producer's key receives 0 records."""
    caplog.set_level(logging.WARNING, logger="logfabric.broker")
    broker = start_curve_broker(pipeline="tcp://127.0.0.1:*")
    reason = "plaintext" if who == "plaintext" else "unknown_key"
    key = {"unregistered key": curve_keys.stranger, "producer key": curve_keys.producer}.get(who)
    mode = "sub" if where == "egress" else "pull"
    intruder_capture = make_capture()
    intruder = make_listener(
        broker.endpoints[where], intruder_capture, mode=mode, **(curve_keys.client(key) if key else {})
    )
    assert poll_until(lambda: _refused(broker, where, reason) >= 1, timeout=10)
    # a registered subscriber proves records flow while the intruder stays empty
    capture = make_capture()
    make_listener(broker.endpoints["egress"], capture, **curve_keys.client(curve_keys.subscriber))
    good = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    probe_until(good, lambda: len(capture.named(PROBE)))
    for i in range(200):
        emit(good, "sec.data", f"record {i}")
    assert poll_until(lambda: len(capture.named("sec.data")) == 200, timeout=10)
    send_sentinel(good, [capture])  # what the broker sent with the 200 has reached whoever was connected
    assert len(intruder_capture) == 0
    assert intruder.stats["received"] == 0 and intruder.stats["malformed"] == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "logfabric.broker"]
    assert any(_logged(m, where, reason) for m in messages), messages


def test_subscriber_key_cannot_produce(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
) -> None:
    """The allow-lists are separate: a subscriber's key is refused at both ingests."""
    broker = start_curve_broker()
    for mode in ("push", "pub"):
        role = f"{mode}_ingest"
        handler = make_handler(broker.endpoints[role], mode=mode, **curve_keys.client(curve_keys.subscriber))
        _try_producing(handler, 0.3)
        assert poll_until(lambda r=role: auth_refused(broker, r, "unknown_key") >= 1, timeout=10)
        assert records_received(broker, mode) == 0


def test_wrong_server_key_is_a_bad_handshake(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
) -> None:
    """A registered producer holding another server's public key cannot complete the handshake: counted, 0 taken in."""
    broker = start_curve_broker()
    handler = make_handler(
        broker.endpoints["push_ingest"],
        curve_server_key=str(curve_keys.other_broker_public),
        curve_client_key=str(curve_keys.producer),
    )
    _try_producing(handler, 0.5)
    assert poll_until(lambda: auth_refused(broker, "push_ingest", "bad_handshake") >= 1, timeout=10)
    assert records_received(broker, "push") == 0


def test_refusal_log_is_rate_limited(
    start_curve_broker: Callable[..., Broker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ten plaintext peers in a burst are all counted, but logged once (with a count of the rest later)."""
    caplog.set_level(logging.WARNING, logger="logfabric.broker")
    broker = start_curve_broker()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        for _ in range(10):
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, 10_000)  # one handshake each
            sock.connect(broker.endpoints["push_ingest"])
        assert poll_until(lambda: _refused(broker, "push_ingest", "plaintext") >= 10, timeout=10)
    finally:
        ctx.destroy(linger=0)
    for reason in ("plaintext", "aborted"):
        lines = [r for r in caplog.records if f"on push_ingest ({reason})" in r.getMessage()]
        assert len(lines) <= 1
    assert any(_logged(r.getMessage(), "push_ingest", "plaintext") for r in caplog.records)


def test_refusals_are_also_in_the_handshake_metrics(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
) -> None:
    """An unknown key also shows in the existing logfabric_broker_malformed_total{reason="auth"}."""
    broker = start_curve_broker()
    handler = make_handler(broker.endpoints["push_ingest"], **curve_keys.client(curve_keys.stranger))
    _try_producing(handler, 0.2)
    malformed = "logfabric_broker_malformed_total"
    assert poll_until(lambda: embedded_metrics(broker).total(malformed, reason="auth", socket="push_ingest") >= 1)


def test_garbage_bytes_at_a_curve_ingest(start_curve_broker: Callable[..., Broker]) -> None:
    """Non-ZMTP bytes at a CURVE ingest are hung up on and forward nothing (as without CURVE)."""
    import socket

    broker = start_curve_broker()
    host, _, port = broker.endpoints["push_ingest"].removeprefix("tcp://").rpartition(":")
    hung_up = False
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 8)
        try:
            while raw.recv(4096):
                pass
            hung_up = True
        except ConnectionResetError:
            hung_up = True
        except TimeoutError:
            hung_up = False
    assert hung_up
    assert records_received(broker, "push") == 0
    assert broker.ready


@pytest.mark.parametrize("who", ["unregistered key", "wrong server key", "plaintext broker"])
def test_refused_subscription_says_so(
    who: str,
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """subscribe() (and so tail) warns on logfabric.curve why the broker refused it, instead of staying silent."""
    caplog.set_level(logging.WARNING, logger="logfabric.curve")
    if who == "plaintext broker":
        broker = start_curve_broker(curve_secret_key=None, curve_producers=None, curve_subscribers=None)
    else:
        broker = start_curve_broker()
    options = curve_keys.client(curve_keys.stranger if who == "unregistered key" else curve_keys.subscriber)
    if who == "wrong server key":
        options["curve_server_key"] = str(curve_keys.other_broker_public)
    # A broker that cannot decrypt hangs up without a reason; against a plaintext broker,
    # whichever side notices the mismatch first decides which of the two the client sees.
    expected = {
        "unregistered key": ("refused this subscriber's CURVE key",),
        "wrong server key": ("hung up during the CURVE handshake",),
        "plaintext broker": ("does not use CURVE", "hung up during the CURVE handshake"),
    }[who]
    with fabric.subscribe(broker.endpoints["egress"], timeout=3.0, **options) as records:
        assert list(records) == []  # ends after 3 s without a record; the refusal is reported meanwhile
    messages = [r.getMessage() for r in caplog.records if r.name == "logfabric.curve"]
    assert any(e in m and broker.endpoints["egress"] in m for m in messages for e in expected), messages
    assert len(messages) == len(set(messages))  # rate-limited: clients retry, each warning is given once
