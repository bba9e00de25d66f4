"""End-to-end tests of fabric.subscribe() over real ZeroMQ sockets."""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import zmq

import fabric
from fabric._subscriber_options import for_target
from fabric.curve import ENV_ALLOW_OPEN_KEY, ENV_CLIENT_KEY, ENV_SERVER_KEY, generate

#: What a dns+tcp:// resolver can do wrong at a refresh (raise, or return what is not an address),
#: and the logger that says so.
RESOLVER_FAILURES: dict[str, tuple[Exception | list[Any], str]] = {
    "raises RuntimeError": (RuntimeError("resolver bug"), "logfabric.listener"),
    "returns a number": ([42], "logfabric.listener"),
    "name not found": (socket.gaierror(-2, "Name or service not known"), "logfabric.discovery"),
}


def failing_resolver(failure: Exception | list[Any], calls: list[str]) -> Callable[[str, int], list[Any]]:
    """A resolver that finds 127.0.0.1 once, then fails with ``failure`` at every refresh."""

    def resolve(host: str, port: int) -> list[Any]:
        calls.append(host)
        if len(calls) == 1:
            return ["127.0.0.1"]
        if isinstance(failure, Exception):
            raise failure
        return failure

    return resolve


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


class TestResolverFailures:
    """A dns+tcp:// name that fails to re-resolve keeps the connection it has; the loop never sees the error."""

    @pytest.mark.parametrize("failure", sorted(RESOLVER_FAILURES))
    def test_a_failing_refresh_is_reported_and_records_keep_coming(
        self, failure, make_handler, make_logger, make_subscription, free_port, caplog
    ):
        """The resolver fails at every refresh while next() waits: the next record is still yielded, no raise."""
        fail, logger = RESOLVER_FAILURES[failure]
        caplog.set_level(logging.WARNING, logger=logger)
        calls: list[str] = []
        port = free_port()
        log = make_logger(None, make_handler(f"tcp://127.0.0.1:{port}", bind=True, send_timeout=5.0))
        records = make_subscription(
            f"dns+tcp://logs.example:{port}",
            mode="pull",
            resolver=failing_resolver(fail, calls),
            resolve_interval=0.01,
            timeout=10.0,
        )
        log.info("first")
        assert next(records).msg == "first"
        later = threading.Timer(0.5, log.info, ("after the resolver failed",))
        later.start()
        try:
            assert next(records).msg == "after the resolver failed"
        finally:
            later.join()
        assert len(calls) > 3, "the subscription stopped re-resolving"
        said = [r.getMessage() for r in caplog.records if r.name == logger]
        assert said and all("keeping the current connections" in m for m in said), said
        if logger == "logfabric.listener":  # its own report is said at most every 10 s
            assert len(said) == 1, said


class TestReceiveLoop:
    """The loop subscribe() shares with ZmqListener: housekeeping under a flood, the idle timeout."""

    def test_names_are_re_resolved_while_records_never_stop_coming(
        self, make_handler, make_logger, make_subscription, free_port
    ):
        """5,000 records already waiting, read without a pause: the names are still looked up again meanwhile."""
        calls: list[str] = []

        def resolver(host: str, port: int) -> list[str]:
            calls.append(host)
            return ["127.0.0.1"]

        port = free_port()
        log = make_logger(None, make_handler(f"tcp://127.0.0.1:{port}", bind=True, send_timeout=5.0))
        records = make_subscription(
            f"dns+tcp://logs.example:{port}",
            mode="pull",
            resolver=resolver,
            resolve_interval=0.001,
            timeout=10.0,
        )
        for i in range(5000):
            log.info("record %d", i)
        assert next(records).getMessage() == "record 0"
        time.sleep(1.0)  # the rest arrives meanwhile
        del calls[:]
        assert [r.getMessage() for r in itertools.islice(records, 4999)][-1] == "record 4999"
        assert len(calls) >= 4, calls

    def test_a_flood_of_malformed_messages_does_not_extend_the_timeout(self, endpoint, make_subscription, raw_push):
        """Messages that yield nothing are not records: iteration still ends `timeout` after the last record."""
        records = make_subscription(endpoint, mode="pull", bind=True, timeout=0.5)
        sock = raw_push(endpoint)
        stop = threading.Event()

        def flood() -> None:
            while not stop.is_set():
                sock.send(b"no topic delimiter")
                time.sleep(0.002)

        flooding = threading.Thread(target=flood)
        flooding.start()
        started = time.monotonic()
        try:
            assert list(records) == []
        finally:
            stop.set()
            flooding.join()
        elapsed = time.monotonic() - started
        assert 0.45 <= elapsed < 3.0, f"iteration ended after {elapsed:.2f}s with timeout=0.5"
        assert records.stats["malformed"] > 10, records.stats


class TestOptions:
    """subscribe() takes the listener's options, from the one definition of the subscriber options."""

    def test_every_listener_option_but_the_dispatch_ones(self):
        """Only the options about local handlers (which a plain iterator has not) are the listener's alone."""
        listener = {option.name for option in for_target("listener")}
        subscription = {option.name for option in for_target("subscribe")}
        assert listener - subscription == {"handlers", "respect_handler_level", "dispatch"}
        assert listener - {"handlers", "respect_handler_level", "dispatch"} <= set(
            inspect.signature(fabric.subscribe).parameters
        )

    @pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
    def test_curve_allow_open_key_accepts_an_open_key_for_a_real_handshake(
        self, tmp_path, free_port, make_subscription, craft, monkeypatch
    ):
        """A 0640 secret key is refused by default and, with curve_allow_open_key=True, completes a handshake."""
        for name in (ENV_ALLOW_OPEN_KEY, ENV_CLIENT_KEY, ENV_SERVER_KEY):
            monkeypatch.delenv(name, raising=False)
        server_public, server_secret = generate("server", tmp_path)
        _, client_secret = generate("client", tmp_path)
        client_secret.chmod(0o640)
        keys = {"curve_server_key": server_public, "curve_client_key": client_secret}
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        with pytest.raises(fabric.ConfigError, match="chmod 600"):
            fabric.subscribe(endpoint, mode="pull", **keys)
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        server = ctx.socket(zmq.PUSH)
        try:
            public, secret = zmq.auth.load_certificate(server_secret)
            assert secret is not None
            server.setsockopt(zmq.CURVE_SERVER, 1)
            server.setsockopt(zmq.CURVE_PUBLICKEY, public)
            server.setsockopt(zmq.CURVE_SECRETKEY, secret)
            server.setsockopt(zmq.LINGER, 0)
            server.setsockopt(zmq.SNDTIMEO, 5000)  # waits for the handshake, bounded
            server.bind(endpoint)
            records = make_subscription(endpoint, mode="pull", timeout=5.0, curve_allow_open_key=True, **keys)
            server.send_multipart(craft.frames(craft.record("raw.curve", "through curve"), 1))
            assert next(records).msg == "through curve"
        finally:
            server.close(linger=0)
            ctx.term()
