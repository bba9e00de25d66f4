"""Hostile history requests: each gets a clear error or is bounded, and forwarding never stalls.

Real embedded brokers with a store on 127.0.0.1; raw DEALER sockets play the
hostile clients. After each attack a sentinel record must still be forwarded
live and a well-formed query must still be answered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

import fabric
from broker import Broker
from fabric._history_wire import MAX_FILTER_NAMES, MAX_REQUEST, PAGE_RECORDS
from tests.broker.history_kit import ask, dealers, produce, query
from tests.helpers.broker import embedded_brokers, embedded_metrics
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def make_broker() -> Iterator[Callable[..., Broker]]:
    """Embedded brokers, stopped at the end (no drain)."""
    with embedded_brokers(0.0) as make:
        yield make


@pytest.fixture
def dealer() -> Iterator[Callable[[str], zmq.Socket[bytes]]]:
    """``dealer(endpoint)``: a connected DEALER, closed with linger 0 at the end."""
    with dealers() as make:
        yield make


@pytest.fixture
def broker(make_broker: Callable[..., Broker], tmp_path: Path) -> Broker:
    """A broker with a store holding 3,000 records and a history endpoint."""
    made = make_broker(store=str(tmp_path / "store"), history="tcp://127.0.0.1:*")
    produce(made, [("s", "app.a", 20, 3000)])
    return made


def error_of(reply: list[bytes]) -> dict[str, Any]:
    """The header of an error reply (fails if the reply is not one)."""
    assert len(reply) == 1, f"expected one frame, got {len(reply)}"
    header = orjson.loads(reply[0])
    assert header["ok"] is False, header
    return header


def still_serving(broker: Broker, dealer: Callable[[str], zmq.Socket[bytes]]) -> None:
    """A live subscriber gets a sentinel record, and a fresh client gets a full answer."""
    with fabric.subscribe(broker.endpoints["egress"], loggers=["sentinel"], timeout=10) as records:
        handler = fabric.ZmqHandler(broker.endpoints["push_ingest"], service="s")
        try:
            got = None
            for _ in range(100):  # until the subscription has reached the broker (bounded)
                handler.handle(logging.makeLogRecord({"name": "sentinel", "levelno": 20, "msg": "alive"}))
                handler.flush()
                if records._sock is not None and records._sock.poll(100):
                    got = next(records)
                    break
            assert got is not None and got.getMessage() == "alive"
        finally:
            handler.close()
    got_all, _ = query(dealer(broker.endpoints["history"]), loggers=["app.a"])
    assert len(got_all) == 3000


@pytest.mark.parametrize(
    ("request_bytes", "code", "words"),
    [
        (b"\xff\xfe garbage", "malformed", "not JSON"),
        (b"[1, 2, 3]", "malformed", "JSON object"),
        (b"[" * 5000 + b"]" * 5000, "malformed", "not JSON"),
        (b"[" * 1000 + b"]" * 1000, "malformed", "JSON object"),
        (orjson.dumps({"v": 1, "loggers": [[[[["deep"]]]]]}), "invalid", "loggers must be a list of strings"),
        (orjson.dumps({"v": 2}), "version", "speaks version 1"),
        (orjson.dumps({"v": "1"}), "version", "speaks version 1"),
        (orjson.dumps({}), "version", "speaks version 1"),
        (orjson.dumps({"v": 1, "last": 0}), "invalid", "last must be"),
        (orjson.dumps({"v": 1, "last": -5}), "invalid", "last must be"),
        (orjson.dumps({"v": 1, "last": True}), "invalid", "last must be"),
        (orjson.dumps({"v": 1, "since": "yesterday"}), "invalid", "since must be"),
        (orjson.dumps({"v": 1, "level": 1e300}), "invalid", "level must be"),
        (orjson.dumps({"v": 1, "cursor": {"after": "x"}}), "invalid", "cursor must be"),
        (orjson.dumps({"v": 1, "colour": "blue"}), "invalid", "unknown field(s) colour"),
        (orjson.dumps({"v": 1, "loggers": ["x"] * (MAX_FILTER_NAMES + 1)}), "too_many", "at most 256"),
        (orjson.dumps({"v": 1, "services": ["s"] * 5000}), "too_many", "at most 256"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else None,
)
def test_bad_request_gets_one_clear_error(
    broker: Broker, dealer: Callable[[str], zmq.Socket[bytes]], request_bytes: bytes, code: str, words: str
) -> None:
    """Each malformed, nested, unknown-version or over-limit request gets an error naming the problem."""
    assert len(request_bytes) <= MAX_REQUEST
    header = error_of(ask(dealer(broker.endpoints["history"]), request_bytes))
    assert header["error"] == code and words in header["message"], header
    assert embedded_metrics(broker).get("logfabric_broker_history_requests_total", outcome=code) == 1


def test_multipart_request_is_malformed(broker: Broker, dealer: Callable[[str], zmq.Socket[bytes]]) -> None:
    """A request of two frames is refused, not read."""
    sock = dealer(broker.endpoints["history"])
    sock.send_multipart([b'{"v": 1}', b"more"])
    assert sock.poll(10_000)
    assert error_of(sock.recv_multipart())["error"] == "malformed"


def test_a_million_logger_prefixes_cannot_get_in(broker: Broker, dealer: Callable[[str], zmq.Socket[bytes]]) -> None:
    """A request of 10^6 prefixes is over MAX_REQUEST: libzmq drops that connection; the broker goes on."""
    huge = orjson.dumps({"v": 1, "loggers": [f"l{i}" for i in range(1_000_000)]})
    assert len(huge) > MAX_REQUEST
    sock = dealer(broker.endpoints["history"])
    sock.send(huge)
    assert not sock.poll(1000)  # no answer: the connection was reset
    still_serving(broker, dealer)


def test_n_of_a_trillion_is_everything_in_pages(broker: Broker, dealer: Callable[[str], zmq.Socket[bytes]]) -> None:
    """last=10^12 is answered with what the store holds, one bounded page at a time."""
    sock = dealer(broker.endpoints["history"])
    reply = ask(sock, {"v": 1, "last": 10**12})
    assert orjson.loads(reply[0])["count"] == PAGE_RECORDS
    got, pages = query(sock, last=10**12)
    assert len(got) == 3000 and pages <= 4  # the last full page cannot tell that none follows


def test_a_client_that_never_reads_is_bounded(broker: Broker, dealer: Callable[[str], zmq.Socket[bytes]]) -> None:
    """2,000 requests never read: the broker queues a few replies, drops the rest (counted) and serves others."""
    sock = dealer(broker.endpoints["history"])
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.setsockopt(zmq.SNDHWM, 0)
    request = orjson.dumps({"v": 1})
    for _ in range(2000):
        sock.send(request)

    def unread() -> float | None:
        return embedded_metrics(broker).get("logfabric_broker_history_requests_total", outcome="unread")

    assert poll_until(lambda: (unread() or 0) > 0, timeout=60), "no reply was ever dropped"
    still_serving(broker, dealer)


def test_many_clients_each_get_an_answer(broker: Broker, dealer: Callable[[str], zmq.Socket[bytes]]) -> None:
    """300 clients ask at once; each gets its first page, and a live record still goes through."""
    socks = [dealer(broker.endpoints["history"]) for _ in range(300)]
    request = orjson.dumps({"v": 1, "last": 10})
    for sock in socks:
        sock.send(request)
    for sock in socks:
        assert sock.poll(30_000)
        assert orjson.loads(sock.recv_multipart()[0])["count"] == 10
    still_serving(broker, dealer)


def test_curve_history_takes_subscriber_keys_only(
    make_broker: Callable[..., Broker], tmp_path: Path, curve_keys: Any
) -> None:
    """With CurveZMQ the history endpoint is a CURVE server checked against the subscribers' allow-list."""
    pytest.importorskip("prometheus_client")
    keys = curve_keys
    made = make_broker(
        store=str(tmp_path / "store"),
        history="tcp://127.0.0.1:*",
        curve_secret_key=str(keys.broker_secret),
        curve_producers=str(keys.producers),
        curve_subscribers=str(keys.subscribers),
    )
    ok = fabric.subscribe(
        made.endpoints["egress"],
        last=1,
        follow=False,
        history=made.endpoints["history"],
        curve_server_key=str(keys.broker_public),
        curve_client_key=str(keys.subscriber),
    )
    with ok:
        assert list(ok) == []  # an empty store: the query ends at once
    refused = fabric.subscribe(
        made.endpoints["egress"],
        last=1,
        follow=False,
        history=made.endpoints["history"],
        curve_server_key=str(keys.broker_public),
        curve_client_key=str(keys.producer),
    )
    with refused, pytest.raises(fabric.ConfigError, match="no answer from the history endpoint"):
        next(refused)


@pytest.fixture(autouse=True)
def _short_page_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A refused client waits 2 s for its page instead of 5 (keeps the suite quick)."""
    import fabric._history

    monkeypatch.setattr(fabric._history, "PAGE_TIMEOUT", 2.0)
    yield
