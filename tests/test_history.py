"""History for subscribers: subscribe(last=, since=, until=, follow=), ZmqListener(since=), logfabric tail -n,
the switch from history to live under a continuous producer, and three replicas behind dns+tcp://.

Real embedded brokers with a store on 127.0.0.1 (.2 and .3 for the replicas);
every wait is bounded; "nothing more" is a sentinel record, never a sleep.
"""

from __future__ import annotations

import datetime
import json
import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fabric
from broker import Broker
from fabric._history import derive, make_plan, parse_time
from tests.helpers.broker import embedded_brokers
from tests.helpers.net import ROOT, child_env, free_ports
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(180)

ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@pytest.fixture
def make_broker() -> Iterator[Callable[..., Broker]]:
    """Embedded brokers, stopped at the end."""
    with embedded_brokers(0.0) as make:
        yield make


@pytest.fixture
def broker(make_broker: Callable[..., Broker], tmp_path: Path) -> Broker:
    """A broker with a store and a history endpoint."""
    return make_broker(store=str(tmp_path / "store"), history="tcp://127.0.0.1:*")


def log_records(endpoint: str, service: str, plan: list[tuple[str, int, int]], start: int = 0) -> None:
    """Push (logger, level, count) records from ``service``; message ``"<service> <logger> <i>"``."""
    handler = fabric.ZmqHandler(endpoint, service=service)
    try:
        for name, level, count in plan:
            for i in range(start, start + count):
                handler.handle(
                    logging.makeLogRecord(
                        {
                            "name": name,
                            "levelno": level,
                            "levelname": logging.getLevelName(level),
                            "msg": f"{service} {name} {i}",
                        }
                    )
                )
    finally:
        handler.close()


def stored(broker: Broker, count: int) -> None:
    """Wait (bounded) until the store holds ``count`` records."""
    feed = broker.store
    assert feed is not None
    assert poll_until(lambda: feed.store.records >= count, timeout=30), (feed.store.records, count)


def texts(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if not isinstance(r, fabric.GapNotice)]


class TestOptions:
    """Times, derived endpoints and bad combinations, checked before anything opens."""

    def test_times(self) -> None:
        """Durations before now, ISO 8601, epoch seconds and datetimes become nanoseconds."""
        now = 1_000_000.0
        assert parse_time("10m", now) == int((now - 600) * 1e9)
        assert parse_time("1h30m", now) == int((now - 5400) * 1e9)
        assert parse_time(12.5, now) == 12_500_000_000
        moment = datetime.datetime(2026, 12, 8, 10, 0, tzinfo=datetime.UTC)
        assert parse_time("2026-12-08T10:00:00+00:00") == parse_time(moment) == int(moment.timestamp() * 1e9)
        with pytest.raises(ValueError, match="a duration before now such as '10m'"):
            parse_time("yesterday")

    def test_history_endpoint_is_derived_from_the_subscriber_endpoint(self) -> None:
        """Same host, port 5559; dns+tcp stays dns+tcp; ipc needs history= and says so."""
        assert derive(["tcp://broker:5558", "dns+tcp://brokers:5558"]) == (
            "tcp://broker:5559",
            "dns+tcp://brokers:5559",
        )
        with pytest.raises(ValueError, match="pass history="):
            derive(["ipc:///tmp/x"])

    def test_bad_combinations(self) -> None:
        """History needs a connecting SUB; until before since; follow=False without history."""
        kw: dict[str, Any] = {"history": None, "until": None, "last": None}
        with pytest.raises(ValueError, match="mode='sub'"):
            make_plan(["tcp://a:1"], mode="pull", bind=True, since="1m", **kw)
        with pytest.raises(ValueError, match="until must be later than since"):
            make_plan(["tcp://a:1"], mode="sub", bind=False, since="1m", history=None, until="2m", last=None)
        with pytest.raises(ValueError, match="follow=False ends after the history"):
            make_plan(["tcp://a:1"], mode="sub", bind=False, since=None, follow=False, resume=False, **kw)
        assert make_plan(["tcp://a:1"], mode="sub", bind=False, since=None, **kw) is None
        with pytest.raises(ValueError, match="last"):
            fabric.subscribe("tcp://127.0.0.1:1", last=0)


class TestSubscribe:
    """subscribe() with history: exactly what is stored, then live."""

    def test_last_n_without_follow_is_exactly_the_newest_n(self, broker: Broker) -> None:
        """last=100 of one service at ERROR among three services: the newest 100 matches, in order, then the end."""
        for service in ("a", "b", "c"):
            log_records(broker.endpoints["push_ingest"], service, [("app", 40, 400), ("app", 20, 400)])
        stored(broker, 2400)
        with fabric.subscribe(
            broker.endpoints["egress"], history=broker.endpoints["history"], last=100, services=["b"], level="ERROR",
            follow=False, timeout=10,
        ) as records:  # fmt: skip
            got = list(records)
        assert texts(got) == [f"b app {i}" for i in range(300, 400)]
        assert records.stats["gaps"] == 0

    def test_since_and_until_bound_the_history(self, broker: Broker) -> None:
        """Records stored before a cut and after it: since takes the later, until the earlier, exactly."""
        log_records(broker.endpoints["push_ingest"], "s", [("early", 20, 50)])
        stored(broker, 50)
        time.sleep(0.01)  # two distinct store times, so the cut falls between the batches
        cut = time.time()
        time.sleep(0.01)
        log_records(broker.endpoints["push_ingest"], "s", [("late", 20, 50)])
        stored(broker, 100)
        common: dict[str, Any] = {"history": broker.endpoints["history"], "timeout": 10}
        with fabric.subscribe(broker.endpoints["egress"], since=cut, follow=False, **common) as records:
            assert texts(list(records)) == [f"s late {i}" for i in range(50)]
        with fabric.subscribe(broker.endpoints["egress"], since=cut - 3600, until=cut, **common) as records:
            assert texts(list(records)) == [f"s early {i}" for i in range(50)]

    def test_switch_to_live_under_a_continuous_producer(self, broker: Broker) -> None:
        """A producer logs without pause while a subscriber joins with last=500: no duplicate, no gap, no loss."""
        log_records(broker.endpoints["push_ingest"], "p", [("app", 20, 5000)])
        stored(broker, 5000)
        handler = fabric.ZmqHandler(broker.endpoints["push_ingest"], service="p")
        stop = threading.Event()
        sent = [5000]

        def produce() -> None:
            i = 5000
            while not stop.is_set():
                handler.handle(logging.makeLogRecord({"name": "app", "levelno": 20, "msg": f"p app {i}"}))
                i += 1
                if i % 200 == 0:
                    time.sleep(0.002)
            handler.handle(logging.makeLogRecord({"name": "app", "levelno": 20, "msg": "sentinel"}))
            handler.flush()
            sent[0] = i

        thread = threading.Thread(target=produce)
        thread.start()
        got: list[logging.LogRecord] = []
        try:
            time.sleep(0.2)
            with fabric.subscribe(
                broker.endpoints["egress"], history=broker.endpoints["history"], last=500, timeout=20
            ) as records:
                threading.Timer(1.0, stop.set).start()
                for record in records:
                    got.append(record)
                    if record.getMessage() == "sentinel":
                        break
                stats = dict(records.stats)
        finally:
            stop.set()
            thread.join(10)
            handler.close()
        shown = texts(got)
        assert shown[-1] == "sentinel"
        numbers = [int(m.rsplit(" ", 1)[1]) for m in shown[:-1]]
        assert not [n for n, c in Counter(numbers).items() if c > 1], "a record was shown twice"
        assert numbers == list(range(numbers[0], sent[0])), "a record is missing at the switch"
        assert len(numbers) >= 500 and stats["gaps"] == 0
        print(f"switch: {len(numbers)} records, {stats['duplicates']} duplicates dropped")

    def test_listener_since_delivers_history_then_live(self, broker: Broker, capture: Any) -> None:
        """ZmqListener(since=...) hands stored records, then live ones, to its handlers."""
        log_records(broker.endpoints["push_ingest"], "l", [("app", 20, 30)])
        stored(broker, 30)
        with fabric.ZmqListener(broker.endpoints["egress"], capture, since="1h", history=broker.endpoints["history"]):
            assert poll_until(lambda: len(capture.records) >= 30, timeout=10)
            log_records(broker.endpoints["push_ingest"], "l", [("app", 20, 5)], start=30)
            assert poll_until(lambda: len(capture.records) >= 35, timeout=10)
        assert texts(capture.records) == [f"l app {i}" for i in range(35)]


class TestTail:
    """logfabric tail -n / --since / --until / --no-follow as a process."""

    def test_tail_n_service_level_json(self, broker: Broker) -> None:
        """3 services x 5,000: tail -n 100 -s b --level ERROR --no-follow -o json prints exactly the newest 100."""
        for service in ("a", "b", "c"):
            log_records(broker.endpoints["push_ingest"], service, [("app", 40, 2500), ("app", 20, 2500)])
        stored(broker, 15_000)
        out = subprocess.run(
            [sys.executable, "-m", "fabric.cli", "tail", broker.endpoints["egress"], "--history",
             broker.endpoints["history"], "-n", "100", "-s", "b", "--level", "ERROR", "--no-follow", "-o", "json"],
            cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [d["message"] for d in lines] == [f"b app {i}" for i in range(2400, 2500)]
        assert all(d["levelname"] == "ERROR" and d["service"] == "b" for d in lines)

    def test_tail_without_store_exits_2_saying_how(self, make_broker: Callable[..., Broker]) -> None:
        """A broker with --history but no --store: exit 2, one line naming --store DIR."""
        bare = make_broker(history="tcp://127.0.0.1:*")
        out = subprocess.run(
            [sys.executable, "-m", "fabric.cli", "tail", bare.endpoints["egress"], "--history",
             bare.endpoints["history"], "--since", "10m", "--no-follow"],
            cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 2
        assert "--store DIR" in out.stderr and "Traceback" not in out.stderr


class TestReplicas:
    """Three brokers on 127.0.0.1, .2 and .3 behind one dns+tcp:// name: history from all, merged by time."""

    def test_history_across_three_replicas_is_merged_by_time(
        self, make_broker: Callable[..., Broker], tmp_path: Path
    ) -> None:
        """Each replica stores its own records; subscribe(dns+tcp://..., since=) gets all of them in time order."""
        egress, history = free_ports(2)
        brokers = [
            make_broker(
                push_ingest=f"tcp://{a}:*", pub_ingest=f"tcp://{a}:*", egress=f"tcp://{a}:{egress}",
                history=f"tcp://{a}:{history}", store=str(tmp_path / a),
            )
            for a in ADDRESSES
        ]  # fmt: skip
        for round_ in range(3):
            for i, b in enumerate(brokers):
                log_records(b.endpoints["push_ingest"], f"r{i}", [("app", 20, 20)], start=round_ * 20)
                stored(b, (round_ + 1) * 20)

        def resolver(host: str, port: int) -> list[str]:
            assert host == "brokers"
            return list(ADDRESSES)

        with fabric.subscribe(
            f"dns+tcp://brokers:{egress}", history=f"dns+tcp://brokers:{history}", since="1h", follow=False,
            resolver=resolver, timeout=10,
        ) as records:  # fmt: skip
            got = texts(list(records))
        assert sorted(got) == sorted(f"r{i} app {n}" for i in range(3) for n in range(60))
        for i in range(3):  # each replica's records in its own order, the rounds interleaved by time
            assert [m for m in got if m.startswith(f"r{i} ")] == [f"r{i} app {n}" for n in range(60)]
        first_of_round = [got.index(f"r{i} app {r * 20}") for r in range(3) for i in range(3)]
        assert first_of_round == sorted(first_of_round)

    def test_last_n_across_replicas_is_the_newest_n_of_all(
        self, make_broker: Callable[..., Broker], tmp_path: Path
    ) -> None:
        """last=10 over three replicas: the ten newest records of all of them together."""
        egress, history = free_ports(2)
        brokers = [
            make_broker(
                push_ingest=f"tcp://{a}:*", pub_ingest=f"tcp://{a}:*", egress=f"tcp://{a}:{egress}",
                history=f"tcp://{a}:{history}", store=str(tmp_path / a),
            )
            for a in ADDRESSES
        ]  # fmt: skip
        for i, b in enumerate(brokers):
            log_records(b.endpoints["push_ingest"], f"r{i}", [("app", 20, 20)])
            stored(b, 20)
        with fabric.subscribe(
            f"dns+tcp://brokers:{egress}", history=f"dns+tcp://brokers:{history}", last=10, follow=False,
            resolver=lambda host, port: list(ADDRESSES), timeout=10,
        ) as records:  # fmt: skip
            got = texts(list(records))
        assert got == [f"r2 app {n}" for n in range(10, 20)]
