"""Death by signal: records logged before a process dies of SIGTERM (or SIGINT at SIG_DFL) arrive.

A signal whose disposition is the default ends the process at once: no exit
hook runs, and what libzmq still queues is lost. The child here logs while its
peer is not even listening yet (so every record is still queued), then dies of
the signal; the handler a ZmqHandler sets flushes, bounded by ``linger``, and
raises the signal again, so the exit status is still death by that signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.net import ROOT, free_port

pytestmark = pytest.mark.timeout(60)

COUNT = 200

CHILD = """
import logging, os, signal, sys

endpoint, how, signame, linger = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
signum = getattr(signal, signame)
if signum == signal.SIGINT:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a process started without Python's Ctrl-C handler

import fabric

handler = fabric.install(endpoint, level="INFO", service="sig", linger=linger, flush_on_signal=how != "opted-out")
log = logging.getLogger("app")
for n in range(int(sys.argv[5])):
    log.info("record %d", n, extra={"n": n})
print("logged", flush=True)
sys.stdin.readline()  # the parent is listening now
if how == "raise_signal":
    signal.raise_signal(signum)
elif how in ("kill", "opted-out"):
    os.kill(os.getpid(), signum)
else:  # "external": the parent signals this process while it waits here
    sys.stdin.readline()
print("survived the signal", flush=True)
"""


@pytest.fixture
def child(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Children started by the test; any still running is killed at teardown."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def start(started: list[subprocess.Popen[str]], tmp_path: Path, *args: object) -> subprocess.Popen[str]:
    """Start the child script with ``args``; wait (bounded) until it has logged everything."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGFABRIC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, str(script), *(str(a) for a in args)],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # bounded by the test timeout
    assert line == "logged\n", (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
    return proc


def tell(proc: subprocess.Popen[str]) -> None:
    """Write one line to the child."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


@pytest.mark.parametrize(
    ("how", "signame"),
    [
        ("raise_signal", "SIGTERM"),
        ("kill", "SIGTERM"),
        ("external", "SIGTERM"),
        ("raise_signal", "SIGINT"),
    ],
)
def test_records_logged_before_death_by_signal_arrive(child, tmp_path, make_listener, capture, how, signame):
    """Every record arrives, and the child still dies of the signal."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start(child, tmp_path, endpoint, how, signame, 5.0, COUNT)
    listener = make_listener(endpoint, capture, mode="pull", bind=True)
    tell(proc)
    if how == "external":
        time.sleep(0.1)
        proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == -getattr(signal, signame), err
    assert capture.wait_for(COUNT), f"{len(capture)} of {COUNT} records arrived"
    time.sleep(0.1)
    assert [r.n for r in capture.records] == list(range(COUNT))
    assert listener.stats["gaps"] == 0


def test_without_the_signal_handler_the_records_are_lost(child, tmp_path, make_listener, capture):
    """flush_on_signal=False: SIGTERM ends the process at once, and what was queued is lost (the case fixed)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start(child, tmp_path, endpoint, "opted-out", "SIGTERM", 5.0, COUNT)
    make_listener(endpoint, capture, mode="pull", bind=True)
    tell(proc)
    proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGTERM
    time.sleep(0.5)
    assert len(capture) < COUNT


def test_an_unreachable_peer_delays_death_by_at_most_linger(child, tmp_path):
    """Nobody listening: the child still dies of SIGTERM, about linger after the signal."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start(child, tmp_path, endpoint, "raise_signal", "SIGTERM", 0.5, COUNT)
    started = time.monotonic()
    tell(proc)
    _, err = proc.communicate(timeout=20)
    took = time.monotonic() - started
    assert proc.returncode == -signal.SIGTERM, err
    assert 0.4 <= took < 3.0, took
