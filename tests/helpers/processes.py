"""Helper programs in subprocesses: the producer (``producer.py``), the hostile subscriber (``attacker.py``).

Whatever is started here can be reaped by its owner, every read of a child's
output is bounded, and a child's environment comes from :func:`child_env`.
"""

from __future__ import annotations

import contextlib
import selectors
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import pytest

from tests.helpers.net import ROOT, child_env

HELPERS = Path(__file__).resolve().parent
#: ``python PRODUCER ENDPOINT COUNT [options]``: see its docstring.
PRODUCER = HELPERS / "producer.py"
#: ``python ATTACKER ENDPOINT COUNT SIZE [keys]``: see its docstring.
ATTACKER = HELPERS / "attacker.py"


def read_line(stream: IO[str], what: str, timeout: float = 15.0) -> str:
    """Read one line of a child's ``stream``, failing (not hanging) if none comes within ``timeout``."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            pytest.fail(f"{what} printed nothing within {timeout}s")
    return stream.readline()


def plan_options(plan: Iterable[tuple[str, int, int]]) -> list[str]:
    """``--plan NAME:LEVEL:COUNT`` options for the producer, one per (logger, level, count)."""
    return [part for name, level, count in plan for part in ("--plan", f"{name}:{level}:{count}")]


class ProducerRunner:
    """Runs :data:`PRODUCER` in subprocesses; what it starts it also reaps (:meth:`reap`)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    @staticmethod
    def command(*args: object) -> list[str]:
        """The argv that runs the producer with ``args``."""
        return [sys.executable, str(PRODUCER), *(str(a) for a in args)]

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        """The environment for a producer: see :func:`tests.helpers.net.child_env`."""
        return child_env(**extra)

    def start(self, *args: object, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the producer with ``args``."""
        proc = subprocess.Popen(
            self.command(*args),
            env=env or self.env(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def read_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
        """Read one line of a producer's stdout, failing (not hanging) if none comes within ``timeout``."""
        assert proc.stdout is not None
        return read_line(proc.stdout, f"helper {proc.args!r}", timeout)

    @staticmethod
    def finish(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
        """Wait (bounded) for a producer to exit 0 and return its stdout; fail with its stderr otherwise."""
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"helper {proc.args!r} did not exit within {timeout}s; stderr:\n{err}")
        assert proc.returncode == 0, f"helper {proc.args!r} exited {proc.returncode}; stderr:\n{err}"
        return out

    def reap(self) -> None:
        """Kill every producer still running and collect them all."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                proc.communicate(timeout=10)


def start_attacker(endpoint: str, count: int, size: int, keys: tuple[Path, ...] = ()) -> subprocess.Popen[str]:
    """Start :data:`ATTACKER` (``keys``: the server's public key file, the client's secret key file).

    It has queued every subscription when this returns; it stays until its
    stdin is closed or it is killed.
    """
    proc = subprocess.Popen(
        [sys.executable, str(ATTACKER), endpoint, str(count), str(size), *map(str, keys)],
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        started = read_line(proc.stdout, "the attacker").strip() == "SENT"
    except BaseException:
        stop(proc)
        raise
    if not started:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"the attacker did not start:\n{err}")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs and reap it."""
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
        proc.communicate(timeout=10)


def rss_mib(pid: int) -> float:
    """The resident memory of process ``pid``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
