"""Attacks on the producer's sender thread (fabric/_sender.py, fabric/handler.py), with real sockets and processes.

Tests that fail here show a defect in the current code; those that pass are
attacks the sender withstood, kept as regressions. Everything talks over
127.0.0.1, every wait is bounded and every subprocess is killed at teardown.
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

import fabric
from tests.helpers.net import ROOT, child_env, tcp_endpoint
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

SCRIPTS = Path(__file__).resolve().parent / "attack_scripts"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _accounted(stats: dict[str, int]) -> int:
    return stats["sent"] + stats["dropped"] + stats["queued"] + stats["oversize"]


@pytest.fixture
def pull() -> Iterator[tuple[zmq.Socket[bytes], str]]:
    """A raw PULL socket bound on 127.0.0.1 (closed with linger 0) and its endpoint."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(linger=0)
    ctx.term()


def _drain(sock: zmq.Socket[bytes], want: int, timeout: float = 10.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        if sock.poll(50):
            while True:
                try:
                    got.append(sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
    return got


@pytest.fixture
def children() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start child Python processes running an attack script; every one still running is killed at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(script: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / script), *args],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.handlers[:] = [handler]
    return log


# --------------------------------------------------------------------------- resources


class TestResources:
    """Handlers made and dropped by the hundred leave no threads and no file descriptors behind."""

    def test_closed_handlers_do_not_leak_file_descriptors(self, pull):
        """200 handlers, each used once and closed: the process's open fds do not grow with them."""
        sock, endpoint = pull
        log = _logger(f"fdleak.{os.getpid()}", logging.NullHandler())
        warm = fabric.ZmqHandler(endpoint, service="fd")
        log.handlers[:] = [warm]
        log.info("warm")
        warm.close()
        gc.collect()
        before, threads = _fds(), threading.active_count()
        for i in range(200):
            handler = fabric.ZmqHandler(endpoint, service="fd", linger=1.0)
            log.handlers[:] = [handler]
            log.info("record %d", i)
            handler.close()
        log.handlers[:] = []
        gc.collect()
        assert len(_drain(sock, 201)) == 201
        assert wait_until(lambda: threading.active_count() <= threads, 5.0)
        grown = _fds() - before
        assert grown < 20, f"200 closed handlers left {grown} more open file descriptors (the wake-up pipes?)"

    def test_garbage_collected_handlers_leave_no_threads_or_fds(self, pull):
        """200 handlers used once and dropped without close(): their threads end and their fds are freed."""
        sock, endpoint = pull
        log = _logger(f"gcleak.{os.getpid()}", logging.NullHandler())
        gc.collect()
        before, threads = _fds(), threading.active_count()
        for i in range(200):
            handler = fabric.ZmqHandler(endpoint, service="gc", linger=1.0)
            log.handlers[:] = [handler]
            log.info("record %d", i)
            log.handlers[:] = []
            del handler
        gc.collect()
        assert len(_drain(sock, 200)) == 200
        assert wait_until(lambda: threading.active_count() <= threads, 5.0), "sender threads outlived their handlers"
        assert wait_until(lambda: _fds() - before < 20, 3.0), f"{_fds() - before} more fds after 200 dropped handlers"

    def test_memory_stays_bounded_with_the_peer_absent(self, children):
        """200,000 records of 1 KB with nobody listening: RSS grows by about buffer_bytes at most; drops counted."""
        proc = children("rss_absent.py", "200000", "1000")
        out, err = proc.communicate(timeout=50)
        assert proc.returncode == 0, err
        result = json.loads(out)
        stats = result["stats"]
        assert result["grown"] < 160 * 1024 * 1024, f"RSS grew {result['grown'] / 2**20:.0f} MiB"
        assert stats["queued"] <= 50_000 and stats["dropped"] >= 150_000, stats
        assert _accounted(stats) == 200_001, stats  # with the warm-up record


# --------------------------------------------------------------------------- the logging call's bound


class TestCallerNeverWaitsLong:
    """The logging call waits at most send_timeout, and never touches the socket."""

    def test_send_timeout_bounds_every_call_when_many_threads_log(self, make_handler):
        """Peer absent, queue full, send_timeout=0.2, 8 threads: no logging call takes much over 0.2 s."""
        handler = make_handler(tcp_endpoint(), hwm=10, send_timeout=0.2, linger=0.0)
        log = _logger(f"timeout.{os.getpid()}", handler)
        for i in range(10):
            log.info("fill %d", i)
        worst: list[float] = []

        def produce() -> None:
            longest = 0.0
            for _ in range(3):
                began = time.monotonic()
                log.info("no room")
                longest = max(longest, time.monotonic() - began)
            worst.append(longest)

        threads = [threading.Thread(target=produce) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(worst) == 8
        assert max(worst) < 0.6, (
            f"a logging call took {max(worst):.2f} s with send_timeout=0.2: callers queue on the handler lock "
            "while one of them sleeps for room"
        )

    def test_send_timeout_zero_never_waits_with_the_peer_absent(self, make_handler):
        """Peer absent, hwm=100, send_timeout=0: 20,000 calls, none over 50 ms; every record accounted for."""
        handler = make_handler(tcp_endpoint(), hwm=100, linger=0.0)
        log = _logger(f"nowait.{os.getpid()}", handler)
        worst = 0.0
        for i in range(20_000):
            began = time.monotonic()
            log.info("record %d", i)
            worst = max(worst, time.monotonic() - began)
        assert worst < 0.05, f"a call took {worst:.3f} s"
        stats = handler.stats
        assert stats["queued"] == 100 and stats["dropped"] == 19_900 and _accounted(stats) == 20_000, stats


# --------------------------------------------------------------------------- races


class TestRaces:
    """Flush and close racing with logging threads: nothing hangs, every record is accounted for, order holds."""

    def test_threads_logging_while_another_flushes_repeatedly(self, make_link):
        """4 threads x 2,000 records while a fifth thread flushes throughout: all arrive, whole series, no dup."""
        link = make_link("push")
        stop = threading.Event()
        flushes: list[bool] = []

        def flusher() -> None:
            # from the first record on, so that flushes find records in flight
            wait_until(lambda: link.handler.stats["sent"] + link.handler.stats["queued"] > 0 or stop.is_set(), 10)
            while not stop.is_set():
                flushes.append(link.handler.flush(2.0))

        def produce(t: int) -> None:
            for i in range(2_000):
                link.logger.info("t%d %d", t, i, extra={"t": t, "n": i})

        flushing = threading.Thread(target=flusher)
        flushing.start()
        threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        stop.set()
        flushing.join(30)
        assert link.handler.flush(5.0)
        assert link.capture.wait_for(8_000, timeout=20, name=link.logger.name), len(link.capture)
        records = link.capture.named(link.logger.name)
        assert len(records) == 8_000
        # A flush that closed the connection goes on under a new producer id, so the two
        # connections' records, which the receiver may interleave, are two whole series.
        series: dict[int, list[logging.LogRecord]] = {}
        for record in records:
            series.setdefault(record.producer_id, []).append(record)
        assert len(series) > 1, "no flush closed the connection: nothing was tested"
        for own in series.values():
            assert [r.seq for r in own] == list(range(1, len(own) + 1)), "a series arrived out of order or gapped"
            for t in range(4):
                ns = [r.n for r in own if r.t == t]
                assert ns == sorted(ns), f"thread {t} reordered within one connection"
        assert link.listener.stats["gaps"] == 0
        for t in range(4):
            assert sorted(r.n for r in records if r.t == t) == list(range(2_000)), f"thread {t} lost records"
        stats = link.handler.stats
        assert stats["sent"] == 8_000 and stats["dropped"] == 0 and stats["queued"] == 0, stats

    def test_close_racing_with_logging_threads_accounts_for_every_record(self, make_link):
        """close() while 4 threads log: it returns within linger, and sent + dropped + queued == records logged."""
        link = make_link("push", handler_options={"linger": 1.0})
        logged = [0] * 4
        started = threading.Barrier(5)

        def produce(t: int) -> None:
            started.wait(5)
            for i in range(5_000):
                link.logger.info("t%d %d", t, i)
                logged[t] += 1

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        started.wait(5)
        time.sleep(0.01)
        began = time.monotonic()
        link.handler.close()
        took = time.monotonic() - began
        for thread in threads:
            thread.join(30)
        assert took < 2.0, f"close() took {took:.2f} s with linger=1"
        stats = link.handler.stats
        assert _accounted(stats) == sum(logged), (stats, sum(logged))
        assert stats["queued"] == 0, stats
        assert link.capture.wait_for(stats["sent"], timeout=10, name=link.logger.name)

    def test_handler_made_in_one_thread_used_from_others(self, make_listener, make_capture):
        """A handler made in a worker thread and used from 3 others delivers everything, in per-thread order."""
        endpoint = tcp_endpoint()
        capture = make_capture()
        make_listener(endpoint, capture, mode="pull", bind=True)
        made: list[fabric.ZmqHandler] = []
        maker = threading.Thread(target=lambda: made.append(fabric.ZmqHandler(endpoint, service="made-elsewhere")))
        maker.start()
        maker.join(10)
        handler = made[0]
        try:
            log = _logger(f"elsewhere.{os.getpid()}", handler)

            def produce(t: int) -> None:
                for i in range(1_000):
                    log.info("t%d", t, extra={"t": t, "n": i})

            threads = [threading.Thread(target=produce, args=(t,)) for t in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert handler.flush(5.0)
            assert capture.wait_for(3_000, timeout=10, name=log.name)
            records = capture.named(log.name)
            for t in range(3):
                assert [r.n for r in records if r.t == t] == list(range(1_000))
        finally:
            handler.close()


# --------------------------------------------------------------------------- fork


def _mp_child(name: str) -> None:
    log = logging.getLogger(name)
    for i in range(50):
        log.info("mp child %d", i)


def _mp_own_handler(endpoint: str, name: str) -> None:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(fabric.ZmqHandler(endpoint, service="mp-own", linger=5.0))
    for i in range(50):
        log.info("mp child %d", i)


class TestFork:
    """Forks while other threads log: each child gets its own sender; nothing of the parent leaks into it."""

    def test_fork_while_threads_log(self, make_link):
        """os.fork() 5 times while 3 threads log: each child's 20 records arrive under its own pid, none hangs."""
        link = make_link("push")
        stop = threading.Event()

        def chatter(t: int) -> None:
            i = 0
            while not stop.is_set():
                link.logger.info("parent t%d %d", t, i, extra={"t": t, "n": i})
                i += 1

        threads = [threading.Thread(target=chatter, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        pids = []
        try:
            for _ in range(5):
                time.sleep(0.01)
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        for i in range(20):
                            link.logger.info("child %d", i, extra={"t": -1, "n": i})
                        code = 0 if link.handler.flush(5.0) else 2
                        link.handler.close()
                    finally:
                        os._exit(code)
                pids.append(pid)
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        deadline = time.monotonic() + 20
        codes = []
        for pid in pids:
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes.append(os.waitstatus_to_exitcode(status))
                    break
                time.sleep(0.01)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                codes.append("hung")
        assert codes == [0] * 5, f"children's exit codes: {codes}"
        assert link.capture.wait_for(100, timeout=10, name=link.logger.name)

        def children_done() -> bool:
            got = [r for r in link.capture.named(link.logger.name) if r.t == -1]
            return len(got) >= 100

        assert wait_until(children_done, 10)
        child_records = [r for r in link.capture.named(link.logger.name) if r.t == -1]
        for pid in pids:
            mine = [r.n for r in child_records if r.process == pid]
            assert mine == list(range(20)), f"child {pid}: {mine}"

    @pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
    def test_multiprocessing_children_deliver_at_their_exit(self, method, make_link):
        """A multiprocessing child (fork: the inherited handler; forkserver/spawn: its own, never closed) delivers
        its 50 records at its exit, under its own pid."""
        link = make_link("push")
        link.logger.info("parent first")
        ctx = multiprocessing.get_context(method)
        if method == "fork":
            proc = ctx.Process(target=_mp_child, args=(link.logger.name,))
        else:
            proc = ctx.Process(target=_mp_own_handler, args=(link.endpoint, link.logger.name))
        proc.start()
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        assert proc.exitcode == 0
        assert link.capture.wait_for(51, timeout=10, name=link.logger.name)
        child = [r.getMessage() for r in link.capture.named(link.logger.name) if r.process == proc.pid]
        assert child == [f"mp child {i}" for i in range(50)]


# --------------------------------------------------------------------------- exit and signals


class TestExit:
    """Interpreter exit and signals: bounded by linger, what is queued is delivered."""

    def test_exit_with_the_peer_absent_ends_within_linger(self, children):
        """One handler, peer absent, linger=1: sys.exit() ends in about 1 s, not more."""
        began = time.monotonic()
        proc = children("exit_absent.py", "1", "1.0")
        proc.communicate(timeout=20)
        took = time.monotonic() - began
        assert proc.returncode == 0
        assert took < 2.5, f"exit took {took:.2f} s with linger=1"

    def test_exit_with_several_handlers_and_absent_peers_ends_within_linger(self, children):
        """Three handlers, peers absent, linger=1: exit ends within about linger, not 3 x linger."""
        began = time.monotonic()
        proc = children("exit_absent.py", "3", "1.0")
        proc.communicate(timeout=20)
        took = time.monotonic() - began
        assert proc.returncode == 0
        assert took < 2.5, (
            f"exit took {took:.2f} s with 3 handlers and linger=1: logging.shutdown() closes them one after "
            "another and each waits its whole linger"
        )

    def test_sigterm_delivers_records_still_gathering(self, children, make_listener, make_capture):
        """SIGTERM while 500 records wait out a 1 s batch_delay: they all arrive, and the process dies of SIGTERM."""
        endpoint = tcp_endpoint()
        capture = make_capture()
        make_listener(endpoint, capture, mode="pull", bind=True)
        proc = children("sigterm_flush.py", endpoint, "500")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "logged"
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        assert proc.returncode == -signal.SIGTERM
        assert capture.wait_for(500, timeout=10, name="doomed"), len(capture.named("doomed"))
        assert [r.getMessage() for r in capture.named("doomed")] == [f"doomed {i}" for i in range(500)]

    def test_a_signal_handler_that_logs_while_the_main_thread_logs(self, children, make_listener, make_capture):
        """SIGALRM every 0.5 ms logs through the same handler during 20,000 main records: no hang, no error, order."""
        endpoint = tcp_endpoint()
        capture = make_capture()
        make_listener(endpoint, capture, mode="pull", bind=True)
        proc = children("signal_logs.py", endpoint, "20000")
        out, err = proc.communicate(timeout=40)
        assert proc.returncode == 0, err
        result = json.loads(out.splitlines()[-1])
        stats, fired = result["stats"], result["fired"]
        assert result["delivered"], result
        assert fired > 0 and stats["errors"] == 0 and stats["dropped"] == 0, result
        assert stats["sent"] == 20_000 + 2 * fired, result
        assert capture.wait_for(20_000 + 2 * fired, timeout=15)
        main = capture.named("main")
        assert [r.seq for r in main] == list(range(1, len(main) + 1)), "main's sequence arrived out of order"
        assert [r.getMessage() for r in main if r.getMessage().startswith("main")] == [
            f"main {i}" for i in range(20_000)
        ]


# --------------------------------------------------------------------------- options and sizes


class TestOptionsAndSizes:
    """Edge values of batch_delay, flush_level and max_message."""

    def test_batch_delay_zero_delivers_everything_in_order(self, make_link):
        """batch_delay=0: 5,000 records arrive in order with no gap."""
        link = make_link("push", handler_options={"batch_delay": 0})
        for i in range(5_000):
            link.logger.info("r %d", i)
        assert link.capture.wait_for(5_000, timeout=15, name=link.logger.name)
        assert [r.seq for r in link.capture.named(link.logger.name)] == list(range(1, 5_001))

    @pytest.mark.parametrize("flush_level", ["INFO", logging.INFO, 15])
    def test_flush_level_as_name_or_number(self, flush_level, make_link):
        """flush_level given as a name, a level number or an odd number: INFO leaves at once despite batch_delay=1."""
        link = make_link("push", handler_options={"batch_delay": 1.0, "flush_level": flush_level})
        began = time.monotonic()
        link.logger.info("now")
        assert link.capture.wait_for(1, timeout=5, name=link.logger.name)
        assert time.monotonic() - began < 0.5

    def test_a_bad_flush_level_is_refused(self, make_handler):
        """An unknown level name for flush_level raises ConfigError at construction."""
        with pytest.raises(fabric.ConfigError):
            make_handler(tcp_endpoint(), flush_level="LOUD")

    def test_records_at_and_just_over_max_message(self, make_link):
        """max_message=64 KiB: a record just under it arrives; one over it is counted as oversize, not sent."""
        link = make_link("push", handler_options={"max_message": 64 * 1024})
        link.logger.info("%s", "a" * (60 * 1024))
        link.logger.info("%s", "b" * (70 * 1024))
        link.logger.info("after")
        assert link.handler.flush(5.0)
        assert link.capture.wait_for(2, timeout=5, name=link.logger.name)
        stats = link.handler.stats
        assert stats["oversize"] == 1 and stats["sent"] == 2, stats
        assert [r.getMessage()[:5] for r in link.capture.named(link.logger.name)] == ["aaaaa", "after"]

    def test_huge_records_within_max_message_all_arrive(self, make_link):
        """20 records of 900 KB each (default max_message 1 MiB): all arrive intact and in order."""
        link = make_link("push")
        for i in range(20):
            link.logger.info("%d %s", i, "z" * 900_000)
        assert link.capture.wait_for(20, timeout=20, name=link.logger.name)
        got = link.capture.named(link.logger.name)
        assert [int(r.getMessage().split()[0]) for r in got] == list(range(20))
        assert link.handler.stats["sent"] == 20 and link.handler.stats["oversize"] == 0


# --------------------------------------------------------------------------- peers that come and go


class TestPeers:
    """A peer that disconnects and comes back, and pub mode before a first subscriber."""

    def test_peer_restarts_mid_burst(self, make_handler, make_capture):
        """The PULL listener stops and starts again mid-burst: records arrive in order, none twice, all accounted."""
        endpoint = tcp_endpoint()
        handler = make_handler(endpoint, linger=2.0)
        log = _logger(f"restart.{os.getpid()}", handler)
        seen: list[int] = []
        for round_ in range(3):
            capture = make_capture()
            listener = fabric.ZmqListener(endpoint, capture, mode="pull", bind=True)
            listener.start()
            try:
                for i in range(2_000):
                    log.info("r", extra={"n": round_ * 2_000 + i})
                wait_until(lambda c=capture: len(c.named(log.name)) >= 1_000, 5)
            finally:
                listener.stop()
            seen += [r.n for r in capture.named(log.name)]
        capture = make_capture()
        listener = fabric.ZmqListener(endpoint, capture, mode="pull", bind=True)
        listener.start()
        try:
            assert handler.flush(5.0)
            wait_until(lambda: handler.stats["queued"] == 0, 5)
            time.sleep(0.2)
        finally:
            listener.stop()
        seen += [r.n for r in capture.named(log.name)]
        assert seen == sorted(seen), "records arrived out of order"
        assert len(seen) == len(set(seen)), "a record arrived twice"
        stats = handler.stats
        assert _accounted(stats) == 6_000, stats
        assert len(seen) >= 3_000, f"only {len(seen)} of 6,000 records arrived across restarts"

    def test_pub_mode_before_a_subscriber_keeps_the_newest(self, make_handler, make_listener, make_capture):
        """pub, hwm=100, 1,000 records before anyone subscribes: the newest 100 arrive once a subscriber comes."""
        endpoint = tcp_endpoint()
        handler = make_handler(endpoint, mode="pub", bind=True, hwm=100)
        log = _logger(f"pubfirst.{os.getpid()}", handler)
        for i in range(1_000):
            log.info("r %d", i, extra={"n": i})
        assert handler.stats["queued"] == 100 and handler.stats["dropped"] == 900, handler.stats
        capture = make_capture()
        make_listener(handler._sender.endpoint, capture, mode="sub", bind=False)
        assert handler.wait_ready(5.0)
        assert capture.wait_for(100, timeout=5, name=log.name)
        assert [r.n for r in capture.named(log.name)] == list(range(900, 1_000))

    def test_wait_ready_in_pub_mode_times_out_without_a_subscriber(self, make_handler):
        """wait_ready(0.3) on a pub handler nobody subscribes to returns False after about 0.3 s."""
        handler = make_handler(tcp_endpoint(), mode="pub")
        began = time.monotonic()
        assert handler.wait_ready(0.3) is False
        assert 0.25 < time.monotonic() - began < 1.5

    def test_flush_in_pub_mode_without_a_subscriber_is_bounded(self, make_handler):
        """flush(0.3) on a pub handler holding records for a first subscriber returns False within about 0.3 s."""
        handler = make_handler(tcp_endpoint(), mode="pub")
        log = _logger(f"pubflush.{os.getpid()}", handler)
        log.info("waiting")
        began = time.monotonic()
        assert handler.flush(0.3) is False
        assert time.monotonic() - began < 1.5
        assert handler.stats["queued"] == 1
