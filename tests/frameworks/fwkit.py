"""Helpers of the framework tests: the broker and subscriber, app subprocesses, delivery checks."""

from __future__ import annotations

import contextlib
import logging
import logging.config
import logging.handlers
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import IO, Any

import pytest

import fabric
from tests.helpers.broker import BrokerProc
from tests.helpers.capture import Capture, send_sentinel
from tests.helpers.net import ROOT, child_env, http_get
from tests.helpers.waiting import wait_until

#: The small projects the tests run (a WSGI app, an ASGI app, a Django project, a Celery app, scripts).
APPS = Path(__file__).resolve().parent / "apps"
PROBE_SERVICE = "fw-probe"


# --------------------------------------------------------------------------- the subscriber


class Fabric:
    """A broker subprocess, a listener on its egress feeding a :class:`Capture`, and a probe producer."""

    def __init__(
        self, broker: BrokerProc, listener: fabric.ZmqListener, collector: Capture, probe: fabric.ZmqHandler
    ) -> None:
        self.broker = broker
        self.listener = listener
        self.collector = collector
        self.probe = probe
        """A producer of service :data:`PROBE_SERVICE` at the push ingest, where the apps send."""
        self.endpoint = broker.push_ingest

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of an app: this checkout and ``apps/`` importable, the broker in ``LOGFABRIC_ENDPOINT``."""
        env = child_env(LOGFABRIC_ENDPOINT=self.endpoint)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(APPS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update(extra)
        return env

    def records(self, service: str, name: str | None = None) -> list[logging.LogRecord]:
        """What arrived from ``service`` (of logger ``name``)."""
        return self.collector.of(service, name)

    def wait_for(self, service: str, count: int, name: str | None = None, timeout: float = 15.0) -> bool:
        """Wait (bounded) until ``count`` records of ``service`` (and logger ``name``) arrived."""
        return wait_until(lambda: len(self.records(service, name)) >= count, timeout)

    def settle(self, timeout: float = 15.0) -> None:
        """Send a sentinel through the broker and wait (bounded) until the listener has it.

        Called once the app's processes have exited: what they sent was at the
        broker before the sentinel left, so it has arrived by then, and
        whatever has not (a loss) or came twice (a duplicate) shows.
        """
        send_sentinel(self.probe, [self.collector], name="fw.probe", timeout=timeout)

    def check(self) -> None:
        """No gap notice and nothing malformed or failed at the subscriber."""
        assert not self.collector.gaps(), [g.getMessage() for g in self.collector.gaps()]
        stats = self.listener.stats
        assert stats["malformed"] == 0 and stats["errors"] == 0, stats


def exactly_once(records: Iterable[logging.LogRecord], key: Callable[[logging.LogRecord], Hashable]) -> dict[Any, Any]:
    """Index ``records`` by ``key``; fail if any key arrived more than once."""
    records = list(records)
    counts = Counter(key(r) for r in records)
    duplicated = sorted((k, n) for k, n in counts.items() if n > 1)
    assert not duplicated, f"records delivered more than once (key, times): {duplicated[:20]}"
    return {key(r): r for r in records}


def _sorted(keys: Iterable[Hashable]) -> list[Any]:
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=repr)


def assert_delivered(got: Iterable[Hashable], expected: Iterable[Hashable], what: str) -> None:
    """Every expected key arrived and nothing else did, with the counts in the message."""
    got, expected = set(got), set(expected)
    missing, extra = _sorted(expected - got), _sorted(got - expected)
    assert not missing and not extra, (
        f"{what}: delivered {len(got & expected)} of {len(expected)}; missing {missing[:20]}; unexpected {extra[:20]}"
    )


def start_broker(workdir: Path) -> BrokerProc:
    """A ready ``python -m broker`` on fresh 127.0.0.1 ports (retried if a port was taken meanwhile)."""
    for _ in range(3):
        broker = BrokerProc(workdir).start()
        assert broker.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            broker.proc.wait(0.3)
        if broker.proc.poll() == 2 and "already in use" in broker.stderr():
            broker.kill()
            continue
        try:
            return broker.wait_ready()
        except BaseException:
            broker.kill()
            raise
    pytest.fail(f"no free ports for a broker after 3 tries:\n{broker.stderr()}")


# --------------------------------------------------------------------------- app processes


class App:
    """One app subprocess in its own process group; its stdout and stderr go to one file."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.log = log
        self._out: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its workers are killed with it
        )

    @property
    def pid(self) -> int:
        """The app's main process id."""
        return self.proc.pid

    def output(self) -> str:
        """What the app printed so far (after :meth:`kill` too)."""
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the app's main process only (as a supervisor or Ctrl-C would)."""
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait (bounded) for the app to exit and return its status; fail with its output if it does not."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.argv!r} did not exit within {timeout} s; output:\n{self.output()[-4000:]}")

    def finish(self, timeout: float = 60.0) -> str:
        """Wait (bounded) for a clean exit (status 0) and return the output."""
        status = self.wait(timeout)
        assert status == 0, f"{self.argv!r} exited {status}; output:\n{self.output()[-4000:]}"
        return self.output()

    def wait_http(self, address: str, path: str = "/", timeout: float = 30.0) -> None:
        """Wait (bounded) until ``GET path`` on ``address`` answers; fail with the app's output otherwise."""

        def serving() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.argv!r} exited {self.proc.returncode} before serving:\n{self.output()[-4000:]}")
            with contextlib.suppress(OSError):
                http_get(address, path, timeout=1.0)
                return True
            return False

        if not wait_until(serving, timeout, 0.05):
            pytest.fail(f"{self.argv!r} did not serve {address} within {timeout} s:\n{self.output()[-4000:]}")

    def wait_output(self, text: str, timeout: float = 30.0) -> None:
        """Wait (bounded) until the app printed ``text``; fail with its output otherwise."""
        if not wait_until(lambda: text in self.output() or self.proc.poll() is not None, timeout, 0.05):
            pytest.fail(f"{self.argv!r} did not print {text!r} within {timeout} s:\n{self.output()[-4000:]}")
        if text not in self.output():
            pytest.fail(f"{self.argv!r} exited {self.proc.returncode} first:\n{self.output()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the main process."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._out.close()
