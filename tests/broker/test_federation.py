"""Federation: a broker subscribing to another broker's egress with --upstream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(90)

Factory = Callable[..., Any]


def chain(broker_process: Factory, **b2_options: Any) -> tuple[Any, Any]:
    """B1, and B2 with ``--upstream`` B1's egress; both ready."""
    b1 = broker_process()
    b2 = broker_process(upstream=[b1.egress], **b2_options)
    return b1, b2


class TestChainedBrokerProcesses:
    """Two broker processes, B2 --upstream B1's egress."""

    def test_record_pushed_to_b1_reaches_a_subscriber_of_b2(
        self, broker_process: Factory, broker_listener: Factory, broker_handler: Factory, broker_tools: SimpleNamespace
    ) -> None:
        """Records pushed into B1 arrive, all of them and in order, at a subscriber of B2."""
        b1, b2 = chain(broker_process)
        listener, capture = broker_listener(b2.egress)
        handler = broker_handler(b1.push_ingest, service="far")
        broker_tools.probe_until_seen(handler, [capture], timeout=15)
        for i in range(200):
            broker_tools.emit(handler, "far.away", logging.INFO, "record %d", i)
        assert broker_tools.wait_until(lambda: capture.count("far.away") >= 200, timeout=10)
        broker_tools.settle([capture], quiet=0.3)
        assert capture.count("far.away") == 200
        assert capture.messages[-200:] == [f"far/far.away/record {i}" for i in range(200)]
        assert listener.stats["gaps"] == 0, listener.stats
        m2 = b2.metrics()
        assert m2.get("logfabric_broker_records_received_total", ingest="upstream") == 200 + capture.count("probe")
        assert m2.get("logfabric_broker_connections", socket="upstream") == 1

    def test_filters_propagate_upstream(
        self, broker_process: Factory, broker_listener: Factory, broker_handler: Factory, broker_tools: SimpleNamespace
    ) -> None:
        """A loggers=["a"] subscriber on B2 gets only 'a' records, and B1 never even sends B2 the others."""
        b1, b2 = chain(broker_process)
        listener, capture = broker_listener(b2.egress, loggers=["a"])
        handler = broker_handler(b1.push_ingest, service="far")
        probes = broker_tools.probe_until_seen(handler, [capture], name="a.probe", timeout=15)
        names = ("a", "a.child", "b", "ab")
        for i in range(30):
            for name in names:
                broker_tools.emit(handler, name, logging.INFO, "%s %d", name, i)
        assert broker_tools.wait_until(lambda: capture.count() >= 60, timeout=10)
        broker_tools.settle([capture], quiet=0.3)
        assert capture.count("a") == 30 and capture.count("a.child") == 30
        assert capture.names_seen() == {"a", "a.child", "a.probe"}
        assert listener.stats["filtered"] == 0 and listener.stats["gaps"] == 0, listener.stats

        crossed = 60 + capture.count("a.probe")  # what B2's subscription asked B1 for
        m1, m2 = b1.metrics(), b2.metrics()
        assert m1.get("logfabric_broker_records_received_total", ingest="push") == 4 * 30 + probes
        assert m1.get("logfabric_broker_records_sent_total", egress="subscribers") == crossed, (
            "B1 sent unwanted records"
        )
        assert m2.get("logfabric_broker_records_received_total", ingest="upstream") == crossed

    def test_b2_merges_its_own_producers_with_upstream(
        self, broker_process: Factory, broker_listener: Factory, broker_handler: Factory, broker_tools: SimpleNamespace
    ) -> None:
        """A subscriber of B2 gets B2's own producers and B1's, each exactly once."""
        b1, b2 = chain(broker_process)
        listener, capture = broker_listener(b2.egress)
        far = broker_handler(b1.push_ingest, service="far")
        near = broker_handler(b2.pub_ingest, mode="pub", service="near")
        assert near.wait_ready(5)
        broker_tools.probe_until_seen(far, [capture], timeout=15)
        for i in range(100):
            broker_tools.emit(far, "merged", logging.WARNING, "far %d", i)
            broker_tools.emit(near, "merged", logging.WARNING, "near %d", i)
        assert broker_tools.wait_until(lambda: capture.count("merged") >= 200, timeout=10)
        broker_tools.settle([capture], quiet=0.3)
        assert (capture.by_service("far"), capture.by_service("near")) == (100, 100)
        assert listener.stats["gaps"] == 0, listener.stats

    @pytest.mark.slow
    def test_b2_resubscribes_when_b1_comes_back(
        self,
        broker_process: Factory,
        broker_listener: Factory,
        broker_handler: Factory,
        broker_tools: SimpleNamespace,
        tmp_path: Path,
    ) -> None:
        """After B1 is killed and restarted on the same ports, B2 reconnects and its filter applies again."""
        b1, b2 = chain(broker_process)
        _, capture = broker_listener(b2.egress, loggers=["a"])
        broker_tools.probe_until_seen(broker_handler(b1.push_ingest), [capture], name="a.probe", timeout=15)
        b1.kill()
        seen: list[Any] = []
        assert broker_tools.wait_until(
            lambda: seen.append(b2.metrics().get("logfabric_broker_connections", socket="upstream")) or seen[-1] == 0,
            timeout=10,
        ), seen[-5:]
        again = broker_process(ports=b1.ports)
        handler = broker_handler(again.push_ingest, service="again")
        broker_tools.probe_until_seen(handler, [capture], name="a.probe", timeout=15)
        for i in range(20):
            broker_tools.emit(handler, "a", logging.INFO, "a %d", i)
            broker_tools.emit(handler, "b", logging.INFO, "b %d", i)
        assert broker_tools.wait_until(lambda: capture.by_service("again") >= 20, timeout=10)
        broker_tools.settle([capture], quiet=0.3)
        assert capture.by_service("again") == 20 and capture.count("b") == 0
        crossed = 20 + capture.services[("again", "a.probe")]
        sent = again.metrics().get("logfabric_broker_records_sent_total", egress="subscribers")
        assert sent == crossed, "the restarted B1 sent records B2 did not subscribe to"


class TestEmbeddedFederation:
    """Upstream between embedded brokers, and the pipeline's view of upstream records."""

    def test_pipeline_of_b2_gets_upstream_records(
        self, broker_embedded: Factory, broker_listener: Factory, broker_handler: Factory, broker_tools: SimpleNamespace
    ) -> None:
        """B2's pipeline subscribes to everything, so records pushed into B1 reach B2's pipeline consumer."""
        b1 = broker_embedded()
        b2 = broker_embedded(upstream=(b1.endpoints["egress"],), pipeline="tcp://127.0.0.1:*")
        _, capture = broker_listener(b2.endpoints["pipeline"], mode="pull")
        handler = broker_handler(b1.endpoints["push_ingest"], service="far")
        broker_tools.probe_until_seen(handler, [capture], timeout=15)
        for i in range(50):
            broker_tools.emit(handler, "deep", logging.DEBUG, "record %d", i)
        assert broker_tools.wait_until(lambda: capture.count("deep") >= 50, timeout=10)
        broker_tools.settle([capture], quiet=0.3)
        assert capture.count("deep") == 50
        assert b2.statistics()["upstream"][0] >= 50  # one frame per record
        assert b2.connections("upstream") == 1
