"""Federation with CURVE: a downstream broker subscribes to a CURVE upstream with its own client key."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import fabric
from broker import Broker, ConfigError
from fabric.curve import load_key_pair
from tests.helpers.broker import auth_refused, records_received
from tests.helpers.capture import PROBE, Capture, emit, probe_until
from tests.helpers.keys import KeySet
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(60)


def test_records_cross_two_start_curve_brokers(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
) -> None:
    """Producer -> upstream (CURVE) -> downstream (CURVE, registered as a subscriber upstream) -> subscriber."""
    upstream = start_curve_broker()
    link = curve_keys.pair("downstream")
    curve_keys.allow(curve_keys.subscribers, link)
    downstream = start_curve_broker(
        upstream=(upstream.endpoints["egress"],),
        curve_client_key=str(link),
        curve_upstream_key=str(curve_keys.broker_public),
    )
    capture = make_capture()
    make_listener(downstream.endpoints["egress"], capture, **curve_keys.client(curve_keys.subscriber))
    handler = make_handler(upstream.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    probe_until(handler, lambda: len(capture.named(PROBE)))
    for i in range(200):
        emit(handler, "sec.data", f"record {i}")
    assert poll_until(lambda: len(capture.named("sec.data")) == 200, timeout=10)
    assert [r.getMessage() for r in capture.named("sec.data")] == [f"record {i}" for i in range(200)]
    assert records_received(downstream, "upstream") >= 200


def test_unregistered_downstream_gets_nothing(
    curve_keys: KeySet,
    start_curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Capture],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A downstream broker whose key the upstream does not list receives 0 records; both sides log it."""
    caplog.set_level(logging.WARNING, logger="logfabric.broker")
    upstream = start_curve_broker()
    downstream = start_curve_broker(
        upstream=(upstream.endpoints["egress"],),
        curve_client_key=str(curve_keys.stranger),
        curve_upstream_key=str(curve_keys.broker_public),
    )
    capture = make_capture()
    make_listener(downstream.endpoints["egress"], capture, **curve_keys.client(curve_keys.subscriber))
    assert poll_until(lambda: auth_refused(upstream, "egress", "unknown_key") >= 1, timeout=10)
    handler = make_handler(upstream.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    for i in range(100):
        emit(handler, "sec.data", f"record {i}")
    assert poll_until(lambda: records_received(upstream, "push") >= 100, timeout=10)
    assert records_received(downstream, "upstream") == 0
    assert len(capture) == 0
    stranger = load_key_pair(curve_keys.stranger)[0].decode()
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"refused CURVE key {stranger}" in m and "on egress" in m for m in messages), messages
    assert any(f"the upstream broker refused this broker's CURVE key {stranger}" in m for m in messages), messages


def test_upstream_keys_come_in_pairs(curve_keys: KeySet) -> None:
    """curve_client_key without curve_upstream_key (or without --upstream) is a configuration error."""
    with pytest.raises(ConfigError, match="curve_upstream_key is missing"):
        Broker(upstream=("tcp://127.0.0.1:1",), curve_client_key=str(curve_keys.producer))
    with pytest.raises(ConfigError, match="none is set"):
        Broker(curve_client_key=str(curve_keys.producer), curve_upstream_key=str(curve_keys.broker_public))
