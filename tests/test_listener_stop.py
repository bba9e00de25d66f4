"""ZmqListener.stop() and local handler failures: nothing that arrived vanishes, no handler ends the thread.

Real sockets on 127.0.0.1 only. A record has "arrived" once every byte its
producer sent has left the kernel's socket queues on both ends of the
connection (read from ``/proc/net/tcp``), so the tests know what is in the
listener's socket without sleeping and hoping.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import fabric
from tests.helpers.factories import zmq_context
from tests.helpers.net import host_port, tcp_endpoint
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")


def tcp_queues_empty(port: int) -> bool:
    """Whether no IPv4 TCP connection to or from ``port`` on this host has bytes waiting in a kernel queue."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if port in (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)):
            tx, rx = (int(q, 16) for q in queues.split(":"))
            if tx or rx:
                return False
    return True


class Slow(logging.Handler):
    """Counts records; the first waits for ``gate``, each takes ``delay`` seconds."""

    def __init__(self, delay: float, gate: threading.Event) -> None:
        super().__init__()
        self.delay = delay
        self.gate = gate
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.gate.wait(10)
        time.sleep(self.delay)
        self.count += 1


class Counter(logging.Handler):
    """Counts records, nothing else (the cheapest real handler)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@pytest.fixture
def listeners() -> Iterator[list[fabric.ZmqListener]]:
    """Listeners a test started; stopped at teardown (discarding what is left at once)."""
    made: list[fabric.ZmqListener] = []
    yield made
    for listener in made:
        listener.stop(timeout=0)


def fill(
    producer_mode: str,
    listener_mode: str,
    handler: logging.Handler,
    listeners: list[fabric.ZmqListener],
    count: int,
    listener_binds: bool = True,
) -> fabric.ZmqListener:
    """Start a listener, send it ``count`` records from a real producer, and wait until all arrived."""
    endpoint = tcp_endpoint()
    listener = fabric.ZmqListener(endpoint, handler, mode=listener_mode, bind=listener_binds)  # type: ignore[arg-type]
    listener.start()
    listeners.append(listener)
    producer = fabric.ZmqHandler(
        endpoint,
        mode=producer_mode,  # type: ignore[arg-type]
        bind=not listener_binds,
        service="stop-test",
        linger=5.0,
        send_timeout=5.0,
    )
    try:
        assert producer.wait_ready(5.0), "the producer never reached the listener"
        for i in range(count):
            producer.handle(logging.LogRecord("stop.test", logging.INFO, __file__, 1, "record %d", (i,), None))
    finally:
        producer.close()  # everything has left the producer's zmq queue
    assert producer.stats["sent"] == count, producer.stats
    port = host_port(endpoint)[1]
    assert wait_until(lambda: tcp_queues_empty(port), timeout=10), "bytes stayed in a kernel socket queue"
    return listener


class TestStopHandsOverWhatArrived:
    """stop() stops new arrivals, then hands every queued record to the handlers or counts it as discarded."""

    @pytest.mark.parametrize(
        ("producer_mode", "listener_mode", "listener_binds"),
        [("push", "pull", True), ("pub", "sub", True), ("push", "pull", False)],
        ids=["pull-bound", "sub-bound", "pull-connected"],
    )
    def test_a_slow_handler_gets_all_5000_records(
        self, producer_mode: str, listener_mode: str, listener_binds: bool, listeners: Any
    ) -> None:
        """5,000 records queued behind a slow handler are all handled by stop(), none discarded."""
        gate = threading.Event()
        slow = Slow(0.0006, gate)
        listener = fill(producer_mode, listener_mode, slow, listeners, 5000, listener_binds)
        assert slow.count == 0
        threading.Timer(0.1, gate.set).start()
        listener.stop()
        assert slow.count == 5000, f"stop() handed {slow.count} of 5000 arrived records to the handler"
        assert listener.stats["discarded"] == 0
        assert listener.stats["received"] == 5000

    def test_a_timeout_counts_every_record_it_discards(self, listeners: Any) -> None:
        """stop(timeout) returns soon after the timeout; handled + discarded is exactly what arrived."""
        gate = threading.Event()
        slow = Slow(0.002, gate)
        listener = fill("push", "pull", slow, listeners, 5000)
        gate.set()
        started = time.monotonic()
        listener.stop(timeout=0.3)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"stop(timeout=0.3) took {elapsed:.2f}s"
        assert listener.stats["discarded"] > 0
        assert slow.count + listener.stats["discarded"] == 5000, (slow.count, listener.stats)

    def test_a_flood_into_a_connected_listener_cannot_keep_stop_running(self, craft: Any) -> None:
        """stop() on a listener connected to a peer that never stops sending returns in a bounded time."""
        with zmq_context() as ctx:
            push = ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.SNDTIMEO, 100)
            port = push.bind_to_random_port("tcp://127.0.0.1")
            frames = craft.frames(craft.record("stop.flood", "flood"), 1)
            counter = Counter()
            listener = fabric.ZmqListener(f"tcp://127.0.0.1:{port}", counter, mode="pull")
            listener.start()
            running = threading.Event()
            running.set()

            def flood() -> None:
                give_up = time.monotonic() + 30.0  # bounded even if stop() never returns
                while running.is_set() and time.monotonic() < give_up:
                    with contextlib.suppress(zmq.Again):  # a full queue: try again
                        push.send_multipart(frames)

            sender = threading.Thread(target=flood)
            sender.start()
            try:
                assert wait_until(lambda: counter.count >= 1000, timeout=10)
                started = time.monotonic()
                listener.stop()
                elapsed = time.monotonic() - started
            finally:
                running.clear()
                sender.join(35)
                listener.stop(timeout=0)
        assert elapsed < 10.0, f"stop() ran for {elapsed:.1f}s while the peer kept sending"
        assert listener.stats["errors"] == 0

    def test_a_stopped_listener_starts_again(self, endpoint: str, make_handler: Any, make_logger: Any) -> None:
        """start() after stop() opens a new socket and records flow again."""
        counter = Counter()
        listener = fabric.ZmqListener(endpoint, counter, mode="pull", bind=True)
        log = make_logger(None, make_handler(endpoint))
        for round_ in (1, 2):
            listener.start()
            try:
                log.info("round %d", round_)
                assert wait_until(lambda n=round_: counter.count >= n, timeout=5)
            finally:
                listener.stop()
        assert counter.count == 2


class Raises(logging.Handler):
    """Raises ``exc`` for records whose message is "bad"."""

    def __init__(self, exc: type[BaseException]) -> None:
        super().__init__()
        self.exc = exc

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "bad":
            raise self.exc("from a local handler")


def diag_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages logged on ``logfabric.listener``."""
    return [r.getMessage() for r in caplog.records if r.name == "logfabric.listener"]


class TestLocalHandlerFailures:
    """Whatever a local handler raises is counted in errors, said once, and the listener goes on."""

    @pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, GeneratorExit, RuntimeError])
    def test_records_after_the_failure_still_arrive(
        self, exc: type[BaseException], make_link: Callable[..., Any], caplog: pytest.LogCaptureFixture
    ) -> None:
        """A handler raising ``exc`` on two records: later records arrive, errors == 2, one warning."""
        caplog.set_level(logging.WARNING, logger="logfabric.listener")
        link = make_link("push")
        link.listener.handlers = (Raises(exc), *link.listener.handlers)
        for msg in ("before", "bad", "bad", "after"):
            link.logger.info(msg)
        assert link.capture.wait_for(4), f"only {len(link.capture)} of 4 records arrived"
        assert [r.msg for r in link.capture.records] == ["before", "bad", "bad", "after"]
        assert link.listener.stats["errors"] == 2
        warnings = diag_messages(caplog)
        assert len(warnings) == 1 and exc.__name__ in warnings[0], warnings

    def test_a_raising_prepare_override_does_not_end_the_listener(
        self, endpoint: str, make_handler: Any, make_logger: Any, capture: Any
    ) -> None:
        """A subclass whose prepare() raises SystemExit for one record keeps receiving the next ones."""

        class Exits(fabric.ZmqListener):
            def prepare(self, record: Any) -> Any:
                if record.msg == "bad":
                    sys.exit(3)
                return record

        listener = Exits(endpoint, capture, mode="pull", bind=True)
        listener.start()
        try:
            log = make_logger(None, make_handler(endpoint))
            for msg in ("bad", "after"):
                log.info(msg)
            assert capture.wait_for(1)
            assert [r.msg for r in capture.records] == ["after"]
            assert listener.stats["errors"] == 1
        finally:
            listener.stop()

    def test_a_handler_that_fails_on_its_own_warning_is_still_reported(
        self,
        endpoint: str,
        make_handler: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """With dispatch="loggers", a root handler raising on every record: the failure is written to stderr."""

        class Always(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                raise SystemExit("always")

        root = logging.getLogger()
        always = Always()
        root.addHandler(always)
        listener = fabric.ZmqListener(endpoint, mode="pull", bind=True, dispatch="loggers")
        listener.start()
        try:
            producer = make_handler(endpoint)
            for i in range(3):  # a name with no local logger: the record goes to the root logger's handlers
                producer.handle(logging.LogRecord("remote.only", logging.INFO, __file__, 1, "record %d", (i,), None))
            assert wait_until(lambda: listener.stats["errors"] >= 3, timeout=5), listener.stats
        finally:
            listener.stop()
            root.removeHandler(always)
        assert "SystemExit" in capsys.readouterr().err


class TestLocalSurprises:
    """What the listener's own configuration throws at its thread does not end it either."""

    def test_a_resolver_that_raises_does_not_end_the_listener(
        self, make_handler: Any, make_logger: Any, capture: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A dns+tcp resolver raising RuntimeError at a refresh is reported; records keep arriving."""
        caplog.set_level(logging.WARNING, logger="logfabric.listener")
        calls = []

        def resolver(host: str, port: int) -> list[str]:
            calls.append(host)
            if len(calls) > 1:
                raise RuntimeError("resolver bug")
            return ["127.0.0.1"]

        port = host_port(tcp_endpoint())[1]
        producer = make_handler(f"tcp://127.0.0.1:{port}", bind=True, send_timeout=5.0)
        log = make_logger(None, producer)
        listener = fabric.ZmqListener(
            f"dns+tcp://logs.example:{port}", capture, mode="pull", resolver=resolver, resolve_interval=0.05
        )
        listener.start()
        try:
            log.info("first")
            assert capture.wait_for(1)
            assert wait_until(lambda: len(calls) > 2, timeout=5), "the listener stopped re-resolving"
            log.info("after the resolver failed")
            assert capture.wait_for(2), "the listener thread ended when its resolver raised"
        finally:
            listener.stop()
        assert any("resolver bug" in m for m in diag_messages(caplog))
