"""``logfabric export otlp`` and ``listen_from_config`` with an OtlpHandler, as real processes, end to end.

A real broker subprocess (``BrokerProc``), real ``ZmqHandler`` producers in this
process, the exporter or collector as a subprocess, and the OTLP receivers of
tests/otlp/receivers.py. Every wait is bounded; every process is reaped.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.broker import BrokerProc
from tests.helpers.factories import handler_factory
from tests.helpers.net import ROOT, child_env, tcp_endpoint
from tests.helpers.waiting import stream_until, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

EXPORT = [sys.executable, "-m", "fabric.cli", "export", "otlp"]
COLLECTOR = Path(__file__).resolve().parent / "scripts" / "collector.py"
STATS = re.compile(
    r"^logfabric export: received (\d+), exported (\d+), retried (\d+), dropped (\d+), rejected (\d+), "
    r"queued (\d+), gaps (\d+), malformed (\d+)$"
)


class Proc:
    """A subprocess whose stdout and stderr lines are collected by threads, so waits on them stay bounded."""

    def __init__(self, argv: list[str], stdin: bool = False) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def stats(self) -> list[tuple[int, ...]]:
        """Every stats line printed so far, as numbers."""
        return [tuple(int(g) for g in m.groups()) for line in list(self.err) if (m := STATS.match(line))]

    def wait_stats(self, predicate: Callable[[tuple[int, ...]], bool], timeout: float = 20.0) -> tuple[int, ...]:
        """Wait (bounded) for a stats line that satisfies ``predicate``; return it."""
        found: list[tuple[int, ...]] = []

        def check() -> bool:
            found[:] = [s for s in self.stats() if predicate(s)]
            return bool(found)

        assert wait_until(check, timeout, interval=0.05), self.describe()
        return found[-1]

    def finish(self, timeout: float = 20.0) -> int:
        """Wait (bounded) for the process to exit; return its status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"{self.proc.args!r} did not exit within {timeout} s\n{self.describe()}")
        for reader in self._readers:
            reader.join(5)
        return code

    def describe(self) -> str:
        """Output so far, for assertion messages."""
        return "stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err)

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    """Start subprocesses; all are killed and reaped at teardown."""
    made: list[Proc] = []

    def start(argv: list[str], stdin: bool = False) -> Proc:
        proc = Proc(argv, stdin)
        made.append(proc)
        return proc

    yield start
    for proc in made:
        proc.reap()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProc]:
    """A broker subprocess with a pipeline, ready."""
    proc = BrokerProc(tmp_path, pipeline=True).start().wait_ready()
    yield proc
    proc.kill()


@pytest.fixture
def producer(broker: BrokerProc, make_logger) -> Iterator[Callable[[str], Callable[[int], None]]]:
    """``producer(service)`` gives ``log(i)``, which sends record ``r<i>`` through the broker's push ingest."""
    with handler_factory("otlp-e2e") as make:

        def build(service: str) -> Callable[[int], None]:
            log = make_logger(None, make(broker.push_ingest, service=service))
            return lambda i: log.warning("r%d", i)

        yield build


def stream(log: Callable[[int], None], until: Callable[[], bool], timeout: float = 20.0) -> int:
    """Call ``log(0)``, ``log(1)``, ... every 10 ms until ``until()`` (bounded); return how many were sent."""
    sent = stream_until(log, until, timeout)
    assert until(), f"condition not met within {timeout} s ({sent} sent)"
    return sent


class TestExportCommand:
    """logfabric export otlp, from a broker's egress or pipeline to a receiver."""

    def test_exports_from_the_egress_with_headers_and_stats(self, broker, producer, http_receiver, procs):
        """Records published by the broker reach the receiver with the headers; a stats line comes regularly."""
        exporter = procs(
            [*EXPORT, broker.egress, "--to", http_receiver.url, "--header", "X-Token=abc", "--stats-interval", "0.3"]
        )
        log = producer("svc-egress")
        stream(log, lambda: len(http_receiver.exported()) >= 5)
        exporter.wait_stats(lambda s: s[1] >= 5)
        exporter.proc.send_signal(signal.SIGTERM)
        assert exporter.finish() == 0, exporter.describe()
        assert http_receiver.metadata[0]["x-token"] == "abc"
        e = http_receiver.exported()[0]
        assert e.resource["service.name"] == "svc-egress"
        assert e.record.severity_text == "WARNING"
        received, exported, _, dropped, *_ = exporter.stats()[-1]
        assert received == exported == len(http_receiver.exported())
        assert dropped == 0

    def test_sigterm_flushes_what_is_queued(self, broker, producer, http_receiver, procs):
        """With the receiver refusing (503) for a while, SIGTERM sends everything queued, then exits 0 in time."""
        http_receiver.default = 503
        exporter = procs(
            [*EXPORT, broker.egress, "--to", http_receiver.url, "--stats-interval", "0.2", "--flush-timeout", "5"]
        )
        log = producer("svc-flush")
        sent = stream(log, lambda: len(http_receiver.requests) >= 1)  # the exporter receives: start counting
        first = int(http_receiver.requests[0].resource_logs[0].scope_logs[0].log_records[0].body.string_value[1:])
        for i in range(sent, sent + 300):
            log(i)
        total = sent + 300 - first
        exporter.wait_stats(lambda s: s[0] >= total and s[2] >= 1)  # all received, retrying
        http_receiver.default = None
        start = time.monotonic()
        exporter.proc.send_signal(signal.SIGTERM)
        assert exporter.finish() == 0, exporter.describe()
        assert time.monotonic() - start < 5 + 3
        bodies = http_receiver.bodies()
        assert bodies == [f"r{i}" for i in range(first, sent + 300)], exporter.describe()
        received, exported, retried, dropped, *_ = exporter.stats()[-1]
        assert (received, exported, dropped) == (total, total, 0)
        assert retried >= 1

    def test_pipeline_consumers_share_the_load(self, broker, producer, http_receiver, procs):
        """Two exporters on --pipeline split the records: each record is exported once, by one of them."""
        argv = [*EXPORT, "--pipeline", broker.pipeline, "--to", http_receiver.url, "--stats-interval", "0.2"]
        exporters = [procs(argv), procs(argv)]
        log = producer("svc-pipe")
        both = lambda: all(p.stats() and p.stats()[-1][0] > 0 for p in exporters)  # noqa: E731
        sent = stream(log, both)
        for exporter in exporters:
            exporter.proc.send_signal(signal.SIGTERM)
        for exporter in exporters:
            assert exporter.finish() == 0, exporter.describe()
        bodies = http_receiver.bodies()
        assert sorted(bodies, key=lambda b: int(b[1:])) == [f"r{i}" for i in range(sent)]  # none lost, none twice
        shares = [p.stats()[-1][1] for p in exporters]
        assert all(shares) and sum(shares) == sent, shares

    def test_grpc(self, broker, producer, grpc_receiver, procs):
        """--protocol grpc exports over OTLP/gRPC."""
        exporter = procs([*EXPORT, broker.egress, "--protocol", "grpc", "--to", grpc_receiver.url, "--count", "3"])
        log = producer("svc-grpc")
        stream(log, lambda: exporter.proc.poll() is not None)
        assert exporter.finish() == 0, exporter.describe()
        assert len(grpc_receiver.exported()) == 3
        assert grpc_receiver.exported()[0].resource["service.name"] == "svc-grpc"

    def test_level_and_logger_filters_apply(self, broker, make_logger, http_receiver, procs):
        """The tail's filter flags (--level, -l) select what is exported."""
        exporter = procs([*EXPORT, broker.egress, "--to", http_receiver.url, "--level", "ERROR", "--count", "2"])
        with handler_factory("otlp-filter") as make:
            log = make_logger(None, make(broker.push_ingest))
            stream(lambda i: (log.warning("w%d", i), log.error("e%d", i)), lambda: exporter.proc.poll() is not None)
        assert exporter.finish() == 0, exporter.describe()
        assert [b[0] for b in http_receiver.bodies()] == ["e", "e"]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--to", "ftp://collector:21"], "invalid OTLP URL"),
            (["--header", "no-equals-sign"], "--header needs KEY=VALUE"),
            (["--header", "Bad Name=x"], "invalid header name"),
            (["--pipeline", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"], "--pipeline"),
            (["--count", "0"], "--count must be at least 1"),
            (["--level", "LOUD"], "unknown level"),
            (["--batch-size", "0"], "at least 1"),
        ],
    )
    def test_bad_arguments_exit_2(self, args, message, procs):
        """A bad argument exits 2 with one line on stderr saying what is wrong."""
        exporter = procs([*EXPORT, *args])
        assert exporter.finish() == 2
        assert len(exporter.err) == 1 and message in exporter.err[0], exporter.describe()


class TestListenFromConfig:
    """An OtlpHandler in a collector's dictConfig, next to a file handler (listen_from_config)."""

    def test_fans_out_to_a_file_and_otlp_and_flushes_at_exit(self, http_receiver, procs, make_logger, tmp_path):
        """Records reach both handlers; those still waiting for their batch are sent when the process exits."""
        logfile = tmp_path / "fleet.log"
        config = {
            "version": 1,
            "formatters": {"plain": {"format": "%(service)s|%(message)s"}},
            "handlers": {
                "otlp": {"class": "fabric.otlp.OtlpHandler", "endpoint": http_receiver.url, "batch_delay": 60},
                "file": {"class": "logging.FileHandler", "filename": str(logfile), "formatter": "plain"},
            },
            "root": {"level": "DEBUG", "handlers": ["otlp", "file"]},
            "listener": {"endpoints": [tcp_endpoint()], "mode": "pull", "bind": True},
        }
        collector = procs([sys.executable, str(COLLECTOR), json.dumps(config)], stdin=True)
        assert wait_until(lambda: collector.out, 20), collector.describe()
        endpoint = collector.out[0].split()[1]
        with handler_factory("otlp-config") as make:
            log = make_logger(None, make(endpoint))
            for i in range(20):
                log.info("c%d", i)
            assert wait_until(lambda: logfile.exists() and len(logfile.read_text().splitlines()) == 20, 15)
        assert http_receiver.exported() == []  # batch_delay 60: still queued
        assert collector.proc.stdin is not None
        collector.proc.stdin.close()
        assert collector.finish() == 0, collector.describe()
        assert http_receiver.bodies() == [f"c{i}" for i in range(20)]
        assert logfile.read_text().splitlines()[0] == "otlp-config|c0"
