"""A handler closed by ``logging.shutdown()`` before exit opens again; ``flush(timeout)`` waits and stays usable.

``logging.config.dictConfig`` (what Django, uvicorn and gunicorn run) closes
every handler through ``logging.shutdown()`` and leaves the root logger's
handlers in place when its configuration does not name the root. Those tests
that run a real ``dictConfig`` do it in a subprocess: it would close this test
process's own handlers too.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import pytest

import fabric
from fabric import _exit
from tests.helpers.net import ROOT, free_port

pytestmark = pytest.mark.timeout(60)


def env() -> dict[str, str]:
    """This checkout importable, no fabric variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOGFABRIC_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    return environ


def run_script(tmp_path: Path, source: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a script with ``args``; bounded by ``timeout``."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    argv = [sys.executable, str(script), *args]
    return subprocess.run(argv, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def shut_down(handler: logging.Handler) -> None:
    """Close ``handler`` the way ``dictConfig`` does: through ``logging.shutdown()``."""
    logging.shutdown([weakref.ref(handler)])


def assert_no_gaps(records: list[logging.LogRecord]) -> None:
    """One producer, and per topic the sequence numbers 1, 2, 3 ... with none missing."""
    assert len({r.producer_id for r in records}) == 1
    by_topic: dict[tuple[str, int], list[int]] = {}
    for record in records:
        by_topic.setdefault((record.name, record.levelno), []).append(record.seq)
    for seqs in by_topic.values():
        assert seqs == list(range(1, len(seqs) + 1)), seqs


# --------------------------------------------------------------------------- in this process


class TestReopen:
    """Closed by logging.shutdown(): the next record opens again; closed otherwise or at exit: stays closed."""

    @pytest.mark.parametrize("mode", ["push", "pub"])
    def test_closed_by_logging_shutdown_delivers_the_next_records(self, make_link, mode):
        """Records after a logging.shutdown() close arrive, same producer id, sequences without a gap."""
        link = make_link(mode)
        for n in range(5):
            link.logger.info("before %d", n)
        shut_down(link.handler)
        assert link.handler.stats["sent"] == 5
        for n in range(5):
            link.logger.info("after %d", n)
        # pub: records wait for the new socket's first subscription (as at the start), sent once it is heard
        assert link.handler.wait_ready(5.0)
        assert link.capture.wait_for(10), f"{len(link.capture)} of 10 records arrived"
        records = link.capture.records
        assert [r.getMessage() for r in records] == [f"before {n}" for n in range(5)] + [f"after {n}" for n in range(5)]
        assert_no_gaps(records)
        assert link.listener.stats["gaps"] == 0
        assert link.handler.stats["dropped"] == 0

    def test_reopened_handler_is_closed_again_by_the_next_shutdown(self, make_link):
        """A reopened handler is back among those logging.shutdown() closes at exit, and delivers then."""
        link = make_link("push")
        shut_down(link.handler)
        logging._handlerList[:] = [r for r in logging._handlerList if r() is not link.handler]  # as dictConfig does
        link.logger.info("reopened")
        assert any(ref() is link.handler for ref in logging._handlerList)
        logging.shutdown([ref for ref in logging._handlerList if ref() is link.handler])
        assert link.handler._sock is None
        assert link.capture.wait_for(1)

    def test_closed_by_its_own_close_stays_closed(self, make_link):
        """close() called directly, even if logging.shutdown() closes it again later: records are dropped."""
        link = make_link("push")
        link.handler.close()
        shut_down(link.handler)
        link.logger.info("dropped")
        assert link.handler.stats["dropped"] == 1
        assert link.handler._sock is None

    def test_closed_while_exiting_stays_closed(self, make_link, monkeypatch):
        """Once the interpreter is exiting, a handler closed by logging.shutdown() opens no socket."""
        link = make_link("push")
        monkeypatch.setitem(_exit._state, "exiting", True)
        shut_down(link.handler)
        link.logger.info("too late")
        assert link.handler.stats["dropped"] == 1
        assert link.handler._sock is None

    def test_forked_child_of_a_handler_closed_by_shutdown_opens_its_own_socket(self, make_link):
        """Closed by logging.shutdown(), then forked: the child sends on a socket of its own, the parent on its."""
        link = make_link("push")
        link.logger.info("parent before")
        shut_down(link.handler)
        ctx = multiprocessing.get_context("fork")
        child = ctx.Process(target=_log_in_child, args=(link.logger.name,))
        child.start()
        child.join(20)
        assert child.exitcode == 0
        link.logger.info("parent after")
        assert link.capture.wait_for(3), f"{len(link.capture)} of 3 records arrived"
        by_message = {r.getMessage(): r for r in link.capture.records}
        assert set(by_message) == {"parent before", "child", "parent after"}
        assert by_message["child"].process == child.pid
        assert by_message["child"].producer_id != by_message["parent after"].producer_id
        assert_no_gaps([by_message["parent before"], by_message["parent after"]])


def _log_in_child(name: str) -> None:
    logging.getLogger(name).info("child")
    for handler in logging.getLogger(name).handlers:
        assert isinstance(handler, fabric.ZmqHandler)
        handler.close()


class TestFlush:
    """flush(timeout) returns once what was handed over left the process, says so, and leaves the handler usable."""

    def test_flush_waits_for_the_records_and_the_handler_goes_on(self, make_link):
        """flush() is True; every record is received soon after; later records go on as a new whole series."""
        link = make_link("push")
        for n in range(200):
            link.logger.info("first %d", n)
        before = f"{link.handler.identity.producer_id:016x}"  # as records carry it
        assert link.handler.flush(5.0) is True
        assert link.capture.wait_for(200, timeout=2.0)
        assert f"{link.handler.identity.producer_id:016x}" != before  # a new connection, a new series
        for n in range(10):
            link.logger.info("then %d", n)
        assert link.capture.wait_for(210)
        first = [r for r in link.capture.records if r.producer_id == before]
        then = [r for r in link.capture.records if r.producer_id != before]
        assert len(first) == 200 and len(then) == 10
        assert_no_gaps(first)
        assert_no_gaps(then)
        assert link.listener.stats["gaps"] == 0

    def test_flush_with_nothing_in_flight_returns_at_once(self, make_handler, make_link, endpoint):
        """A handler that never logged, or logged nothing since the last flush, keeps its socket and says True."""
        assert make_handler(endpoint).flush(5.0) is True
        link = make_link("push")
        link.logger.info("one")
        assert link.handler.flush(5.0) is True
        started = time.monotonic()
        assert link.handler.flush(5.0) is True
        assert time.monotonic() - started < 0.5

    def test_flush_with_the_peer_away_gives_up_at_the_timeout(self, make_handler, make_logger, make_listener, capture):
        """No peer: False after about the timeout; the record stays queued and arrives when a peer comes."""
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        handler = make_handler(endpoint, linger=5.0)
        log = make_logger(None, handler)
        log.info("waits")
        started = time.monotonic()
        assert handler.flush(0.3) is False
        assert 0.25 <= time.monotonic() - started < 2.0
        make_listener(endpoint, capture, mode="pull", bind=True)
        log.info("after")
        assert capture.wait_for(2, name=log.name)
        assert [r.getMessage() for r in capture.named(log.name)] == ["waits", "after"]

    def test_stdlib_flush_call_without_argument(self, make_link):
        """Handler.flush() with no argument (the stdlib call) waits up to linger and answers."""
        link = make_link("push", handler_options={"linger": 2.0})
        link.logger.info("x")
        assert link.handler.flush() is True
        assert link.capture.wait_for(1)

    def test_flush_keeps_records_waiting_for_a_subscriber(self, make_handler, make_logger, make_listener, capture):
        """A pub handler with no subscriber: False at the timeout, and its held records still go to a late one."""
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        handler = make_handler(endpoint, mode="pub", bind=True)
        log = make_logger(None, handler)
        for n in range(3):
            log.info("held %d", n)
        assert handler.flush(0.2) is False
        make_listener(endpoint, capture, mode="sub")
        assert handler.wait_ready(5.0)
        assert capture.wait_for(3)
        assert handler.flush(5.0) is True
        assert handler.stats["dropped"] == 0


# --------------------------------------------------------------------------- a real dictConfig, in a subprocess

INSTALL_THEN_DICTCONFIG = """
    import json, logging, logging.config, sys, warnings
    import fabric

    endpoint, mode, config = sys.argv[1], sys.argv[2], sys.argv[3]
    handler = fabric.install(endpoint, mode=mode, level="INFO", service="reopen")
    log = logging.getLogger("app")
    for n in range(50):
        log.info("before %d", n, extra={"n": n})
    no_root = {"version": 1, "disable_existing_loggers": False, "loggers": {"app.db": {"level": "INFO"}}}
    console = {"c": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}}
    root = {"version": 1, "disable_existing_loggers": False, "handlers": console, "root": {"handlers": ["c"]}}
    for _ in range(3):  # a framework may configure more than once
        logging.config.dictConfig(no_root if config == "no-root" else root)
    for n in range(50, 100):
        log.info("after %d", n, extra={"n": n})
    print(json.dumps(handler.stats), file=sys.stderr)
"""


@pytest.mark.parametrize("mode", ["push", "pub"])
def test_install_then_dictconfig_without_root_delivers_everything(tmp_path, make_listener, capture, mode):
    """install(), then dictConfig three times with no root: all 100 records arrive, one producer, 0 gaps, no warning."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    listener = make_listener(endpoint, capture, mode="pull" if mode == "push" else "sub", bind=True)
    done = run_script(tmp_path, INSTALL_THEN_DICTCONFIG, endpoint, mode, "no-root")
    assert done.returncode == 0, done.stderr
    assert capture.wait_for(100), f"{len(capture)} of 100 records arrived; stderr:\n{done.stderr}"
    time.sleep(0.1)
    records = capture.records
    assert [r.n for r in records] == list(range(100))
    assert_no_gaps(records)
    assert listener.stats["gaps"] == 0
    stats = json.loads(done.stderr.strip().splitlines()[-1])  # pub: some still wait for a subscription
    assert stats["dropped"] == 0 and stats["errors"] == 0 and stats["sent"] >= 50, stats
    assert "RuntimeWarning" not in done.stderr


def test_install_then_dictconfig_replacing_root_warns_once(tmp_path, make_listener, capture):
    """A configuration that replaces the root's handlers: one warning naming what to do; earlier records arrive."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    make_listener(endpoint, capture, mode="pull", bind=True)
    done = run_script(tmp_path, INSTALL_THEN_DICTCONFIG, endpoint, "push", "root")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("RuntimeWarning") == 1, done.stderr
    assert "logging.config.dictConfig() removed the ZmqHandler that fabric.install() attached" in done.stderr
    assert "call fabric.install() after the framework has configured logging" in done.stderr
    assert capture.wait_for(50)
    time.sleep(0.2)
    assert [r.n for r in capture.records] == list(range(50))
    assert [f"after {n}" for n in range(50, 100)] == done.stdout.split("\n")[:50]


CLOSED_AT_EXIT = """
    import atexit, json, sys, time

    assert "logging" not in sys.modules
    late = []

    def log_late():  # registered before logging is imported: runs after logging.shutdown()
        import logging
        started = time.monotonic()
        logging.getLogger("app").warning("after shutdown")
        logging.getLogger("app").warning("after shutdown again")
        late.append(time.monotonic() - started)
        print(json.dumps({"stats": handler.stats, "link": handler._sock is not None, "took": late[0]}))

    atexit.register(log_late)
    import logging, logging.config
    import fabric

    handler = fabric.install(sys.argv[1], level="INFO", service="exit")
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})  # closed, to open again
    for n in range(20):
        logging.getLogger("app").info("record %d", n, extra={"n": n})
"""


def test_handler_closed_at_exit_stays_closed(tmp_path, make_listener, capture):
    """At exit: the 20 records arrive; records logged after logging.shutdown() are dropped, no socket, no wait."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    make_listener(endpoint, capture, mode="pull", bind=True)
    done = run_script(tmp_path, CLOSED_AT_EXIT, endpoint)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["stats"]["sent"] == 20 and report["stats"]["dropped"] == 2, report
    assert report["link"] is False and report["took"] < 0.5, report
    assert capture.wait_for(20)
    time.sleep(0.2)
    assert [r.n for r in capture.records] == list(range(20))
