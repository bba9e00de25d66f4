"""Federation with CURVE: a downstream broker subscribes to a CURVE upstream with its own client key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

import fabric
from broker import Broker, ConfigError
from fabric.curve import load_key_pair

pytestmark = pytest.mark.timeout(60)


def test_records_cross_two_curve_brokers(
    curve_keys: Any,
    curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Any],
    sec: Any,
) -> None:
    """Producer -> upstream (CURVE) -> downstream (CURVE, registered as a subscriber upstream) -> subscriber."""
    upstream = curve_broker()
    link = curve_keys.pair("downstream")
    curve_keys.allow(curve_keys.subscribers, link)
    downstream = curve_broker(
        upstream=(upstream.endpoints["egress"],),
        curve_client_key=str(link),
        curve_upstream_key=str(curve_keys.broker_public),
    )
    capture = make_capture()
    make_listener(downstream.endpoints["egress"], capture, **curve_keys.client(curve_keys.subscriber))
    handler = make_handler(upstream.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    sec.probe(handler, lambda: len(capture.named(sec.PROBE)))
    for i in range(200):
        sec.emit(handler, "sec.data", f"record {i}")
    assert sec.wait(lambda: len(capture.named("sec.data")) == 200, timeout=10)
    assert [r.getMessage() for r in capture.named("sec.data")] == [f"record {i}" for i in range(200)]
    assert sec.received(downstream, "upstream") >= 200


def test_unregistered_downstream_gets_nothing(
    curve_keys: Any,
    curve_broker: Callable[..., Broker],
    make_handler: Callable[..., fabric.ZmqHandler],
    make_listener: Callable[..., fabric.ZmqListener],
    make_capture: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    sec: Any,
) -> None:
    """A downstream broker whose key the upstream does not list receives 0 records; both sides log it."""
    caplog.set_level(logging.WARNING, logger="logfabric.broker")
    upstream = curve_broker()
    downstream = curve_broker(
        upstream=(upstream.endpoints["egress"],),
        curve_client_key=str(curve_keys.stranger),
        curve_upstream_key=str(curve_keys.broker_public),
    )
    capture = make_capture()
    make_listener(downstream.endpoints["egress"], capture, **curve_keys.client(curve_keys.subscriber))
    assert sec.wait(lambda: sec.refused(upstream, "egress", "unknown_key") >= 1, timeout=10)
    handler = make_handler(upstream.endpoints["push_ingest"], **curve_keys.client(curve_keys.producer))
    for i in range(100):
        sec.emit(handler, "sec.data", f"record {i}")
    assert sec.wait(lambda: sec.received(upstream, "push") >= 100, timeout=10)
    assert sec.received(downstream, "upstream") == 0
    assert len(capture) == 0
    stranger = load_key_pair(curve_keys.stranger)[0].decode()
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"refused CURVE key {stranger}" in m and "on egress" in m for m in messages), messages
    assert any(f"the upstream broker refused this broker's CURVE key {stranger}" in m for m in messages), messages


def test_upstream_keys_come_in_pairs(curve_keys: Any) -> None:
    """curve_client_key without curve_upstream_key (or without --upstream) is a configuration error."""
    with pytest.raises(ConfigError, match="curve_upstream_key is missing"):
        Broker(upstream=("tcp://127.0.0.1:1",), curve_client_key=str(curve_keys.producer))
    with pytest.raises(ConfigError, match="none is set"):
        Broker(curve_client_key=str(curve_keys.producer), curve_upstream_key=str(curve_keys.broker_public))
