"""Federation: a broker subscribing to another broker's egress with --upstream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fabric
from broker import Broker
from tests.helpers.broker import BrokerProc
from tests.helpers.capture import Capture, emit, probe_until_seen, send_sentinel
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(90)


def chain(start_broker: Callable[..., BrokerProc], **b2_options: Any) -> tuple[BrokerProc, BrokerProc]:
    """B1, and B2 with ``--upstream`` B1's egress; both ready."""
    b1 = start_broker()
    b2 = start_broker(upstream=[b1.egress], **b2_options)
    return b1, b2


class TestChainedBrokerProcesses:
    """Two broker processes, B2 --upstream B1's egress."""

    def test_record_pushed_to_b1_reaches_a_subscriber_of_b2(
        self,
        start_broker: Callable[..., BrokerProc],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
    ) -> None:
        """Records pushed into B1 arrive, all of them and in order, at a subscriber of B2."""
        b1, b2 = chain(start_broker)
        listener, capture = capturing_listener(b2.egress)
        handler = make_handler(b1.push_ingest, service="far")
        probe_until_seen(handler, [capture], timeout=15)
        for i in range(200):
            emit(handler, "far.away", "record %d", i, level=logging.INFO)
        assert poll_until(lambda: capture.count("far.away") >= 200, timeout=10)
        send_sentinel(handler, [capture])
        assert capture.count("far.away") == 200
        assert capture.messages()[-201:] == [*(f"far/far.away/record {i}" for i in range(200)), "far/probe/sentinel"]
        assert listener.stats["gaps"] == 0, listener.stats
        m2 = b2.metrics()
        assert m2.get("logfabric_broker_records_received_total", ingest="upstream") == 200 + capture.count("probe")
        assert m2.get("logfabric_broker_connections", socket="upstream") == 1

    def test_filters_propagate_upstream(
        self,
        start_broker: Callable[..., BrokerProc],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
    ) -> None:
        """A loggers=["a"] subscriber on B2 gets only 'a' records, and B1 never even sends B2 the others."""
        b1, b2 = chain(start_broker)
        listener, capture = capturing_listener(b2.egress, loggers=["a"])
        handler = make_handler(b1.push_ingest, service="far")
        probes = probe_until_seen(handler, [capture], name="a.probe", timeout=15)
        names = ("a", "a.child", "b", "ab")
        for i in range(30):
            for name in names:
                emit(handler, name, "%s %d", name, i, level=logging.INFO)
        assert poll_until(lambda: capture.count() >= 60, timeout=10)
        send_sentinel(handler, [capture], name="a.probe")
        assert capture.count("a") == 30 and capture.count("a.child") == 30
        assert capture.names_seen() == {"a", "a.child", "a.probe"}
        assert listener.stats["filtered"] == 0 and listener.stats["gaps"] == 0, listener.stats

        crossed = 60 + capture.count("a.probe")  # what B2's subscription asked B1 for (probes and sentinel too)
        m1, m2 = b1.metrics(), b2.metrics()
        assert m1.get("logfabric_broker_records_received_total", ingest="push") == 4 * 30 + probes + 1
        assert m1.get("logfabric_broker_records_sent_total", egress="subscribers") == crossed, (
            "B1 sent unwanted records"
        )
        assert m2.get("logfabric_broker_records_received_total", ingest="upstream") == crossed

    def test_b2_merges_its_own_producers_with_upstream(
        self,
        start_broker: Callable[..., BrokerProc],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
    ) -> None:
        """A subscriber of B2 gets B2's own producers and B1's, each exactly once."""
        b1, b2 = chain(start_broker)
        listener, capture = capturing_listener(b2.egress)
        far = make_handler(b1.push_ingest, service="far")
        near = make_handler(b2.pub_ingest, mode="pub", service="near")
        assert near.wait_ready(5)
        probe_until_seen(far, [capture], timeout=15)
        for i in range(100):
            emit(far, "merged", "far %d", i, level=logging.WARNING)
            emit(near, "merged", "near %d", i, level=logging.WARNING)
        assert poll_until(lambda: capture.count("merged") >= 200, timeout=10)
        send_sentinel(far, [capture])
        send_sentinel(near, [capture])
        assert (capture.by_service("far"), capture.by_service("near")) == (100, 100)
        assert listener.stats["gaps"] == 0, listener.stats

    @pytest.mark.slow
    def test_b2_resubscribes_when_b1_comes_back(
        self,
        start_broker: Callable[..., BrokerProc],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
        tmp_path: Path,
    ) -> None:
        """After B1 is killed and restarted on the same ports, B2 reconnects and its filter applies again."""
        b1, b2 = chain(start_broker)
        _, capture = capturing_listener(b2.egress, loggers=["a"])
        probe_until_seen(make_handler(b1.push_ingest), [capture], name="a.probe", timeout=15)
        b1.kill()
        seen: list[Any] = []
        assert poll_until(
            lambda: seen.append(b2.metrics().get("logfabric_broker_connections", socket="upstream")) or seen[-1] == 0,
            timeout=10,
        ), seen[-5:]
        again = start_broker(ports=b1.ports)
        handler = make_handler(again.push_ingest, service="again")
        probe_until_seen(handler, [capture], name="a.probe", timeout=15)
        for i in range(20):
            emit(handler, "a", "a %d", i, level=logging.INFO)
            emit(handler, "b", "b %d", i, level=logging.INFO)
        assert poll_until(lambda: capture.by_service("again") >= 20, timeout=10)
        send_sentinel(handler, [capture], name="a.probe")
        assert capture.by_service("again") == 20 and capture.count("b") == 0
        crossed = 20 + capture.by_service("again", "a.probe")
        sent = again.metrics().get("logfabric_broker_records_sent_total", egress="subscribers")
        assert sent == crossed, "the restarted B1 sent records B2 did not subscribe to"


class TestEmbeddedFederation:
    """Upstream between embedded brokers, and the pipeline's view of upstream records."""

    def test_pipeline_of_b2_gets_upstream_records(
        self,
        start_embedded_broker: Callable[..., Broker],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
    ) -> None:
        """B2's pipeline subscribes to everything, so records pushed into B1 reach B2's pipeline consumer."""
        b1 = start_embedded_broker()
        b2 = start_embedded_broker(upstream=(b1.endpoints["egress"],), pipeline="tcp://127.0.0.1:*")
        _, capture = capturing_listener(b2.endpoints["pipeline"], mode="pull")
        handler = make_handler(b1.endpoints["push_ingest"], service="far")
        probe_until_seen(handler, [capture], timeout=15)
        for i in range(50):
            emit(handler, "deep", "record %d", i, level=logging.DEBUG)
        assert poll_until(lambda: capture.count("deep") >= 50, timeout=10)
        send_sentinel(handler, [capture])
        assert capture.count("deep") == 50
        assert b2.statistics()["upstream"][0] >= 50  # one frame per record
        assert b2.connections("upstream") == 1
