"""End-to-end tests of ZmqHandler over real ZeroMQ sockets and real processes."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import threading
import time

import pytest

import fabric

TOPOLOGIES = [
    pytest.param("push", False, id="push-connect/pull-bind"),
    pytest.param("push", True, id="push-bind/pull-connect"),
    pytest.param("pub", False, id="pub-connect/sub-bind"),
    pytest.param("pub", True, id="pub-bind/sub-connect"),
]

# Attributes a rehydrated record must carry exactly as the producer's record had them.
_SAME = (
    "name",
    "levelno",
    "levelname",
    "pathname",
    "filename",
    "module",
    "lineno",
    "funcName",
    "created",
    "msecs",
    "relativeCreated",
    "thread",
    "threadName",
    "process",
    "processName",
    "exc_text",
    "stack_info",
)


class Opaque:
    """An extra value that is not JSON-able: it must travel as its repr()."""

    def __repr__(self) -> str:
        return "<Opaque 7>"


EXTRAS = {
    "request_id": "req-42",
    "count": 3,
    "ratio": 0.25,
    "flag": True,
    "tags": ["a", 1],
    "doc": {"k": [1, 2], "n": None},
    "nothing": None,
    "pair": (1, 2),
    "huge": 2**70,
    "opaque": Opaque(),
}
EXPECTED_EXTRAS = {
    "request_id": "req-42",
    "count": 3,
    "ratio": 0.25,
    "flag": True,
    "tags": ["a", 1],
    "doc": {"k": [1, 2], "n": None},
    "nothing": None,
    "pair": [1, 2],
    "huge": str(2**70),
    "opaque": "<Opaque 7>",
}


def wait_child(pid: int, timeout: float = 20.0) -> int:
    """Reap a forked child within ``timeout`` (killing it if it hangs); return its exit code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child {pid} did not exit within {timeout}s")


def _mp_child_own_handler(endpoint: str, logger_name: str, count: int) -> None:
    """Target of a multiprocessing child: make a handler of its own, log ``count`` records, return."""
    logger = logging.getLogger(logger_name)
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.addHandler(fabric.ZmqHandler(endpoint, linger=5.0))
    for i in range(count):
        logger.info("mp child %d", i, extra={"n": i})


def _mp_child(logger_name: str, count: int, close: bool) -> None:
    """Target of a multiprocessing 'fork' child: log ``count`` records, maybe close, return."""
    logger = logging.getLogger(logger_name)
    for i in range(count):
        logger.info("mp child %d", i, extra={"n": i})
    if close:
        for handler in logger.handlers:
            handler.close()


class TestRoundTrip:
    """Records cross the wire with every field intact, whatever the codec, mode and binding side."""

    @pytest.mark.parametrize("codec", ["protobuf", "json"])
    @pytest.mark.parametrize(("mode", "producer_binds"), TOPOLOGIES)
    def test_every_field_round_trips(self, make_link, make_capture, codec, mode, producer_binds):
        """Every LogRecord field, the exception chain, the stack and typed extras arrive exactly as logged."""
        link = make_link(mode, codec=codec, producer_binds=producer_binds)
        local = make_capture()
        link.logger.addHandler(local)
        log = link.logger
        try:
            try:
                raise KeyError("k")
            except KeyError as exc:
                raise ValueError("outer") from exc
        except ValueError:
            log.error("failed %s at %d%%", "job-7", 50, exc_info=True, stack_info=True, extra=EXTRAS)
        log.debug("literal 100%s and %(x)s stay as they are")
        log.log(25, "custom level %r", "x")
        assert link.capture.wait_for(3), f"only {len(link.capture)} of 3 records arrived"

        received = {r.msg: r for r in link.capture.records}
        assert len(received) == 3
        producer_id = f"{link.handler.identity.producer_id:016x}"
        for original in local.records:
            got = received[original.getMessage()]
            for attr in _SAME:
                assert getattr(got, attr) == getattr(original, attr), attr
            assert got.getMessage() == original.getMessage()
            assert got.args == ()
            assert got.exc_info is None
            assert got.taskName == getattr(original, "taskName", None)
            assert got.service == "test-svc"
            assert got.host == link.handler.host
            assert got.producer_id == producer_id
            assert got.seq == 1  # each record is the first on its own topic

        error = received["failed job-7 at 50%"]
        assert error.exc_text.startswith("Traceback (most recent call last):")
        assert "ValueError: outer" in error.exc_text
        assert error.stack_info.startswith("Stack (most recent call last):")
        assert error.exceptions == [
            {"type": "builtins.ValueError", "message": "outer", "relation": "raised"},
            {"type": "builtins.KeyError", "message": "'k'", "relation": "cause"},
        ]
        assert {k: getattr(error, k) for k in EXPECTED_EXTRAS} == EXPECTED_EXTRAS
        assert received["literal 100%s and %(x)s stay as they are"].exceptions is None
        assert received["custom level 'x'"].levelname == "Level 25"
        assert link.listener.stats["malformed"] == 0
        assert link.listener.stats["received"] == 3


class TestBurst:
    """A burst far larger than one socket buffer arrives complete and in order."""

    @pytest.mark.parametrize("mode", ["push", "pub"])
    def test_burst_of_10000_arrives_complete(self, make_link, mode):
        """10,000 records logged back to back all arrive, in order, with nothing dropped or gapped."""
        link = make_link(mode)
        for i in range(10_000):
            link.logger.info("burst %d", i, extra={"n": i})
        assert link.capture.wait_for(10_000, timeout=30), f"{len(link.capture)} of 10000 arrived"
        assert [r.n for r in link.capture.records] == list(range(10_000))
        assert link.handler.flush(5.0)  # the sender thread has counted what it sent
        assert link.handler.stats == {
            "sent": 10_000,
            "queued": 0,
            "dropped": 0,
            "oversize": 0,
            "errors": 0,
            "upstream_discarded": 0,
            "subscriptions_reset": 0,
            "received_not_sent": 0,
        }
        assert link.listener.stats["gaps"] == 0
        assert link.listener.stats["received"] == 10_000


class TestPubReadiness:
    """A pub handler holds records until a subscriber has told it what it wants."""

    def test_records_logged_before_a_subscriber_are_held_then_delivered(
        self, endpoint, make_handler, make_logger, make_listener, capture
    ):
        """Records logged with no subscriber wait in memory and arrive in order once one subscribes."""
        handler = make_handler(endpoint, mode="pub", bind=True)
        log = make_logger(None, handler)
        for i in range(5):
            log.info("early %d", i, extra={"n": i})
        assert handler.stats["sent"] == 0
        listener = make_listener(endpoint, capture, mode="sub")
        assert handler.wait_ready(5.0)
        assert capture.wait_for(5)
        assert [(r.n, r.seq) for r in capture.records] == [(i, i + 1) for i in range(5)]
        assert handler.flush(5.0)  # the sender thread has counted what it sent
        assert handler.stats == {
            "sent": 5,
            "queued": 0,
            "dropped": 0,
            "oversize": 0,
            "errors": 0,
            "upstream_discarded": 0,
            "subscriptions_reset": 0,
            "received_not_sent": 0,
        }
        assert listener.stats["gaps"] == 0

    def test_waiting_records_beyond_hwm_drop_the_oldest(
        self, endpoint, make_handler, make_logger, make_listener, capture
    ):
        """With hwm=10 and 25 records waiting, the 15 oldest are dropped and counted, the newest 10 arrive."""
        handler = make_handler(endpoint, mode="pub", bind=True, hwm=10)
        log = make_logger(None, handler)
        for i in range(25):
            log.info("early %d", i, extra={"n": i})
        make_listener(endpoint, capture, mode="sub")
        assert handler.wait_ready(5.0)
        assert capture.wait_for(10)
        time.sleep(0.1)
        assert [r.n for r in capture.records] == list(range(15, 25))
        assert handler.stats["dropped"] == 15
        assert handler.stats["sent"] == 10

    def test_idle_handler_sends_waiting_records_on_flush(
        self, endpoint, make_handler, make_logger, make_listener, capture, wait_until
    ):
        """A handler that logged before the subscriber and then went idle delivers on flush()."""
        handler = make_handler(endpoint, mode="pub", bind=True)
        log = make_logger(None, handler)
        for i in range(3):
            log.info("early %d", i)
        make_listener(endpoint, capture, mode="sub")

        def flushed() -> bool:
            handler.flush()
            return len(capture) >= 3

        assert wait_until(flushed, timeout=5.0), f"{len(capture)} of 3 waiting records arrived after flush()"
        assert [r.msg for r in capture.records] == [f"early {i}" for i in range(3)]

    def test_close_gives_up_on_waiting_records_after_linger(self, endpoint, make_handler, make_logger):
        """With no subscriber, close() waits about linger for one, then counts the waiting records as dropped."""
        handler = make_handler(endpoint, mode="pub", linger=0.3)
        log = make_logger(None, handler)
        for i in range(5):
            log.info("never delivered %d", i)
        started = time.monotonic()
        handler.close()
        elapsed = time.monotonic() - started
        assert 0.2 <= elapsed < 0.3 + 0.5, f"close() took {elapsed:.2f}s with linger=0.3"
        assert handler.stats["dropped"] == 5
        assert handler.stats["sent"] == 0


class TestThreads:
    """One handler shared by many threads loses and reorders nothing."""

    def test_8_threads_x_2000_records_arrive_complete(self, make_link):
        """8 threads logging 2,000 records each through one handler deliver all 16,000, each thread in order."""
        link = make_link("push")
        barrier = threading.Barrier(8)

        def work(t: int) -> None:
            barrier.wait(timeout=10)
            for i in range(2000):
                link.logger.info("thread %d record %d", t, i, extra={"t": t, "n": i})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        assert link.capture.wait_for(16_000, timeout=30), f"{len(link.capture)} of 16000 arrived"
        by_thread: dict[int, list[int]] = {}
        for record in link.capture.records:
            by_thread.setdefault(record.t, []).append(record.n)
        assert by_thread == {t: list(range(2000)) for t in range(8)}
        assert link.handler.stats["sent"] == 16_000
        assert link.listener.stats["gaps"] == 0


class TestDropMode:
    """A full socket drops and counts records instead of blocking the caller."""

    def test_full_socket_counts_drops_without_blocking(self, endpoint, make_handler, make_logger):
        """With no peer and a tiny hwm, sent + dropped == logged, most are dropped, and no call blocks."""
        handler = make_handler(endpoint, hwm=10, send_timeout=0.0, linger=0.0)
        log = make_logger(None, handler)
        log.info("opens the socket")
        slowest = 0.0
        for i in range(999):
            started = time.perf_counter()
            log.info("record %d", i)
            slowest = max(slowest, time.perf_counter() - started)
        stats = handler.stats
        assert stats["sent"] + stats["dropped"] + stats["queued"] == 1000, stats
        assert stats["dropped"] >= 900, stats
        assert stats["errors"] == 0
        assert slowest < 0.1, f"a logging call blocked for {slowest:.3f}s with send_timeout=0"

    def test_call_blocks_at_most_send_timeout(self, endpoint, make_handler, make_logger):
        """With send_timeout=0.2 a call on a full socket waits about 0.2 s, never much longer, then drops."""
        handler = make_handler(endpoint, hwm=1, send_timeout=0.2, linger=0.0)
        log = make_logger(None, handler)
        durations = []
        for i in range(6):
            started = time.perf_counter()
            log.info("record %d", i)
            durations.append(time.perf_counter() - started)
        assert handler.stats["dropped"] >= 3, handler.stats
        assert handler.stats["sent"] + handler.stats["dropped"] + handler.stats["queued"] == 6
        assert max(durations) < 0.2 + 0.3, f"a call blocked {max(durations):.3f}s with send_timeout=0.2"
        assert max(durations) >= 0.15, f"no call waited for room ({durations}): send_timeout ignored"

    def test_oversize_record_is_counted_not_sent(self, make_link):
        """A record whose payload exceeds max_message is counted as oversize and the next one still flows."""
        link = make_link("push", handler_options={"max_message": 2000})
        link.logger.info("x" * 5000)
        link.logger.info("small")
        assert link.capture.wait_for(1)
        assert link.handler.stats["oversize"] == 1
        assert link.handler.stats["sent"] == 1
        time.sleep(0.1)
        assert [r.msg for r in link.capture.records] == ["small"]


class TestFork:
    """A forked child logs through its own socket and identity; the parent is unaffected."""

    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    @pytest.mark.parametrize("mode", ["push", "pub"])
    def test_os_fork_child_uses_own_socket_and_identity(self, make_link, mode):
        """An os.fork() child's records carry its pid and a new producer_id; the parent keeps logging after."""
        link = make_link(mode)
        log = link.logger
        for i in range(5):
            log.info("parent before %d", i)
        assert link.capture.wait_for(5)
        parent_id = f"{link.handler.identity.producer_id:016x}"

        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                for i in range(200):
                    log.info("child %d", i, extra={"n": i})
                link.handler.close()
                code = 0
            finally:
                os._exit(code)
        assert wait_child(pid) == 0
        for i in range(5):
            log.info("parent after %d", i)
        assert link.capture.wait_for(210, timeout=10), f"{len(link.capture)} of 210 arrived"

        records = link.capture.records
        child = [r for r in records if r.msg.startswith("child")]
        parent = [r for r in records if r.msg.startswith("parent")]
        assert [r.n for r in child] == list(range(200))
        assert {r.process for r in child} == {pid}
        (child_id,) = {r.producer_id for r in child}
        assert child_id != parent_id
        assert [r.seq for r in child] == list(range(1, 201))
        assert {r.process for r in parent} == {os.getpid()}
        assert {r.producer_id for r in parent} == {parent_id}
        assert [r.seq for r in parent] == list(range(1, 11))
        assert link.handler.stats["sent"] == 10  # the child's sends are not the parent's
        assert link.listener.stats["gaps"] == 0

    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    @pytest.mark.parametrize("close", [True, False], ids=["child-closes", "child-just-returns"])
    def test_multiprocessing_fork_child_delivers(self, make_link, close):
        """A multiprocessing 'fork' child delivers every record, even when it returns without close()."""
        link = make_link("push")
        link.logger.info("parent before")
        assert link.capture.wait_for(1)
        count = 10_000
        ctx = multiprocessing.get_context("fork")
        proc = ctx.Process(target=_mp_child, args=(link.logger.name, count, close))
        proc.start()
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            pytest.fail("the multiprocessing child did not exit within 30 s")
        assert proc.exitcode == 0
        link.logger.info("parent after")
        assert link.capture.wait_for(count + 2, timeout=15), f"{len(link.capture) - 2} of {count} child records"

        records = link.capture.records
        child = [r for r in records if r.msg.startswith("mp child")]
        assert [r.n for r in child] == list(range(count))
        assert {r.process for r in child} == {proc.pid}
        assert {r.producer_id for r in child} != {f"{link.handler.identity.producer_id:016x}"}
        assert [r.msg for r in records if r.msg.startswith("parent")] == ["parent before", "parent after"]
        assert link.handler.stats["sent"] == 2

    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_handler_made_inside_a_multiprocessing_child_delivers(self, endpoint, make_listener, capture, method):
        """A handler a multiprocessing child creates itself delivers every record when the child just returns."""
        make_listener(endpoint, capture, mode="pull", bind=True)
        count = 20_000
        proc = multiprocessing.get_context(method).Process(
            target=_mp_child_own_handler, args=(endpoint, "mp.own", count)
        )
        proc.start()
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            pytest.fail("the multiprocessing child did not exit within 60 s")
        assert proc.exitcode == 0
        assert capture.wait_for(count, timeout=15), f"{len(capture)} of {count} child records"
        assert [r.n for r in capture.records] == list(range(count))


class TestExit:
    """A producer process delivers everything at exit, and never hangs on an unreachable peer."""

    @pytest.mark.parametrize("mode", ["push", "pub"])
    def test_sys_exit_flushes_every_record(self, mode, endpoint, helpers, make_listener, capture):
        """A subprocess that logs 10,000 records and calls sys.exit(0) delivers 10,000 of 10,000."""
        listener = make_listener(endpoint, capture, mode="pull" if mode == "push" else "sub", bind=True)
        proc = helpers.start(endpoint, 10_000, "--mode", mode, "--service", f"exit-{mode}", "--end", "exit")
        report = json.loads(helpers.finish(proc))
        assert capture.wait_for(10_000, timeout=15), f"{len(capture)} of 10000 arrived after sys.exit(0)"
        time.sleep(0.1)
        assert [r.n for r in capture.records] == list(range(10_000))
        assert {r.process for r in capture.records} == {report["pid"]}
        assert {r.service for r in capture.records} == {f"exit-{mode}"}
        assert listener.stats["gaps"] == 0

    @pytest.mark.parametrize("mode", ["push", "pub"])
    def test_exit_waits_within_linger_for_a_late_listener(self, mode, endpoint, helpers, make_listener, capture):
        """Records still queued at sys.exit(0) are delivered to a listener that appears only during exit."""
        proc = helpers.start(endpoint, 10_000, "--mode", mode, "--linger", 5, "--end", "exit")
        report = json.loads(helpers.read_line(proc))  # every record is logged, none can have left
        stats = report["stats"]
        assert stats["sent"] + stats["queued"] == 10_000 and stats["dropped"] == 0, stats  # queued in memory
        assert mode == "push" or stats["sent"] == 0, stats  # pub: waiting for a first subscriber
        listener = make_listener(endpoint, capture, mode="pull" if mode == "push" else "sub", bind=True)
        helpers.finish(proc)
        assert capture.wait_for(10_000, timeout=10), f"{len(capture)} of 10000 arrived"
        assert [r.n for r in capture.records] == list(range(10_000))
        assert listener.stats["gaps"] == 0

    @pytest.mark.parametrize("mode", ["push", "pub"])
    def test_unreachable_endpoint_exits_within_linger(self, mode, endpoint, helpers):
        """With nothing listening, a producer exits within linger (1 s) + 0.75 s of its last record.

        Interpreter start-up and the logging loop itself are reported but not
        bounded: on a loaded 2-core machine they alone can exceed 2.5 s.
        """
        started = time.monotonic()
        proc = helpers.start(endpoint, 10_000, "--mode", mode, "--end", "exit")  # default linger: 1 s
        report = json.loads(helpers.read_line(proc))
        logged = time.monotonic()
        helpers.finish(proc, timeout=15)
        ended = time.monotonic()
        exit_delay = ended - logged
        detail = f"(startup + logging {logged - started:.2f}s, then exit {exit_delay:.2f}s)"
        assert exit_delay <= 1.0 + 0.75, f"exit took {exit_delay:.2f}s, more than linger=1 s allows {detail}"
        assert report["stats"]["dropped"] == 0  # the records were queued, not dropped, until exit


class TestManyProducers:
    """Several producer processes share one pull listener without loss or reordering."""

    @pytest.mark.slow
    def test_4_processes_x_10000_records(self, endpoint, helpers, make_listener, capture):
        """4 processes x 10,000 records into one pull listener: all 40,000 arrive, each producer in order."""
        listener = make_listener(endpoint, capture, mode="pull", bind=True)
        procs = [helpers.start(endpoint, 10_000, "--service", f"p{i}", "--end", "close") for i in range(4)]
        reports = [json.loads(helpers.finish(p, timeout=60)) for p in procs]
        assert capture.wait_for(40_000, timeout=30), f"{len(capture)} of 40000 arrived"
        time.sleep(0.1)
        by_pid: dict[int, list[int]] = {}
        for record in capture.records:
            by_pid.setdefault(record.process, []).append(record.n)
        assert set(by_pid) == {r["pid"] for r in reports}
        for pid, ns in by_pid.items():
            assert ns == list(range(10_000)), f"producer {pid} lost or reordered records"
        assert listener.stats["received"] == 40_000
        assert listener.stats["gaps"] == 0
        # reported before close(): what the sender thread had not sent yet was still queued
        assert all(r["stats"]["sent"] + r["stats"]["queued"] == 10_000 for r in reports), reports
        assert all(r["stats"]["dropped"] == 0 for r in reports), reports


class TestExtras:
    """Every way of adding attributes to a record makes them usable at the listener."""

    def test_extra_adapter_filter_and_factory_attributes_arrive(self, make_link, make_logger):
        """extra=, a LoggerAdapter, a Filter and a LogRecord factory all yield attributes a Formatter can use."""
        link = make_link("push")

        class Tenant(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                record.tenant = "acme"
                return True

        link.handler.addFilter(Tenant())
        adapter = logging.LoggerAdapter(link.logger, {"request_id": "req-9"})
        old_factory = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = old_factory(*args, **kwargs)
            record.build = "b-17"
            return record

        logging.setLogRecordFactory(factory)
        try:
            adapter.warning("hello %s", "world")
            link.logger.warning("direct", extra={"request_id": "req-10", "user": "ann"})
        finally:
            logging.setLogRecordFactory(old_factory)
        assert link.capture.wait_for(2)
        via_adapter, direct = link.capture.records
        formatter = logging.Formatter("%(name)s|%(request_id)s|%(tenant)s|%(build)s|%(service)s|%(message)s")
        assert formatter.format(via_adapter) == f"{link.logger.name}|req-9|acme|b-17|test-svc|hello world"
        assert formatter.format(direct) == f"{link.logger.name}|req-10|acme|b-17|test-svc|direct"
        assert logging.Formatter("%(user)s").format(direct) == "ann"

    def test_extras_named_like_fabric_attributes_are_renamed(self, make_link):
        """An extra called 'host' or 'service' arrives as extra_<name> and cannot spoof the producer."""
        link = make_link("push")
        link.logger.info("spoof", extra={"host": "evil", "service": "fake", "seq": 99})
        assert link.capture.wait_for(1)
        (record,) = link.capture.records
        assert record.host == link.handler.host
        assert record.service == "test-svc"
        assert record.seq == 1
        assert (record.extra_host, record.extra_service, record.extra_seq) == ("evil", "fake", 99)


class TestDictConfig:
    """The handler can be configured from logging.config.dictConfig."""

    @pytest.mark.parametrize("codec", ["protobuf", "json"])
    def test_dictconfig_builds_a_working_handler(self, codec, endpoint, helpers, make_listener, capture):
        """{'class': 'fabric.ZmqHandler', 'endpoint': ..., 'mode': 'push'} ships records, formatter included."""
        make_listener(endpoint, capture, mode="pull", bind=True)
        proc = helpers.start(
            endpoint, 20, "--setup", "dictconfig", "--codec", codec, "--service", "dc", "--exception", "--end", "exit"
        )
        report = json.loads(helpers.finish(proc))
        assert capture.wait_for(21), f"{len(capture)} of 21 arrived"
        records = capture.records
        assert [r.n for r in records[:20]] == list(range(20))
        assert {r.service for r in records} == {"dc"}
        assert {r.process for r in records} == {report["pid"]}
        assert records[20].levelname == "ERROR"
        assert "ValueError: helper failure" in records[20].exc_text


class TestHandlerErrors:
    """Misuse fails loudly at construction; trouble at run time never reaches the caller."""

    @pytest.mark.parametrize("bad", ["foo", "", "tcp://", "127.0.0.1:5557", None])
    def test_bad_endpoint_raises_at_construction(self, bad):
        """An endpoint that is not a ZeroMQ address raises fabric.ConfigError (a ValueError) naming it."""
        with pytest.raises(fabric.ConfigError, match="endpoint"):
            fabric.ZmqHandler(bad)

    def test_unresolvable_endpoint_raises_when_opened(self, make_handler):
        """'tcp://nonsense' passes the syntax check but wait_ready() raises a ValueError naming it."""
        handler = make_handler("tcp://nonsense")
        with pytest.raises(ValueError, match="tcp://nonsense"):
            handler.wait_ready(1.0)

    def test_unresolvable_endpoint_never_raises_from_logging(self, make_handler, make_logger, monkeypatch):
        """Logging through a handler whose socket cannot open counts an error instead of raising."""
        monkeypatch.setattr(logging, "raiseExceptions", False)
        handler = make_handler("tcp://nonsense")
        log = make_logger(None, handler)
        log.info("goes nowhere")
        assert handler.stats["errors"] == 1

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"mode": "sub"}, "mode"),
            ({"codec": "xml"}, "codec"),
            ({"level": "LOUD"}, "LOUD"),
            ({"send_timeout": -1}, "negative"),
        ],
    )
    def test_bad_options_raise(self, endpoint, options, match):
        """An unknown mode, codec or level name, or a negative timeout, raises fabric.ConfigError (a ValueError)."""
        with pytest.raises(fabric.ConfigError, match=match):
            fabric.ZmqHandler(endpoint, **options)

    @pytest.mark.parametrize("mode", ["push", "pub"])
    def test_wait_ready_on_a_closed_handler_returns_false(self, endpoint, make_handler, mode):
        """wait_ready() after close() answers False at once instead of raising an internal error."""
        handler = make_handler(endpoint, mode=mode)
        handler.close()
        started = time.monotonic()
        assert handler.wait_ready(2.0) is False
        assert time.monotonic() - started < 0.5

    def test_logging_after_close_is_dropped_silently(self, make_link):
        """A record logged after close() is counted as dropped and raises nothing."""
        link = make_link("push")
        link.logger.info("before")
        link.handler.close()
        link.logger.info("after")
        assert link.handler.stats["dropped"] == 1
        assert link.handler.stats["errors"] == 0
        assert link.capture.wait_for(1)
        time.sleep(0.1)
        assert [r.msg for r in link.capture.records] == ["before"]
