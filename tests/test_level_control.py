"""Runtime level changes end to end: ``logfabric level`` -> a broker's control endpoint -> every process of a service.

Real broker processes (or an embedded broker for CurveZMQ), real producer
processes (forked workers of one service among them), real sockets on
127.0.0.1. A producer process prints what its control thread logs
(``PID level of ... set to ...``, ``PID level of ... back to ...``) on stdout;
the tests wait (bounded) for those lines, which are their own sentinels: lines
of one process arrive in order, so the first line about a change says no
other change came before it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

import fabric
from fabric import _control
from fabric import _control_wire as wire
from fabric.level import request
from tests.helpers.broker import BrokerProc, embedded_metrics
from tests.helpers.keys import KeySet
from tests.helpers.net import ROOT, child_env, free_port
from tests.helpers.waiting import poll_until, wait_until

WORKER = r"""
import logging, multiprocessing, os, sys, time
import fabric
endpoint, control, service, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
out = logging.StreamHandler(sys.stdout)
out.setFormatter(logging.Formatter("%(process)d %(message)s"))
logging.getLogger("logfabric.control").addHandler(out)
logging.getLogger("app.db").setLevel(logging.INFO)
fabric.install(endpoint, service=service, control=control, level="INFO")

def work():
    sys.stdout.write(f"{os.getpid()} started\n")
    log = logging.getLogger("app.db")
    while True:
        log.info("tick")  # the first record starts this process's sender and control thread
        log.debug("debug")
        time.sleep(0.05)

if workers == 0:
    work()
children = [multiprocessing.get_context("fork").Process(target=work) for _ in range(workers)]
for child in children:
    child.start()
for child in children:
    child.join()
"""


class Producers:
    """A producer process (and its forked workers): its stdout lines, each with the time it was read."""

    def __init__(self, script: Path, endpoint: str, control: str, service: str, workers: int, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), endpoint, control, service, str(workers)],
            cwd=ROOT,
            env=child_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

    def matching(self, pattern: str) -> list[tuple[float, str]]:
        """The lines (with the times they were read) that match ``pattern``."""
        with self._lock:
            return [(t, line) for t, line in self.lines if re.search(pattern, line)]

    def wait(self, pattern: str, count: int = 1, timeout: float = 15.0) -> list[tuple[float, str]]:
        """Wait (bounded) for ``count`` lines matching ``pattern``; fail with every line read otherwise."""
        if not wait_until(lambda: len(self.matching(pattern)) >= count, timeout, interval=0.02):
            pytest.fail(f"{count} line(s) matching {pattern!r} did not come within {timeout} s: {self.lines}")
        return self.matching(pattern)

    def pids(self) -> set[int]:
        """The pids of the processes that started logging."""
        return {int(line.split()[0]) for _, line in self.matching(r"^\d+ started$")}

    def kill(self) -> None:
        """Kill the process and its forked workers (one process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def start_producers(tmp_path: Path) -> Iterator[Any]:
    """``start_producers(endpoint, control, service, workers=0, **env)``: killed at teardown."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    started: list[Producers] = []

    def start(endpoint: str, control: str, service: str, workers: int = 0, **env: str) -> Producers:
        producers = Producers(script, endpoint, control, service, workers, **env)
        started.append(producers)
        return producers

    yield start
    for producers in started:
        producers.kill()


@pytest.fixture
def control_broker(tmp_path: Path) -> Iterator[tuple[BrokerProc, str]]:
    """A broker process with a plaintext control endpoint (network trusted)."""
    control = f"tcp://127.0.0.1:{free_port()}"
    broker = BrokerProc(tmp_path, "--control", control, "--control-trust-network").start()
    try:
        broker.wait_ready()
        yield broker, control
    finally:
        broker.kill()


def level(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``logfabric level ARGS`` (through ``python -m fabric.cli``), bounded."""
    command = [sys.executable, "-m", "fabric.cli", "level", *args]
    return subprocess.run(command, cwd=ROOT, env=env or child_env(), capture_output=True, text=True, timeout=30)


def connected(broker: BrokerProc, count: int) -> bool:
    """Whether ``count`` producer processes are known to the broker's control endpoint."""
    return broker.metrics().get("logfabric_broker_control_producers") == count


def test_forked_workers_all_apply_and_revert_a_second_service_untouched(
    control_broker: tuple[BrokerProc, str], start_producers: Any
) -> None:
    """4 forked workers of checkout apply one `level set` and revert at its expiry; billing sees none of it."""
    broker, control = control_broker
    checkout = start_producers(broker.push_ingest, control, "checkout", workers=4)
    billing = start_producers(broker.push_ingest, control, "billing")
    checkout.wait("started", 4)
    billing.wait("started")
    assert poll_until(lambda: connected(broker, 5)), broker.stderr()

    done = level("set", "checkout", "DEBUG", "--logger", "app.db", "--for", "3s", "--control", control)
    assert done.returncode == 0, done.stderr
    assert "applied by 4 process(es):" in done.stdout, done.stdout
    assert {int(p) for p in re.findall(r" pid (\d+) producer [0-9a-f]{16}", done.stdout)} == checkout.pids()
    assert "did not answer" not in done.stdout

    applied = checkout.wait(r"level of 'app.db' set to DEBUG by .* \(change 1\)", 4)
    reverted = checkout.wait(r"level of 'app.db' back to what it was \(expired\)", 4, timeout=10)
    assert {line.split()[0] for _, line in applied} == {str(p) for p in checkout.pids()}
    for pid in checkout.pids():
        (set_at,) = [t for t, line in applied if line.startswith(f"{pid} ")]
        (back_at,) = [t for t, line in reverted if line.startswith(f"{pid} ")]
        assert 2.0 <= back_at - set_at <= 5.0, (pid, back_at - set_at)

    # billing's first control line is about its own change: the checkout change never reached it
    other = level("set", "billing", "WARNING", "--for", "1s", "--control", control)
    assert other.returncode == 0 and "applied by 1 process(es):" in other.stdout, other.stdout + other.stderr
    first = billing.wait(r"level of ")[0][1]
    assert "the root logger" in first and "set to WARNING" in first and "(change 2)" in first
    assert broker.metrics().get("logfabric_broker_control_messages_total", op="set", outcome="ok") == 2
    assert "level change 1 by 127.0.0.1 (network trusted): service 'checkout'" in broker.stderr()


def test_a_worker_started_later_picks_up_the_change_and_reset_reverts_all(
    control_broker: tuple[BrokerProc, str], start_producers: Any
) -> None:
    """A process that connects while a change is in force applies it; `level reset` reverts every process now."""
    broker, control = control_broker
    early = start_producers(broker.push_ingest, control, "checkout")
    early.wait("started")
    assert poll_until(lambda: connected(broker, 1))
    done = level("set", "checkout", "10", "--logger", "app.db", "--for", "10m", "--control", control)
    assert done.returncode == 0 and "applied by 1 process(es):" in done.stdout, done.stdout + done.stderr

    late = start_producers(broker.push_ingest, control, "checkout")
    late.wait(r"level of 'app.db' set to DEBUG by 127\.0\.0\.1 \(network trusted\) until .* \(change 1\)")
    assert poll_until(lambda: connected(broker, 2))

    shown = level("list", "checkout", "--control", control)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"app\.db DEBUG until \S+ \(\d+m\d*s? left\) by 127\.0\.0\.1", shown.stdout), shown.stdout
    assert len(re.findall(r"process .* pid \d+ producer", shown.stdout)) == 2

    reset = level("reset", "checkout", "--control", control)
    assert reset.returncode == 0 and "applied by 2 process(es):" in reset.stdout, reset.stdout + reset.stderr
    for producers in (early, late):
        producers.wait(r"level of 'app.db' back to what it was \(reset, change 2 by 127\.0\.0\.1")
    assert "app.db DEBUG until" not in level("list", "checkout", "--control", control).stdout


def test_a_producer_reverts_on_time_when_its_broker_is_gone(
    control_broker: tuple[BrokerProc, str], start_producers: Any
) -> None:
    """The deadline travels with the change: the broker killed after `set`, the level still reverts on time."""
    broker, control = control_broker
    producer = start_producers(broker.push_ingest, control, "checkout")
    producer.wait("started")
    assert poll_until(lambda: connected(broker, 1))
    done = level("set", "checkout", "DEBUG", "--for", "3s", "--control", control)
    assert done.returncode == 0, done.stderr
    ((set_at, _),) = producer.wait("set to DEBUG")
    broker.kill()
    ((back_at, _),) = producer.wait(r"back to what it was \(expired\)", timeout=10)
    assert 2.0 <= back_at - set_at <= 5.0


def test_cli_errors_say_what_to_do(control_broker: tuple[BrokerProc, str]) -> None:
    """A bad level or duration exits 2 before any broker is asked; a broker refusal or silence exits 1."""
    _, control = control_broker
    bad = level("set", "checkout", "NOTALEVEL", "--control", control)
    assert bad.returncode == 2 and "unknown level 'NOTALEVEL'" in bad.stderr
    long = level("set", "checkout", "DEBUG", "--for", "87600h", "--control", control)
    assert long.returncode == 2 and "from 1 second to 24 hours" in long.stderr
    nobody = level("list", "--control", f"tcp://127.0.0.1:{free_port()}", "--wait", "0")
    assert nobody.returncode == 1 and "no answer within" in nobody.stderr and "--control" in nobody.stderr


# --------------------------------------------------------------------------- CurveZMQ


def test_under_curve_only_an_operator_key_changes_levels(
    curve_keys: KeySet, start_producers: Any, tmp_path: Path
) -> None:
    """Plaintext, unknown and producer keys are refused (counted); nothing changes until an operator's key asks."""
    from broker import Broker

    operators = tmp_path / "operators"
    operators.mkdir()
    operator = curve_keys.pair("operator")
    curve_keys.allow(operators, operator)
    control = f"tcp://127.0.0.1:{free_port()}"
    broker = Broker(
        push_ingest="tcp://127.0.0.1:*",
        pub_ingest="tcp://127.0.0.1:*",
        egress="tcp://127.0.0.1:*",
        http="127.0.0.1:0",
        control=control,
        curve_secret_key=str(curve_keys.broker_secret),
        curve_producers=str(curve_keys.producers),
        curve_subscribers=str(curve_keys.subscribers),
        curve_operators=str(operators),
    ).start()
    try:
        env = {"LOGFABRIC_CURVE_SERVER_KEY": str(curve_keys.broker_public)}
        env["LOGFABRIC_CURVE_CLIENT_KEY"] = str(curve_keys.producer)
        producer = start_producers(broker.endpoints["push_ingest"], control, "checkout", **env)
        producer.wait("started")
        assert broker.control is not None
        assert poll_until(lambda: len(broker.control.producers) == 1)  # type: ignore[union-attr]
        ask = {"v": 1, "op": "set", "service": "checkout", "level": 10, "loggers": ["app.db"], "duration": 60.0}

        producer_keys = fabric.curve.CurveKeys.load(curve_keys.broker_public, curve_keys.producer)
        as_producer = request(control, ask, producer_keys, 5)
        assert as_producer["ok"] is False and as_producer["error"] == "forbidden"
        assert "operators allow-list" in as_producer["message"]
        stranger = fabric.curve.CurveKeys.load(curve_keys.broker_public, curve_keys.stranger)
        assert request(control, ask, stranger, 1.5)["ok"] is False
        assert request(control, ask, None, 1.5)["ok"] is False  # plaintext

        keys = {"--curve-server-key": str(curve_keys.broker_public), "--curve-client-key": str(operator)}
        done = level("set", "checkout", "DEBUG", "--logger", "app.db", "--control", control, *sum(keys.items(), ()))
        assert done.returncode == 0 and "applied by 1 process(es):" in done.stdout, done.stdout + done.stderr
        assert re.search(r"change 1 by operator \(\S{8}\.\.\.\)", done.stdout), done.stdout
        first = producer.wait("level of ")[0][1]  # the producer's first change is the operator's, change 1
        assert "set to DEBUG by operator (" in first and "(change 1)" in first

        metrics = embedded_metrics(broker)
        assert metrics.get("logfabric_broker_control_messages_total", op="set", outcome="forbidden") == 1
        assert metrics.get("logfabric_broker_control_messages_total", op="set", outcome="ok") == 1
        assert metrics.total("logfabric_broker_auth_refused_total", socket="control") >= 2
        assert metrics.get("logfabric_broker_curve_allowed_keys", list="operators") == 1
    finally:
        broker.stop(drain_timeout=0.2)


# --------------------------------------------------------------------------- the producer side, hostile broker


@pytest.fixture
def fake_broker() -> Iterator[tuple[zmq.Socket[bytes], str]]:
    """A bound ROUTER standing in for a broker's control endpoint (a hostile one)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield sock, f"tcp://127.0.0.1:{port}"
    finally:
        sock.close(linger=0)
        ctx.term()


def _hello(sock: zmq.Socket[bytes]) -> tuple[bytes, dict[str, Any]]:
    assert sock.poll(10_000), "no hello from the producer"
    peer, body = sock.recv_multipart()
    return peer, orjson.loads(body)


def _answers(sock: zmq.Socket[bytes], want: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Read (bounded) until ``want`` answers to set/reset came; hellos are skipped."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        if sock.poll(100):
            doc = orjson.loads(sock.recv_multipart()[1])
            if doc.get("op") == "applied":
                got.append(doc)
    return got


def _flood_answers(sock: zmq.Socket[bytes], peer: bytes, known: str) -> list[dict[str, Any]]:
    """Answers read until a sentinel change (of a logger already changed, sent until answered) is answered."""
    got: list[dict[str, Any]] = []
    for attempt in range(100):
        sentinel = {"v": 1, "op": "set", "id": 10_000 + attempt, "loggers": [known], "level": 10, "ttl": 60}
        sock.send_multipart([peer, orjson.dumps(sentinel)])
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            if sock.poll(20):
                doc = orjson.loads(sock.recv_multipart()[1])
                if doc.get("op") == "applied":
                    got.append(doc)
        if any(a["id"] >= 10_000 for a in got):
            return got
    pytest.fail("the producer never answered the sentinel")


def test_a_hostile_broker_changes_levels_only_within_bounds(
    fake_broker: tuple[zmq.Socket[bytes], str], make_logger: Any, endpoint: str
) -> None:
    """Junk is counted, levels out of range and floods of loggers are refused; at most 64 loggers ever change."""
    sock, control = fake_broker
    logger = make_logger(level=logging.INFO)
    handler = fabric.ZmqHandler(endpoint, service="victim", control=control, linger=0)
    logger.addHandler(handler)
    try:
        logger.info("start")  # starts the sender and the control thread
        peer, hello = _hello(sock)
        assert (hello["op"], hello["service"], hello["pid"]) == ("hello", "victim", os.getpid())
        agent = handler._agent
        assert agent is not None
        for junk in (b"not json", b"[1, 2]", b'{"v": 2, "op": "set"}', b"\x00" * 1000):
            sock.send_multipart([peer, junk])
        bad = [
            {"v": 1, "op": "set", "id": 1, "loggers": [logger.name], "level": 10**9, "ttl": 5},
            {"v": 1, "op": "set", "id": 2, "loggers": [logger.name], "level": "NOTALEVEL", "ttl": 5},
            {"v": 1, "op": "set", "id": 3, "loggers": [logger.name], "level": 10, "ttl": 10 * 365 * 86400},
            {"v": 1, "op": "set", "id": 4, "loggers": [f"x{i}" for i in range(1000)], "level": 10, "ttl": 5},
            {"v": 1, "op": "set", "id": 5, "loggers": ["y" * 10_000], "level": 10, "ttl": 5},
            {"v": 1, "op": "format_disk", "id": 6},
        ]
        for doc in bad:
            sock.send_multipart([peer, orjson.dumps(doc)])
        answers = _answers(sock, len(bad))
        assert [a["id"] for a in answers] == [1, 2, 3, 4, 5, 6]
        assert all(a["ok"] is False and a["error"] for a in answers)
        assert logger.level == logging.INFO and agent.stats["malformed"] == 4
        # a flood: 200 changes of distinct loggers, 10 at a time; the table stops at 64
        for i in range(200):
            names = [f"{logger.name}.flood{i}.{j}" for j in range(10)]
            sock.send_multipart([peer, orjson.dumps({"v": 1, "op": "set", "id": 100 + i, "loggers": names,
                                                     "level": 10, "ttl": 60, "by": "flood"})])  # fmt: skip
        answers = _flood_answers(sock, peer, f"{logger.name}.flood0.0")
        # what did not fit the bounded queues both ways was dropped; of what came, 6 changes (60 loggers)
        # were applied and every later one refused: a 7th would pass 64 loggers
        assert [a["id"] for a in answers if a["ok"] and a["id"] < 10_000] == [100, 101, 102, 103, 104, 105]
        assert all("at most 64" in a["error"] for a in answers if not a["ok"])
        assert len(_control.LEVELS.active()) == 60
        started = time.perf_counter()
        flooded = logging.getLogger(f"{logger.name}.flood0.0")
        assert flooded.isEnabledFor(logging.DEBUG)
        for _ in range(2000):
            flooded.debug("still fast")
        assert time.perf_counter() - started < 2.0  # the logging call never waits on control
        sock.send_multipart([peer, orjson.dumps({"v": 1, "op": "reset", "id": 999, "by": "flood"})])
        assert _answers(sock, 1)[0]["ok"] is True
        assert _control.LEVELS.active() == []
        assert logging.getLogger(f"{logger.name}.flood0.0").level == logging.NOTSET
    finally:
        logger.removeHandler(handler)
        handler.close()
        _control.LEVELS.revert(quiet=True)


def test_control_options_are_checked_at_construction(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """control=True derives port 5560 on the broker's host; what cannot work is one clear ConfigError."""
    assert _control.control_endpoint(True, "tcp://broker:5557", False) == f"tcp://broker:{wire.DEFAULT_PORT}"
    assert _control.control_endpoint(True, "tcp://[::1]:5557", False) == f"tcp://[::1]:{wire.DEFAULT_PORT}"
    assert _control.control_endpoint("tcp://ctl:7000", "tcp://broker:5557", False) == "tcp://ctl:7000"
    monkeypatch.delenv(wire.ENV, raising=False)
    assert _control.control_endpoint(False, "tcp://broker:5557", False) is None
    monkeypatch.setenv(wire.ENV, "1")
    assert _control.control_endpoint(False, "tcp://broker:5557", False) == f"tcp://broker:{wire.DEFAULT_PORT}"
    monkeypatch.setenv(wire.ENV, "tcp://other:5560")
    assert _control.control_endpoint(False, "tcp://broker:5557", False) == "tcp://other:5560"
    monkeypatch.delenv(wire.ENV)
    for control, where, bind, says in [
        (True, "ipc:///tmp/x", False, "takes the broker's host from a tcp:// endpoint"),
        (True, endpoint, True, "a handler that binds"),
        ("nowhere", endpoint, False, "invalid endpoint 'nowhere'"),
        (3, endpoint, False, "control must be True, False or a control endpoint"),
    ]:
        with pytest.raises(fabric.ConfigError, match=re.escape(says)):
            fabric.ZmqHandler(where, control=control, bind=bind)


def test_a_process_creates_a_bounded_number_of_loggers_for_changes() -> None:
    """Names a process never had become loggers 1,024 times at most; existing loggers can still be changed."""
    levels = _control.Levels()
    prefix = f"created.{os.getpid()}.{time.monotonic_ns()}"
    for batch in range(16):
        assert levels.apply(batch, tuple(f"{prefix}.{batch}.{i}" for i in range(64)), 10, 60.0, "test") is None
        levels.revert(quiet=True)
    refused = levels.apply(99, (f"{prefix}.one.more",), 10, 60.0, "test")
    assert refused is not None and "1024 loggers" in refused
    assert f"{prefix}.one.more" not in logging.Logger.manager.loggerDict
    assert levels.apply(100, (f"{prefix}.0.0", ""), 10, 60.0, "test") is None  # existing, and the root
    levels.revert(quiet=True)
    assert levels.active() == []
