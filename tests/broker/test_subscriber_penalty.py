"""A subscriber dropped for its subscriptions is shut out for a while, with or without CurveZMQ.

A libzmq subscriber that is dropped reconnects at once and sends all its
subscriptions again. For 30 s after a drop the broker refuses new egress
connections from the dropped peer's IP address: with CurveZMQ at the ZAP
handshake (status 300), in plaintext as soon as the connection is accepted.
Each refusal is counted as ``penalized``, never as another drop, and the
broker's memory does not grow with the reconnects. A plaintext subscriber,
whose connection is shut down, retries every 100 ms and is refused each time;
a CurveZMQ one refused at the handshake does not retry (libzmq 4.3.5 ends the
connecting session on a failed handshake). Every attacker is a real
raw XSUB process; the broker is a real ``python -m broker`` process.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import zmq

from fabric.curve import CurveKeys, generate
from tests.broker.test_hostile_subscribers import ATTACKER, from_source, rss_mib
from tests.helpers.net import ROOT, child_env

pytestmark = pytest.mark.timeout(120)

Factory = Callable[..., Any]


@pytest.fixture
def attacker() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start :data:`ATTACKER` processes; each has queued everything when returned; all killed at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(endpoint: str, *keys: Path) -> subprocess.Popen[str]:
        args = [sys.executable, "-c", ATTACKER, endpoint, "450", "4000", *map(str, keys)]
        proc = subprocess.Popen(args, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "SENT", "the attacker did not start"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


def refused(b: Any) -> dict[str, float]:
    """The broker's subscriptions_refused_total{socket="egress"} by reason."""
    m = b.metrics()
    return {
        reason: m.get("logfabric_broker_subscriptions_refused_total", socket="egress", reason=reason) or 0.0
        for reason in ("sent_too_much", "over_budget", "penalized")
    }


def delivers(ctx: zmq.Context[zmq.Socket[bytes]], b: Any, keys: dict[str, CurveKeys], timeout: float = 10.0) -> bool:
    """Whether a new subscriber from 127.0.0.1 gets a record pushed in after it subscribed (bounded)."""
    sub = ctx.socket(zmq.SUB)
    push = ctx.socket(zmq.PUSH)
    for sock, role in ((sub, "subscribers"), (push, "producers")):
        sock.setsockopt(zmq.LINGER, 0)
        if role in keys:
            keys[role].apply(sock)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"2legit")
        sub.connect(b.egress)
        push.setsockopt(zmq.SNDTIMEO, 5000)
        push.connect(b.push_ingest)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            push.send(b"2legit\x00svc\x00payload")
            if sub.poll(100):
                return True
        return False
    finally:
        sub.close(linger=0)
        push.close(linger=0)


@pytest.mark.parametrize("with_curve", [False, True], ids=["plaintext", "curve"])
def test_a_dropped_subscriber_that_reconnects_is_refused_and_counted(
    broker_process: Factory,
    broker_zmq: zmq.Context[zmq.Socket[bytes]],
    broker_tools: SimpleNamespace,
    attacker: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
    with_curve: bool,
) -> None:
    """One drop, then each reconnect from 127.0.0.3 is refused (``penalized``); memory stays; others are served."""
    extra: list[str] = []
    keys: dict[str, CurveKeys] = {}
    attacker_keys: tuple[Path, ...] = ()
    if with_curve:
        public, secret = generate("broker", tmp_path / "broker")
        extra = ["--curve-secret-key", str(secret)]
        for role in ("producers", "subscribers"):
            key, key_secret = generate(role, tmp_path / f"{role}-keys")
            (tmp_path / role).mkdir()
            (tmp_path / role / key.name).write_bytes(key.read_bytes())
            keys[role] = CurveKeys.load(public, key_secret)
            extra += [f"--curve-{role}", str(tmp_path / role)]
            if role == "subscribers":
                attacker_keys = (public, key_secret)
    b = broker_process(*extra)
    assert delivers(broker_zmq, b, keys), "the broker served nobody before the attack"
    before = rss_mib(b.pid)
    attacker(from_source(b.egress, "127.0.0.3"), *attacker_keys)
    assert broker_tools.wait_until(lambda: refused(b)["penalized"] >= 1, timeout=20), f"{refused(b)}\n{b.stderr()}"
    settled = rss_mib(b.pid)
    time.sleep(3.0)  # a plaintext libzmq subscriber retries every 100 ms: about 30 more refusals
    after = rss_mib(b.pid)
    counts = refused(b)
    print(f"penalty ({'curve' if with_curve else 'plaintext'}): RSS {before:.0f} -> {settled:.0f} -> {after:.0f} MiB")
    print(f"  refused {counts}")
    assert counts["sent_too_much"] + counts["over_budget"] == 1, f"dropped more than once: {counts}"
    assert counts["penalized"] >= (1 if with_curve else 10), f"the reconnects were not refused: {counts}"
    assert "dropped the egress connection from 127.0.0.3:" in b.stderr()
    assert after - before < 200, f"the broker grew {after - before:.0f} MiB; {counts}"
    assert after - settled < 40, f"the refused reconnects cost {after - settled:.0f} MiB; {counts}"
    assert delivers(broker_zmq, b, keys), "a subscriber from another address was not served during the penalty"
    assert b.alive
