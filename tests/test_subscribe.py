"""End-to-end tests of fabric.subscribe() over real ZeroMQ sockets."""

from __future__ import annotations

import itertools
import logging
import time

import pytest

import fabric


class TestSubscribe:
    """subscribe() yields remote records as an iterator, with the listener's safety and counters."""

    def test_yields_records_from_a_push_producer(self, endpoint, make_subscription, make_handler, make_logger):
        """A pull subscription yields every pushed record in order, rehydrated with the producer's service."""
        sub = make_subscription(endpoint, mode="pull", bind=True, timeout=5.0)
        log = make_logger(None, make_handler(endpoint, service="sub-svc"))
        for i in range(100):
            log.info("record %d", i, extra={"n": i})
        records = list(itertools.islice(sub, 100))
        assert [r.n for r in records] == list(range(100))
        assert all(isinstance(r, logging.LogRecord) for r in records)
        assert {r.service for r in records} == {"sub-svc"}
        assert sub.stats["received"] == 100

    def test_filters_at_the_socket_against_a_pub_producer(self, endpoint, make_subscription, make_handler, make_logger):
        """loggers=['app.db'], level='WARNING': only matching records are yielded and none reach Python to filter."""
        handler = make_handler(endpoint, mode="pub", bind=True)
        sub = make_subscription(endpoint, mode="sub", loggers=["app.db"], level="WARNING", timeout=0.5)
        assert handler.wait_ready(5.0)
        db, dbx, pool, other = (make_logger(n, handler) for n in ("app.db", "app.dbx", "app.db.pool", "other.x"))
        db.info("excluded: app.db at INFO")
        dbx.warning("excluded: app.dbx")
        other.error("excluded: other.x")
        db.warning("included: app.db")
        pool.critical("included: app.db.pool")
        dbx.critical("excluded: app.dbx again")
        records = list(sub)  # ends after 0.5 s without a record
        assert [r.msg for r in records] == ["included: app.db", "included: app.db.pool"]
        assert sub.stats["filtered"] == 0, "excluded records reached Python instead of being dropped by the socket"
        assert sub.stats["received"] == 2

    def test_services_filter_at_the_socket(self, endpoint, make_subscription, make_handler, craft, free_port):
        """services=['billing'] on logger 'app' yields only billing's records; search's never reach Python."""
        search_endpoint = f"tcp://127.0.0.1:{free_port()}"
        billing = make_handler(endpoint, mode="pub", bind=True, service="billing")
        search = make_handler(search_endpoint, mode="pub", bind=True, service="search")
        sub = make_subscription(
            [endpoint, search_endpoint], mode="sub", loggers=["app"], services=["billing"], timeout=0.5
        )
        assert billing.wait_ready(5.0)
        assert search.wait_ready(5.0)
        search.handle(craft.record("app", "from search", logging.WARNING))
        billing.handle(craft.record("app", "from billing", logging.WARNING))
        search.handle(craft.record("app", "from search again", logging.ERROR))
        records = list(sub)
        assert [(r.service, r.msg) for r in records] == [("billing", "from billing")]
        assert sub.stats["filtered"] == 0
        assert search.stats["sent"] == 2

    def test_timeout_ends_iteration(self, endpoint, make_subscription):
        """With nothing arriving, iteration ends after about `timeout` seconds and the socket is closed."""
        sub = make_subscription(endpoint, mode="pull", bind=True, timeout=0.3)
        started = time.monotonic()
        assert list(sub) == []
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 2.0, f"iteration ended after {elapsed:.2f}s with timeout=0.3"
        with pytest.raises(StopIteration):
            next(sub)

    def test_close_and_with_end_iteration(self, endpoint, make_subscription, free_port):
        """close() ends iteration at once, and leaving a with block closes the subscription."""
        sub = make_subscription(endpoint, mode="pull", bind=True)
        sub.close()
        sub.close()
        with pytest.raises(StopIteration):
            next(sub)
        other = f"tcp://127.0.0.1:{free_port()}"
        with fabric.subscribe(other, mode="pull", bind=True, timeout=0.1) as records:
            assert list(records) == []
        with fabric.subscribe(other, mode="pull", bind=True, timeout=0.1) as again:  # the endpoint was freed
            assert list(again) == []

    def test_gap_notices_come_inline(self, endpoint, make_subscription, raw_push, craft):
        """Crafted seq 1, 2, 5 yields a logfabric.gaps WARNING with lost=2 before the seq-5 record."""
        sub = make_subscription(endpoint, mode="pull", bind=True, timeout=5.0)
        sock = raw_push(endpoint)
        for seq in (1, 2, 5):
            sock.send_multipart(craft.frames(craft.record("raw.seq", f"seq {seq}"), seq))
        records = list(itertools.islice(sub, 4))
        assert [r.name for r in records] == ["raw.seq", "raw.seq", "logfabric.gaps", "raw.seq"]
        assert records[2].levelno == logging.WARNING
        assert records[2].lost == 2
        assert records[3].msg == "seq 5"
        assert sub.stats["gaps"] == 2

    def test_malformed_messages_are_skipped_and_counted(self, endpoint, make_subscription, raw_push, craft):
        """Garbage frames are counted as malformed and the next valid record is yielded."""
        sub = make_subscription(endpoint, mode="pull", bind=True, timeout=5.0)
        sock = raw_push(endpoint)
        sock.send_multipart([b"no topic delimiter"])
        sock.send_multipart([b"2t\x00svc\x00\xffgarbage"])  # one frame, unknown codec tag
        sock.send_multipart([b"2t\x00svc\x00{}", b"two frames"])
        sock.send_multipart(craft.frames(craft.record("raw.ok", "fine"), 1))
        assert next(sub).msg == "fine"
        assert sub.stats["malformed"] == 3

    @pytest.mark.parametrize("bad", ["foo", "", [], ["tcp://127.0.0.1:1", "bar"]])
    def test_bad_endpoint_raises_at_call(self, bad):
        """A value that is not a ZeroMQ endpoint raises ValueError from subscribe() itself."""
        with pytest.raises(ValueError, match="endpoint"):
            fabric.subscribe(bad)

    def test_unusable_endpoint_raises_at_call(self):
        """'tcp://nonsense' raises a ValueError naming it from subscribe(), not on first next()."""
        with pytest.raises(ValueError, match="tcp://nonsense"):
            fabric.subscribe("tcp://nonsense")

    def test_unknown_level_raises(self, endpoint):
        """An unknown level name raises ValueError from subscribe()."""
        with pytest.raises(ValueError, match="LOUD"):
            fabric.subscribe(endpoint, level="LOUD")
