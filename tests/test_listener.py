"""End-to-end tests of ZmqListener over real ZeroMQ sockets."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import orjson
import pytest
import zmq

import fabric
from fabric.codec import Encoder
from fabric.topic import join_message, split_message, subscriptions


def json_doc(craft, **changes: object) -> dict[str, object]:
    """A valid JSON-codec record document, with ``changes`` applied."""
    doc = orjson.loads(Encoder(craft.identity, "json").encode(craft.record("raw.poison", "valid"), 1))
    doc.update(changes)
    return doc


def one_frame(payload: bytes) -> list[bytes]:
    """A well-formed one-frame message around ``payload`` (topic NUL payload)."""
    return [join_message(b"2raw.poison\x00raw-svc", payload)]


class TestMalformed:
    """Hostile frames are counted and skipped; the listener keeps working."""

    def test_poisoned_frames_are_counted_and_listener_survives(self, endpoint, make_listener, capture, raw_push, craft):
        """Garbage, wrong frame counts and shadowing JSON are malformed; a %-bomb is delivered as inert text."""
        listener = make_listener(endpoint, capture, mode="pull", bind=True)
        sock = raw_push(endpoint)
        good = craft.frames(craft.record("raw.good", "good"), 1)
        bomb_text = "%(message)s %s %d %(asctime)s {0} {message} " * 2000
        poison = [
            [b"\xff" + os.urandom(64)],  # random bytes, one frame
            [b"1raw.good\x00raw-svc"],  # a topic and no payload
            [b"topic"],
            [good[0], good[0], b"third"],  # three frames
            [b"2raw.good\x00raw-svc", good[0]],  # two frames
            one_frame(b"\xff" + os.urandom(200)),  # random payload, unknown codec tag
            one_frame(b""),  # empty payload
            one_frame(b"\x01\xff\xff\xff\xff"),  # truncated protobuf
            one_frame(b"{not json"),
            one_frame(orjson.dumps(json_doc(craft, levelno="50"))),  # a level that is a string
            one_frame(orjson.dumps(json_doc(craft, attributes={"getMessage": "boom"}))),  # shadows a method
            one_frame(orjson.dumps(json_doc(craft, getMessage="boom"))),  # top-level shadowing key
            one_frame(orjson.dumps(json_doc(craft, attributes={"__class__": "x"}))),
            one_frame(orjson.dumps(json_doc(craft, v=2))),  # unknown version
            one_frame(orjson.dumps([1, 2, 3])),
        ]
        for message in poison:
            sock.send_multipart(message)
        bomb = craft.frames(craft.record("raw.bomb", bomb_text), 1)
        sock.send_multipart(bomb)
        sock.send_multipart(one_frame(orjson.dumps(json_doc(craft))))  # the unpoisoned document is fine
        for i in range(1, 4):
            sock.send_multipart(craft.frames(craft.record("raw.good", f"good {i}"), i))

        assert capture.wait_for(5), f"only {len(capture)} of 5 valid records arrived after the poison"
        assert listener.stats["malformed"] == len(poison)
        assert listener.stats["errors"] == 0
        assert listener._thread is not None and listener._thread.is_alive()
        delivered = capture.records
        assert [r.msg for r in delivered] == [bomb_text, "valid", "good 1", "good 2", "good 3"]
        assert delivered[0].getMessage() == bomb_text  # args are (), nothing is interpolated
        assert logging.Formatter("%(name)s: %(message)s").format(delivered[0]) == f"raw.bomb: {bomb_text}"

        sock.send_multipart(craft.frames(craft.record("raw.good", "still alive"), 4))
        assert capture.wait_for(6)
        assert capture.records[-1].msg == "still alive"

    def test_a_failing_local_handler_does_not_stop_the_listener(self, make_link, make_capture):
        """A handler that raises is counted in errors and the other handlers keep receiving."""

        class Broken(logging.Handler):
            def handle(self, record: logging.LogRecord) -> bool:
                raise RuntimeError("broken handler")

        link = make_link("push")
        link.listener.handlers = (Broken(), *link.listener.handlers)
        for i in range(3):
            link.logger.info("record %d", i)
        assert link.capture.wait_for(3)
        assert link.listener.stats["errors"] == 3
        assert link.listener._thread.is_alive()


class TestHandlerLevels:
    """respect_handler_level decides which local handlers see which records."""

    LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)

    def _run(self, respect, endpoint, make_handler, make_listener, make_logger, make_capture):
        debug, error = make_capture(logging.DEBUG), make_capture(logging.ERROR)
        make_listener(endpoint, debug, error, mode="pull", bind=True, respect_handler_level=respect)
        log = make_logger(None, make_handler(endpoint))
        for level in self.LEVELS:
            log.log(level, "at %s", logging.getLevelName(level))
        assert debug.wait_for(5)
        assert error.wait_for(5 if not respect else 2)
        time.sleep(0.1)
        return debug, error

    def test_respect_handler_level_splits_by_handler_level(
        self, endpoint, make_handler, make_listener, make_logger, make_capture
    ):
        """A DEBUG handler gets all five levels; an ERROR handler gets only ERROR and CRITICAL."""
        debug, error = self._run(True, endpoint, make_handler, make_listener, make_logger, make_capture)
        assert [r.levelno for r in debug.records] == list(self.LEVELS)
        assert [r.levelno for r in error.records] == [logging.ERROR, logging.CRITICAL]

    def test_without_respect_every_handler_gets_everything(
        self, endpoint, make_handler, make_listener, make_logger, make_capture
    ):
        """With respect_handler_level=False both handlers get all five records."""
        debug, error = self._run(False, endpoint, make_handler, make_listener, make_logger, make_capture)
        assert [r.levelno for r in debug.records] == list(self.LEVELS)
        assert [r.levelno for r in error.records] == list(self.LEVELS)


class TestSocketFiltering:
    """Logger-prefix and level filters are applied by the SUB socket, upstream of the listener."""

    def _log_mix(self, make_logger, handler):
        """Log the included and excluded mix; return the messages that must arrive."""
        db, dbx, pool, other = (make_logger(name, handler) for name in ("app.db", "app.dbx", "app.db.pool", "other.x"))
        db.info("excluded: app.db at INFO")
        db.debug("excluded: app.db at DEBUG")
        dbx.error("excluded: app.dbx is not below app.db")
        other.critical("excluded: other.x")
        db.warning("included: app.db at WARNING")
        pool.error("included: app.db.pool at ERROR")
        dbx.warning("excluded: app.dbx again")
        db.log(25, "excluded: level 25 is below WARNING")
        db.critical("included: app.db at CRITICAL (last)")
        return [
            "included: app.db at WARNING",
            "included: app.db.pool at ERROR",
            "included: app.db at CRITICAL (last)",
        ]

    def test_listener_never_receives_excluded_topics(self, endpoint, make_listener, make_handler, make_logger, capture):
        """loggers=['app.db'], level='WARNING' on a sub listener: excluded records never arrive (filtered stays 0)."""
        listener = make_listener(endpoint, capture, mode="sub", bind=True, loggers=["app.db"], level="WARNING")
        handler = make_handler(endpoint, mode="pub")
        assert handler.wait_ready(5.0)
        expected = self._log_mix(make_logger, handler)
        assert capture.wait_for(3)
        time.sleep(0.1)
        assert [r.msg for r in capture.records] == expected
        assert listener.stats["filtered"] == 0, "excluded records reached the listener instead of the socket filter"
        assert listener.stats["received"] == 3
        assert handler.stats["sent"] == 9

    def test_raw_sub_socket_with_topic_subscriptions_sees_only_included(self, endpoint, make_handler, make_logger):
        """A raw SUB socket subscribed via fabric.topic.subscriptions() receives only the included topics."""
        handler = make_handler(endpoint, mode="pub", bind=True)
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        try:
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVTIMEO, 5000)
            for prefix in subscriptions(logging.WARNING, ["app.db"]):
                sub.setsockopt(zmq.SUBSCRIBE, prefix)
            sub.connect(endpoint)
            assert handler.wait_ready(5.0)
            expected = self._log_mix(make_logger, handler)
            got = []
            while len(got) < len(expected):
                (frame,) = sub.recv_multipart()  # RCVTIMEO bounds the wait; one frame: topic NUL payload
                topic, payload = split_message(frame)
                got.append((topic, fabric.decode(payload).record.msg))
            assert sub.poll(200) == 0, "an excluded record arrived after the last included one"
        finally:
            sub.close(linger=0)
            ctx.term()
        assert [msg for _, msg in got] == expected
        assert [topic for topic, _ in got] == [
            b"3app.db\x00test-svc",
            b"4app.db.pool\x00test-svc",
            b"5app.db\x00test-svc",
        ]

    def test_levels_sharing_a_bucket_are_finished_in_the_listener(
        self, endpoint, make_listener, make_handler, make_logger, capture
    ):
        """level=35 subscribes to bucket 3, so a level-31 record arrives and is counted as filtered."""
        listener = make_listener(endpoint, capture, mode="sub", bind=True, level=35)
        handler = make_handler(endpoint, mode="pub")
        assert handler.wait_ready(5.0)
        log = make_logger(None, handler)
        log.log(31, "below the filter, same bucket")
        log.log(25, "below the filter, other bucket")
        log.log(35, "at the filter")
        assert capture.wait_for(1)
        time.sleep(0.1)
        assert [r.msg for r in capture.records] == ["at the filter"]
        assert listener.stats["filtered"] == 1

    def test_pull_listener_filters_in_python(self, make_link):
        """A pull listener cannot filter at the socket: excluded records arrive and are counted as filtered."""
        link = make_link("push", listener_options={"level": "warning", "services": ["test-svc"]})
        link.logger.info("dropped by level")
        link.logger.warning("kept")
        assert link.capture.wait_for(1)
        time.sleep(0.1)
        assert [r.msg for r in link.capture.records] == ["kept"]
        assert link.listener.stats["filtered"] == 1


class TestGaps:
    """A jump in a producer's sequence is reported once, with the exact count."""

    def test_crafted_sequence_1_2_5_reports_two_lost(self, endpoint, make_listener, capture, raw_push, craft):
        """Frames with seq 1, 2, 5 on one topic yield a WARNING on logfabric.gaps saying 2 were lost."""
        listener = make_listener(endpoint, capture, mode="pull", bind=True)
        sock = raw_push(endpoint)
        for seq in (1, 2, 5, 6):
            sock.send_multipart(craft.frames(craft.record("raw.seq", f"seq {seq}"), seq))
        assert capture.wait_for(5)
        records = capture.records
        assert [r.name for r in records] == ["raw.seq", "raw.seq", "logfabric.gaps", "raw.seq", "raw.seq"]
        gap = records[2]
        assert gap.levelno == logging.WARNING
        assert gap.lost == 2
        assert "lost 2 record(s)" in gap.getMessage()
        assert "seq 3 to 4" in gap.getMessage()
        assert gap.service == "raw-svc"
        assert gap.producer_id == f"{craft.identity.producer_id:016x}"
        assert listener.stats["gaps"] == 2

    def test_sequences_are_per_topic(self, endpoint, make_listener, capture, raw_push, craft):
        """Interleaved topics each counting from 1 are not mistaken for gaps."""
        listener = make_listener(endpoint, capture, mode="pull", bind=True)
        sock = raw_push(endpoint)
        for seq in (1, 2, 3):
            sock.send_multipart(craft.frames(craft.record("raw.a", f"a {seq}"), seq))
            sock.send_multipart(craft.frames(craft.record("raw.b", f"b {seq}", logging.ERROR), seq))
        assert capture.wait_for(6)
        assert listener.stats["gaps"] == 0
        assert not capture.named("logfabric.gaps")

    def test_records_dropped_by_a_full_socket_are_reported_as_gaps(
        self, endpoint, make_handler, make_logger, make_listener, capture
    ):
        """Records a producer drops while the listener is absent show up as a gap of exactly that many."""
        handler = make_handler(endpoint, hwm=10, send_timeout=0.0)
        log = make_logger(None, handler)
        for i in range(200):
            log.info("while absent %d", i)
        dropped = handler.stats["dropped"]
        assert dropped > 100, handler.stats
        queued = handler.stats["sent"] + handler.stats.get("queued", 0)  # in the socket, or still in the handler
        listener = make_listener(endpoint, capture, mode="pull", bind=True)
        assert capture.wait_for(queued, timeout=10), f"{len(capture)} of {queued} queued records arrived"
        log.info("after the listener started")
        assert capture.wait_for(1, name="logfabric.gaps", timeout=5), "no gap notice arrived"
        assert capture.wait_for(queued + 2)
        assert handler.stats["dropped"] == dropped
        (gap,) = capture.named("logfabric.gaps")
        assert gap.lost == dropped
        assert listener.stats["gaps"] == dropped
        assert capture.records[-1].msg == "after the listener started"


class TestLifecycle:
    """start/stop/with behave, stop is prompt, and bad configuration fails clearly."""

    def test_stop_handles_what_already_arrived(self, make_link, make_capture):
        """Records already in the listener's socket when stop() is called are handled before it returns."""
        gate = threading.Event()

        class Gate(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                gate.wait(10)

        link = make_link("push")
        link.listener.handlers = (Gate(), *link.listener.handlers)
        for i in range(1000):
            link.logger.info("record %d", i)
        link.handler.close()  # everything has left the producer
        time.sleep(0.5)  # ... and reached the listener's socket while its thread is held up
        assert len(link.capture) == 0
        threading.Timer(0.2, gate.set).start()
        started = time.monotonic()
        link.listener.stop()
        elapsed = time.monotonic() - started
        assert elapsed < 3.0
        assert len(link.capture) == 1000, f"stop() discarded {1000 - len(link.capture)} arrived records"

    def test_stop_is_prompt_under_a_flood(self, make_link):
        """stop() returns while a producer keeps sending (it does not wait for the flood to end), in < 5 s."""
        link = make_link("push")
        running = threading.Event()
        running.set()

        def flood() -> None:
            give_up = time.monotonic() + 8.0  # bounded even if stop() never returns early
            while running.is_set() and time.monotonic() < give_up:
                link.logger.info("flood")

        thread = threading.Thread(target=flood)
        thread.start()
        try:
            assert link.capture.wait_for(1000, timeout=10)
            started = time.monotonic()
            link.listener.stop()
            elapsed = time.monotonic() - started
            flooding = thread.is_alive()
        finally:
            running.clear()
            thread.join(10)
        assert flooding, "the flood ended before stop() returned: stop() was not tested under load"
        # stop() hands on what already arrived: at most a full receive queue per connection
        assert elapsed < 5.0, f"stop() took {elapsed:.2f}s under load"
        assert link.listener._thread is None

    def test_with_block_starts_and_stops(self, endpoint, make_handler, make_logger, capture):
        """Entering a with block starts the listener; leaving it stops it and frees the endpoint."""
        handler = make_handler(endpoint)
        log = make_logger(None, handler)
        with fabric.ZmqListener(endpoint, capture, mode="pull", bind=True) as listener:
            assert listener._thread is not None and listener._thread.is_alive()
            log.info("inside")
            assert capture.wait_for(1)
        assert listener._thread is None
        # the endpoint is free again: a second listener can bind it
        with fabric.ZmqListener(endpoint, capture, mode="pull", bind=True):
            log.info("second")
            assert capture.wait_for(2)
        assert [r.msg for r in capture.records] == ["inside", "second"]

    def test_stop_without_start_and_twice_is_harmless(self, endpoint):
        """stop() on a listener never started, or already stopped, does nothing."""
        listener = fabric.ZmqListener(endpoint, mode="pull", bind=True)
        listener.stop()
        listener.start()
        listener.stop()
        listener.stop()

    def test_start_twice_raises(self, endpoint, make_listener):
        """Starting a running listener raises RuntimeError instead of opening a second socket."""
        listener = make_listener(endpoint, mode="pull", bind=True)
        with pytest.raises(RuntimeError, match="already started"):
            listener.start()

    @pytest.mark.parametrize("bad", ["foo", "", "tcp://", ["tcp://127.0.0.1:1", "nope"], []])
    def test_bad_endpoint_raises_at_construction(self, bad):
        """A value that is not a ZeroMQ endpoint raises ValueError when the listener is built."""
        with pytest.raises(ValueError, match="endpoint"):
            fabric.ZmqListener(bad)

    @pytest.mark.parametrize("bind", [False, True])
    def test_unusable_endpoint_raises_at_start(self, bind):
        """'tcp://nonsense' raises a ValueError naming it at start(), and the listener is not running."""
        listener = fabric.ZmqListener("tcp://nonsense", bind=bind)
        with pytest.raises(ValueError, match="tcp://nonsense"):
            listener.start()
        assert listener._thread is None
        listener.stop()

    def test_endpoint_in_use_raises_at_start(self, endpoint, make_listener):
        """Binding an endpoint another listener holds raises ValueError at start()."""
        make_listener(endpoint, mode="pull", bind=True)
        second = fabric.ZmqListener(endpoint, mode="pull", bind=True)
        with pytest.raises(ValueError, match="bind"):
            second.start()

    @pytest.mark.parametrize("level", ["LOUD", "", "warn ing", 1.5])
    def test_unknown_level_raises(self, endpoint, level):
        """An unknown level name raises ValueError at construction."""
        with pytest.raises(ValueError, match="level"):
            fabric.ZmqListener(endpoint, level=level)

    @pytest.mark.parametrize(("option", "value"), [("mode", "push"), ("dispatch", "everywhere")])
    def test_unknown_mode_or_dispatch_raises(self, endpoint, option, value):
        """An unknown mode or dispatch raises ValueError at construction."""
        with pytest.raises(ValueError, match=option):
            fabric.ZmqListener(endpoint, **{option: value})


class TestDispatchLoggers:
    """dispatch='loggers' routes records through the local logging tree without growing it."""

    def test_records_route_through_local_loggers(
        self, endpoint, make_listener, make_logger, make_capture, raw_push, craft
    ):
        """Records for app.db and its unknown descendants reach app.db's handlers; no logger is created."""
        db_capture, root_capture = make_capture(), make_capture()
        make_logger("app.db", db_capture)
        root = logging.getLogger()
        root.addHandler(root_capture)
        try:
            listener = make_listener(endpoint, mode="pull", bind=True, dispatch="loggers")
            sock = raw_push(endpoint)
            names = ["app.db", "app.db.remote.only.child", "zz.remote.unknown.logger"]
            assert not any(n in logging.Logger.manager.loggerDict for n in names[1:])
            for name in names:
                sock.send_multipart(craft.frames(craft.record(name, f"from {name}"), 1))
            assert db_capture.wait_for(2)
            assert wait_until_named(root_capture, "zz.remote.unknown.logger")
        finally:
            root.removeHandler(root_capture)
        assert [r.name for r in db_capture.records] == names[:2]
        assert listener.stats["received"] == 3
        for name in names[1:]:
            assert name not in logging.Logger.manager.loggerDict, f"dispatch created a logger for {name!r}"
        assert "zz" not in logging.Logger.manager.loggerDict

    def test_handlers_beside_dispatch_loggers_are_refused(self, endpoint, make_capture):
        """Handlers given with dispatch='loggers' would never be called: the constructor says so."""
        with pytest.raises(ValueError, match="would never be called"):
            fabric.ZmqListener(endpoint, make_capture(), dispatch="loggers")

    def test_a_received_record_is_not_sent_back_by_a_handler_of_the_same_process(
        self, endpoint, make_listener, make_handler, make_capture, raw_push, craft, wait_until
    ):
        """A root ZmqHandler beside dispatch='loggers' counts received records instead of sending them back."""
        root, seen = logging.getLogger(), make_capture()
        shipper = make_handler(endpoint)  # ships this process's own logs to where the listener receives
        root.addHandler(shipper)
        root.addHandler(seen)
        try:
            listener = make_listener(endpoint, mode="pull", bind=True, dispatch="loggers")
            sock = raw_push(endpoint)
            for n in range(2):
                sock.send_multipart(craft.frames(craft.record("zz.relay.remote", f"remote {n}"), n + 1))
            assert wait_until(lambda: shipper.stats["received_not_sent"] == 2, timeout=10), shipper.stats
        finally:
            root.removeHandler(shipper)
            root.removeHandler(seen)
        assert shipper.stats["sent"] == 0, f"received records went back out: {shipper.stats}"
        assert [r.getMessage() for r in seen.records] == ["remote 0", "remote 1"]
        assert listener.stats["received"] == 2

    def test_a_name_of_thousands_of_parts_routes_to_its_nearest_local_ancestor(self, make_logger, make_capture):
        """A 2,046-part remote name reaches the deepest local logger it extends, and the root otherwise."""
        from fabric.listener import _route

        local = ".".join(["deep"] * 4)
        make_logger(local, make_capture())
        assert _route(".".join(["deep"] * 2046)) is logging.getLogger(local)
        assert _route(".".join(["deep"] * 3 + ["other"] * 2043)) is logging.getLogger().manager.root
        assert _route(local + ".x") is logging.getLogger(local)
        assert ".".join(["deep"] * 5) not in logging.Logger.manager.loggerDict

    def test_routing_a_name_of_thousands_of_parts_costs_about_as_much_as_a_short_one(self, make_logger, make_capture):
        """Routing cost grows with the local tree's depth, not the remote name's (it was 1,500 times)."""
        import timeit

        from fabric.listener import _route

        make_logger("app.db", make_capture())
        deep, short = ".".join(["p"] * 2046), "app.db.pool"
        cost_deep = min(timeit.repeat(lambda: _route(deep), number=200, repeat=5))
        cost_short = min(timeit.repeat(lambda: _route(short), number=200, repeat=5))
        assert cost_deep < 100 * cost_short, f"deep {cost_deep * 5e3:.1f} us, short {cost_short * 5e3:.1f} us"


def wait_until_named(capture, name: str, timeout: float = 5.0) -> bool:
    """Wait (bounded) for a record of logger ``name`` to reach ``capture``."""
    return capture.wait_for(1, name=name, timeout=timeout)


class TestBoundEndpoints:
    """ZmqListener.bound and Subscription.bound: where a '*' port landed."""

    def test_listener_reports_the_port_it_bound(self, make_capture):
        """A listener bound to port '*' reports the real endpoint, and producers reach it there."""
        capture = make_capture()
        listener = fabric.ZmqListener("tcp://127.0.0.1:*", capture, mode="pull", bind=True)
        assert listener.bound == []  # nothing bound before start()
        with listener:
            (endpoint,) = listener.bound
            assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":*")
            handler = fabric.ZmqHandler(endpoint, linger=1.0)
            try:
                handler.handle(logging.LogRecord("bound.test", logging.INFO, __file__, 1, "hi", (), None))
                assert capture.wait_for(1, timeout=5)
            finally:
                handler.close()
        assert capture.records[0].getMessage() == "hi"

    def test_connecting_listener_binds_nothing(self, endpoint):
        """A connecting listener's bound list is empty."""
        with fabric.ZmqListener(endpoint, mode="sub") as listener:
            assert listener.bound == []

    def test_subscription_reports_the_port_it_bound(self):
        """subscribe(bind=True) on port '*' reports the real endpoint."""
        with fabric.subscribe("tcp://127.0.0.1:*", mode="pull", bind=True, timeout=0.1) as records:
            (endpoint,) = records.bound
            assert not endpoint.endswith(":*")


class TestResolverFailures:
    """A dns+tcp:// name that fails to re-resolve keeps the listener's connection; its thread never ends for it."""

    @pytest.mark.parametrize(
        ("failure", "logger"),
        [
            pytest.param([42], "logfabric.listener", id="returns-a-number"),
            pytest.param(["127.0.0.1", None], "logfabric.listener", id="returns-none-among-addresses"),
            pytest.param(socket.gaierror(-2, "Name or service not known"), "logfabric.discovery", id="name-not-found"),
        ],
    )
    def test_records_keep_arriving_and_the_failure_is_reported(
        self, failure: Any, logger: str, make_handler, make_logger, capture, free_port, wait_until, caplog
    ):
        """The resolver fails at every refresh after the first: records still arrive, the failure is said."""
        caplog.set_level(logging.WARNING, logger=logger)
        calls: list[str] = []

        def resolver(host: str, port: int) -> list[Any]:
            calls.append(host)
            if len(calls) == 1:
                return ["127.0.0.1"]
            if isinstance(failure, Exception):
                raise failure
            return failure

        port = free_port()
        log = make_logger(None, make_handler(f"tcp://127.0.0.1:{port}", bind=True, send_timeout=5.0))
        listener = fabric.ZmqListener(
            f"dns+tcp://logs.example:{port}", capture, mode="pull", resolver=resolver, resolve_interval=0.01
        )
        with listener:
            log.info("first")
            assert capture.wait_for(1)
            assert wait_until(lambda: len(calls) > 3, timeout=5), "the listener stopped re-resolving"
            log.info("after the resolver failed")
            assert capture.wait_for(2), "the connection was not kept"
            assert listener._thread is not None and listener._thread.is_alive()
        said = [r.getMessage() for r in caplog.records if r.name == logger]
        assert said and all("keeping the current connections" in m for m in said), said
        if logger == "logfabric.listener":  # its own report is said at most every 10 s
            assert len(said) == 1, said
        assert listener.stats["errors"] == 0, listener.stats
