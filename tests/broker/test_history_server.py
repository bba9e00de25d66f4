"""The broker's history endpoint, spoken to directly: pages, cursors, filters, ranges, errors, metrics.

Embedded brokers on 127.0.0.1 with a real store in a temporary directory and a
real DEALER socket; every wait is bounded and every socket closed with linger 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

import fabric
from broker import Broker
from fabric._history_wire import PAGE_BYTES, PAGE_RECORDS
from tests.broker.history_kit import ask, dealers, messages, produce, query
from tests.helpers.broker import embedded_brokers, embedded_metrics
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def make_broker() -> Iterator[Callable[..., Broker]]:
    """Embedded brokers, stopped at the end (no drain)."""
    with embedded_brokers(0.0) as make:
        yield make


@pytest.fixture
def history_broker(make_broker: Callable[..., Broker], tmp_path: Path) -> Broker:
    """A broker with a store and a history endpoint."""
    return make_broker(store=str(tmp_path / "store"), history="tcp://127.0.0.1:*")


@pytest.fixture
def dealer() -> Iterator[Callable[[str], zmq.Socket[bytes]]]:
    """``dealer(endpoint)``: a connected DEALER, closed with linger 0 at the end."""
    with dealers() as make:
        yield make


class TestQueries:
    """What a query returns: exactly the matching stored records, in stored order."""

    def test_newest_n_of_one_service_and_level_in_order(self, history_broker: Broker, dealer: Any) -> None:
        """last=100 with a service and a level: exactly the newest 100 matches, oldest first."""
        produce(
            history_broker,
            [
                ("svc-a", "app.db", logging.ERROR, 300),
                ("svc-b", "app.db", logging.ERROR, 300),
                ("svc-a", "app.http", logging.INFO, 300),
            ],
        )
        sock = dealer(history_broker.endpoints["history"])
        got, _ = query(sock, last=100, services=["svc-a"], level=logging.ERROR)
        assert messages(got) == [f"svc-a app.db {i}" for i in range(200, 300)]
        times = [t for t, _ in got]
        assert times == sorted(times)

    def test_logger_prefix_matches_descendants_not_siblings(self, history_broker: Broker, dealer: Any) -> None:
        """loggers=["app.db"] takes app.db and app.db.pool, not app.dbx."""
        produce(history_broker, [("s", "app.db", 20, 5), ("s", "app.db.pool", 20, 5), ("s", "app.dbx", 20, 5)])
        got, _ = query(dealer(history_broker.endpoints["history"]), loggers=["app.db"])
        assert sorted({m.rsplit(" ", 1)[0] for m in messages(got)}) == ["s app.db", "s app.db.pool"]
        assert len(got) == 10

    def test_since_and_until_are_exact_on_stored_time(self, history_broker: Broker, dealer: Any) -> None:
        """since is inclusive and until exclusive, at the nanosecond of the stored time."""
        produce(history_broker, [("s", "a", 20, 500)])
        sock = dealer(history_broker.endpoints["history"])
        every, _ = query(sock)
        times = sorted({t for t, _ in every})
        assert len(times) >= 1
        cut = times[len(times) // 2]
        after, _ = query(sock, since=cut)
        before, _ = query(sock, until=cut)
        assert [t for t, _ in after] == [t for t, _ in every if t >= cut]
        assert [t for t, _ in before] == [t for t, _ in every if t < cut]
        assert len(after) + len(before) == len(every) == 500

    def test_pages_are_bounded_and_the_cursor_walks_them(self, history_broker: Broker, dealer: Any) -> None:
        """2,500 records come in pages of at most PAGE_RECORDS, none twice, none missing."""
        produce(history_broker, [("s", "a", 20, 2500)])
        sock = dealer(history_broker.endpoints["history"])
        reply = ask(sock, {"v": 1})
        header = orjson.loads(reply[0])
        assert header["count"] == PAGE_RECORDS and header["end"] is False
        got, pages = query(sock)
        assert messages(got) == [f"s a {i}" for i in range(2500)]
        assert pages == 3

    def test_a_page_stops_at_its_byte_bound(self, history_broker: Broker, dealer: Any) -> None:
        """Records of 100 kB: a page holds about PAGE_BYTES of them, never a whole PAGE_RECORDS."""
        handler = fabric.ZmqHandler(history_broker.endpoints["push_ingest"], service="big")
        for i in range(30):
            handler.handle(logging.makeLogRecord({"name": "big", "levelno": 20, "msg": f"{i} " + "x" * 100_000}))
        handler.close()
        store = history_broker.store
        assert store is not None
        assert poll_until(lambda: store.store.records >= 30, timeout=20)
        reply = ask(dealer(history_broker.endpoints["history"]), {"v": 1})
        header = orjson.loads(reply[0])
        assert 1 <= header["count"] < 30 and header["end"] is False
        assert sum(len(f) for f in reply[2:]) < PAGE_BYTES + 110_000

    def test_sync_waits_for_nothing_when_the_store_is_caught_up(self, history_broker: Broker, dealer: Any) -> None:
        """A sync query on a quiet broker ends at once with what is stored."""
        produce(history_broker, [("s", "a", 20, 10)])
        began = time.monotonic()
        got, _ = query(dealer(history_broker.endpoints["history"]), sync=True)
        assert len(got) == 10
        assert time.monotonic() - began < 1.5


class TestErrors:
    """Requests the broker cannot answer get one error reply that says what to do."""

    def test_a_broker_without_a_store_says_how_to_turn_it_on(
        self, make_broker: Callable[..., Broker], dealer: Any
    ) -> None:
        """--history without --store: error no_store naming --store DIR."""
        broker = make_broker(history="tcp://127.0.0.1:*")
        header = orjson.loads(ask(dealer(broker.endpoints["history"]), {"v": 1, "id": 3})[0])
        assert header["ok"] is False and header["error"] == "no_store" and header["id"] == 3
        assert "--store DIR" in header["message"]

    def test_subscribe_raises_the_same_error(self, make_broker: Callable[..., Broker]) -> None:
        """subscribe(last=...) against a broker without a store raises ConfigError with the broker's words."""
        broker = make_broker(history="tcp://127.0.0.1:*")
        with (
            fabric.subscribe(broker.endpoints["egress"], last=5, history=broker.endpoints["history"]) as records,
            pytest.raises(fabric.ConfigError, match="--store DIR"),
        ):
            next(records)

    def test_refusals_and_answers_are_counted_in_metrics(self, history_broker: Broker, dealer: Any) -> None:
        """/metrics counts requests by outcome and the records sent."""
        produce(history_broker, [("s", "a", 20, 7)])
        sock = dealer(history_broker.endpoints["history"])
        query(sock)
        ask(sock, b"not json")
        ask(sock, {"v": 99})
        metrics = embedded_metrics(history_broker)
        assert metrics.get("logfabric_broker_history_requests_total", outcome="ok") == 1
        assert metrics.get("logfabric_broker_history_requests_total", outcome="malformed") == 1
        assert metrics.get("logfabric_broker_history_requests_total", outcome="version") == 1
        assert metrics.get("logfabric_broker_history_records_sent_total") == 7
        assert metrics.get("logfabric_broker_connections", socket="history") == 1
