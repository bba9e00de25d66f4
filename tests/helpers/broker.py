"""Brokers for the tests: ``python -m broker`` subprocesses, embedded brokers, and their /metrics parsed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

import fabric
from broker import Broker
from fabric.curve import CurveKeys
from tests.helpers.capture import Capture
from tests.helpers.net import ROOT, child_env, free_ports, http_get
from tests.helpers.waiting import wait_until


class Metrics:
    """Parsed Prometheus text: look samples up by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text) for s in family.samples
        ]

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the one sample ``name`` whose labels include ``labels``, else None."""
        found = [v for n, lab, v in self.samples if n == name and labels.items() <= lab.items()]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(v for n, lab, v in self.samples if n == name and labels.items() <= lab.items())

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample ``name``."""
        return [lab for n, lab, _ in self.samples if n == name]


class BrokerProc:
    """``python -m broker`` on 127.0.0.1 ports chosen here; stderr kept in a file. Restartable on the same ports.

    Nothing runs until :meth:`start`. ``ports`` (five: pub ingest, push ingest,
    egress, HTTP, pipeline) lets a new broker take over an old one's endpoints.
    """

    def __init__(
        self,
        workdir: Path,
        *extra: str,
        pipeline: bool = False,
        upstream: tuple[str, ...] | list[str] = (),
        ports: list[int] | None = None,
    ) -> None:
        self.workdir = workdir
        self.ports = ports or free_ports(5)
        self.pub_ingest = f"tcp://127.0.0.1:{self.ports[0]}"
        self.push_ingest = f"tcp://127.0.0.1:{self.ports[1]}"
        self.egress = f"tcp://127.0.0.1:{self.ports[2]}"
        self.http = f"127.0.0.1:{self.ports[3]}"
        self.pipeline = f"tcp://127.0.0.1:{self.ports[4]}" if pipeline else None
        args = [
            *("--pub-ingest", self.pub_ingest, "--push-ingest", self.push_ingest),
            *("--egress", self.egress, "--http", self.http),
        ]
        if self.pipeline:
            args += ["--pipeline", self.pipeline]
        for ep in upstream:
            args += ["--upstream", ep]
        self.args = [sys.executable, "-m", "broker", *args, *extra]
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = workdir / "unused"
        self._stderr: IO[bytes] | None = None

    def start(self) -> BrokerProc:
        """Start (or restart) the broker process on this object's ports."""
        self.stderr_path = self.workdir / f"broker-{self.ports[3]}-{time.monotonic_ns()}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        return self

    @property
    def pid(self) -> int:
        """The current broker process's pid."""
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        """What the current broker process logged so far."""
        if self._stderr is not None:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 3.0) -> tuple[int, str]:
        """GET ``path`` from the broker's HTTP endpoint; return (status, body)."""
        return http_get(self.http, path, timeout)

    def metrics(self) -> Metrics:
        """The broker's /metrics, parsed (fails unless it answers 200)."""
        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}: {body[:200]}"
        return Metrics(body)

    def wait_ready(self, timeout: float = 20.0) -> BrokerProc:
        """Wait (bounded) until /readyz answers 200; fail with the broker's stderr otherwise."""

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"broker exited {self.proc.returncode} before it was ready:\n{self.stderr()}")
            with contextlib.suppress(OSError):
                return self.get("/readyz", timeout=1.0)[0] == 200
            return False

        if not wait_until(ready, timeout, interval=0.05):
            pytest.fail(f"broker not ready within {timeout} s:\n{self.stderr()}")
        return self

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to the broker process."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait (bounded) for the broker to exit; fail with its stderr if it does not."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"broker did not exit within {timeout} s:\n{self.stderr()}")

    @property
    def alive(self) -> bool:
        """Whether the broker process is running."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (a stopped process too) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # a kill cannot be ignored
                self.proc.wait(10)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


@contextlib.contextmanager
def embedded_brokers(stop_drain: float, **defaults: Any) -> Iterator[Callable[..., Broker]]:
    """Yield ``make(**overrides)``: started in-process Brokers on 127.0.0.1 ``*`` ports (HTTP on port 0).

    ``defaults`` are further Broker options a test can override; every broker
    made is stopped on exit with a drain of ``stop_drain`` seconds.
    """
    made: list[Broker] = []

    def make(**overrides: Any) -> Broker:
        options = {
            "pub_ingest": "tcp://127.0.0.1:*",
            "push_ingest": "tcp://127.0.0.1:*",
            "egress": "tcp://127.0.0.1:*",
            "http": "127.0.0.1:0",
            **defaults,
            **overrides,
        }
        broker = Broker(**options)
        made.append(broker)
        return broker.start()

    try:
        yield make
    finally:
        for broker in made:
            broker.stop(drain_timeout=stop_drain)


def embedded_metrics(broker: Broker) -> Metrics:
    """An embedded broker's /metrics, parsed (it must serve HTTP)."""
    status, body = http_get(broker.endpoints["http"], "/metrics", timeout=5)
    assert status == 200, body[:200]
    return Metrics(body)


def auth_refused(broker: Broker, socket: str, reason: str) -> float:
    """``logfabric_broker_auth_refused_total{socket, reason}`` of an embedded broker (0 if absent)."""
    return embedded_metrics(broker).total("logfabric_broker_auth_refused_total", socket=socket, reason=reason)


def records_received(broker: Broker, ingest: str) -> float:
    """``logfabric_broker_records_received_total{ingest}`` of an embedded broker (0 if absent)."""
    return embedded_metrics(broker).total("logfabric_broker_records_received_total", ingest=ingest)


@dataclass(frozen=True)
class RoutedBroker:
    """One broker process fed by a push and a pub producer process, read by two filtered listeners.

    What it holds once both producers have logged :attr:`plan` and both
    listeners have the producers' sentinels (see the ``routed_broker`` fixture).
    """

    broker: BrokerProc
    plan: list[tuple[str, int, int]]
    warn: fabric.ZmqListener
    """level="WARNING"; feeds :attr:`warn_capture`."""
    db: fabric.ZmqListener
    """loggers=["app.db"]; feeds :attr:`db_capture`."""
    warn_capture: Capture
    db_capture: Capture
    probe_handler: fabric.ZmqHandler
    probes: int
    """Probe records sent through :attr:`probe_handler` before the producers started."""
    reports: dict[str, dict[str, Any]]
    """Each producer's report, by service (``pusher``, ``publisher``)."""
    sync: dict[str, int]
    """By service: the producer's probes and sentinel that reached the listeners (each listener got them all)."""


def new_pair_delivers(
    ctx: zmq.Context[zmq.Socket[bytes]],
    producer_at: str,
    egress: str,
    timeout: float = 10.0,
    kind: int = zmq.PUSH,
    keys: Mapping[str, CurveKeys] | None = None,
) -> float | None:
    """Seconds until a new raw producer at ``producer_at`` reaches a new raw subscriber at ``egress`` (None: never).

    The producer (PUSH, or ``kind``) sends a record every 100 ms until the
    subscriber has one or ``timeout`` runs out. ``keys`` holds the CURVE client
    keys of the roles that need them (``producers``, ``subscribers``).
    """
    keys = keys or {}
    began = time.monotonic()
    sub, prod = ctx.socket(zmq.SUB), ctx.socket(kind)
    for sock, role in ((sub, "subscribers"), (prod, "producers")):
        sock.setsockopt(zmq.LINGER, 0)
        if role in keys:
            keys[role].apply(sock)
    try:
        prod.setsockopt(zmq.SNDTIMEO, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"2newcomer")
        sub.connect(egress)
        prod.connect(producer_at)
        while time.monotonic() - began < timeout:
            with contextlib.suppress(zmq.Again):
                prod.send(b"2newcomer\x00svc\x00payload")
            if sub.poll(100):
                return time.monotonic() - began
        return None
    finally:
        sub.close(linger=0)
        prod.close(linger=0)
