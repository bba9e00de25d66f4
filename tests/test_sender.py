"""The sender thread: bursts, latency bounds, order under threads, its own failures and its own records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import fabric
from fabric import _sender
from tests.helpers.net import ROOT, child_env, tcp_endpoint


def _arrival(capture, name: str, timeout: float = 5.0) -> float:
    """The monotonic time the first record of logger ``name`` reached ``capture``."""
    assert capture.wait_for(1, timeout=timeout, name=name), f"no record of {name} arrived"
    return time.monotonic()


class TestLatency:
    """A record waits at most batch_delay; a record of flush_level or above does not wait."""

    def test_a_lone_info_record_waits_about_batch_delay(self, make_link):
        """With batch_delay=0.3, a lone INFO record arrives after about 0.3 s, not at once and not much later."""
        link = make_link("push", handler_options={"batch_delay": 0.3})
        started = time.monotonic()
        link.logger.info("lone")
        took = _arrival(link.capture, link.logger.name) - started
        assert 0.25 <= took < 1.5, f"a lone INFO record took {took:.3f} s with batch_delay=0.3"

    def test_a_lone_error_record_is_sent_at_once(self, make_link):
        """With batch_delay=1.0, a lone ERROR record arrives well before the delay would end."""
        link = make_link("push", handler_options={"batch_delay": 1.0})
        started = time.monotonic()
        link.logger.error("urgent")
        took = _arrival(link.capture, link.logger.name) - started
        assert took < 0.5, f"a lone ERROR record took {took:.3f} s: it waited for the batch delay"

    def test_an_error_takes_the_waiting_info_records_with_it(self, make_link):
        """INFO records waiting for the delay leave with the ERROR that follows them, in order."""
        link = make_link("push", handler_options={"batch_delay": 1.0})
        started = time.monotonic()
        for i in range(3):
            link.logger.info("waiting %d", i)
        link.logger.error("urgent")
        assert link.capture.wait_for(4, timeout=5.0, name=link.logger.name)
        took = time.monotonic() - started
        assert [r.getMessage() for r in link.capture.named(link.logger.name)] == [
            "waiting 0",
            "waiting 1",
            "waiting 2",
            "urgent",
        ]
        assert took < 0.5, f"the ERROR and the records before it took {took:.3f} s"

    def test_flush_level_is_configurable(self, make_link):
        """flush_level='INFO' sends INFO at once even with a long batch_delay."""
        link = make_link("push", handler_options={"batch_delay": 1.0, "flush_level": "INFO"})
        started = time.monotonic()
        link.logger.info("urgent enough")
        took = _arrival(link.capture, link.logger.name) - started
        assert took < 0.5, f"an INFO record with flush_level=INFO took {took:.3f} s"

    def test_bad_batch_delay_is_refused(self, make_handler):
        """batch_delay outside 0..1 s raises a ConfigError naming it."""
        with pytest.raises(fabric.ConfigError, match="batch_delay"):
            make_handler(tcp_endpoint(), batch_delay=5)


class TestBursts:
    """Records leave in bursts: far fewer wake-ups than records, every record one message, in order."""

    @pytest.mark.parametrize("mode", ["push", "pub"])
    def test_threads_keep_order_per_topic_and_lose_nothing(self, mode, make_link):
        """4 threads x 2,500 records on one logger: all 10,000 arrive, each thread's in order, no gap."""
        link = make_link(mode)

        def produce(t: int) -> None:
            for i in range(2_500):
                link.logger.info("t%d %d", t, i, extra={"t": t, "n": i})

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert link.capture.wait_for(10_000, timeout=30), f"{len(link.capture)} of 10000 arrived"
        records = link.capture.named(link.logger.name)
        for t in range(4):
            assert [r.n for r in records if r.t == t] == list(range(2_500)), f"thread {t} lost or reordered"
        assert [r.seq for r in records] == list(range(1, 10_001)), "the topic's sequence arrived out of order"
        assert link.listener.stats["gaps"] == 0
        assert link.handler.flush(5.0)
        assert link.handler.stats["sent"] == 10_000 and link.handler.stats["dropped"] == 0

    def test_a_burst_wakes_the_sender_a_few_times_not_per_record(self, make_link, monkeypatch):
        """10,000 records logged back to back wake the sender thread far fewer than 10,000 times."""
        wakes = []
        real_wake = _sender.Sender.wake
        monkeypatch.setattr(_sender.Sender, "wake", lambda self: (wakes.append(1), real_wake(self)))
        link = make_link("push")
        for i in range(10_000):
            link.logger.info("burst %d", i)
        assert link.capture.wait_for(10_000, timeout=30)
        assert len(wakes) < 1_000, f"{len(wakes)} wake-ups for 10,000 records"


class TestSenderFailures:
    """The sender thread's failures and its own records are counted or delivered, never silent or stuck."""

    def test_a_failed_sender_thread_is_reported_and_replaced(self, make_link, monkeypatch, capsys):
        """An exception in the sender thread is counted and printed; the next record starts a new one, and the
        records it had queued still arrive, in order."""
        link = make_link("push")
        real_look = _sender.Sender._look
        failed = []

        def look_once_failing(self, sender_link):
            if not failed:
                failed.append(1)
                raise RuntimeError("injected failure")
            real_look(self, sender_link)

        monkeypatch.setattr(_sender.Sender, "_look", look_once_failing)
        link.logger.info("first")
        deadline = time.monotonic() + 5
        while link.handler.stats["errors"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert link.handler.stats["errors"] == 1
        assert "sender thread failed" in capsys.readouterr().err
        link.logger.info("second")
        assert link.capture.wait_for(2, name=link.logger.name), "no new sender thread took the records"
        assert [r.getMessage() for r in link.capture.named(link.logger.name)] == ["first", "second"]
        assert link.handler.flush(5.0)
        assert link.handler.stats["sent"] == 2 and link.handler.stats["dropped"] == 0

    def test_a_record_logged_by_the_sender_thread_is_delivered(self, make_link, monkeypatch):
        """The sender thread logging through its own handler (a warning, say) neither deadlocks nor loses it."""
        link = make_link("push")
        real_look = _sender.Sender._look
        logged = []

        def look_and_log(self, sender_link):
            if not logged:
                logged.append(1)
                link.logger.warning("from the sender thread")
            real_look(self, sender_link)

        monkeypatch.setattr(_sender.Sender, "_look", look_and_log)
        link.logger.info("trigger")
        assert link.capture.wait_for(2, name=link.logger.name)
        assert sorted(r.getMessage() for r in link.capture.named(link.logger.name)) == [
            "from the sender thread",
            "trigger",
        ]

    def test_close_is_not_held_up_by_the_sender_thread_logging(self, make_link, monkeypatch):
        """The sender logs while close() holds the lock: close() ends within linger; that record is counted."""
        link = make_link("push", handler_options={"linger": 1.0})
        real_finish = _sender.Sender._finish

        def finish_and_log(self, request):
            link.logger.warning("logged while closing")
            return real_finish(self, request)

        monkeypatch.setattr(_sender.Sender, "_finish", finish_and_log)
        link.logger.info("before close")
        started = time.monotonic()
        link.handler.close()
        assert time.monotonic() - started < 1.0
        assert link.capture.wait_for(1, name=link.logger.name)
        stats = link.handler.stats
        assert stats["dropped"] == 1 and stats["sent"] == 1, stats


DAEMON_AT_EXIT = """
    import logging, sys, threading, time
    import fabric

    handler = fabric.install(sys.argv[1], level="INFO", service="daemon-exit")
    chatter = logging.getLogger("chatter")

    def chat():
        n = 0
        while True:
            chatter.info("daemon %d", n)
            n += 1

    threading.Thread(target=chat, daemon=True).start()
    main = logging.getLogger("main")
    for n in range(100):
        main.info("main %d", n, extra={"n": n})
    time.sleep(0.05)
    sys.exit(0)
"""


def test_a_daemon_thread_logging_through_exit_neither_hangs_nor_loses_the_main_records(
    tmp_path: Path, make_listener, capture
):
    """A daemon thread logging in a loop while the process exits: exit within linger, all 100 main records arrive."""
    endpoint = tcp_endpoint()
    make_listener(endpoint, capture, mode="pull", bind=True)
    script = tmp_path / "daemon_exit.py"
    script.write_text(textwrap.dedent(DAEMON_AT_EXIT))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), endpoint],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 10, f"exit took {took:.1f} s"
    assert capture.wait_for(100, name="main", timeout=10), f"{len(capture.named('main'))} of 100 main records"
    assert [r.n for r in capture.named("main")] == list(range(100))


def test_a_forked_child_gets_its_own_sender_thread(make_link):
    """After os.fork() the child's records leave through a sender thread of its own, under its own producer id."""
    link = make_link("push")
    link.logger.info("parent")
    assert link.capture.wait_for(1, name=link.logger.name)
    parent_thread = link.handler._sender.thread
    pid = os.fork()
    if pid == 0:  # the child: log, close, and leave without running the parent's teardown
        code = 1
        try:
            link.logger.info("child")
            own = link.handler._sender.thread
            code = 0 if own is not None and own is not parent_thread else 3
            link.handler.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child sent through the parent's sender thread"
    assert link.capture.wait_for(2, name=link.logger.name)
    child = [r for r in link.capture.named(link.logger.name) if r.getMessage() == "child"]
    assert len(child) == 1 and child[0].process == pid
    assert child[0].producer_id != link.capture.named(link.logger.name)[0].producer_id


def _blocked_signals(thread: threading.Thread) -> int:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)


def test_the_fabrics_threads_block_signals_so_the_main_thread_gets_them(make_link):
    """The sender and listener threads block SIGTERM, SIGINT, SIGHUP: the kernel hands them to the main thread."""
    link = make_link("push")
    link.logger.info("starts the sender")
    assert link.capture.wait_for(1, name=link.logger.name)
    threads = {"sender": link.handler._sender.thread, "listener": link.listener._thread}
    for role, thread in threads.items():
        assert thread is not None and thread.native_id is not None, role
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            assert _blocked_signals(thread) & (1 << (signum - 1)), f"the {role} thread does not block {signum.name}"
    main = _blocked_signals(threading.main_thread())
    assert not main & (1 << (signal.SIGTERM - 1)), "starting the threads left SIGTERM blocked in the caller"
