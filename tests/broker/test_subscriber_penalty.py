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
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

from fabric.curve import CurveKeys, generate
from tests.helpers.broker import BrokerProc, new_pair_delivers
from tests.helpers.net import from_source
from tests.helpers.processes import rss_mib
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(120)

#: Refused reconnects a plaintext attacker makes before memory is read again (about one every 150 ms).
RECONNECTS = 20


def refused(b: BrokerProc) -> dict[str, float]:
    """The broker's subscriptions_refused_total{socket="egress"} by reason."""
    m = b.metrics()
    return {
        reason: m.get("logfabric_broker_subscriptions_refused_total", socket="egress", reason=reason) or 0.0
        for reason in ("sent_too_much", "over_budget", "penalized")
    }


@pytest.mark.parametrize("with_curve", [False, True], ids=["plaintext", "curve"])
def test_a_dropped_subscriber_that_reconnects_is_refused_and_counted(
    start_broker: Callable[..., BrokerProc],
    zmq_context: zmq.Context[zmq.Socket[bytes]],
    start_attacker: Callable[..., subprocess.Popen[str]],
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
    b = start_broker(*extra)
    served = new_pair_delivers(zmq_context, b.push_ingest, b.egress, keys=keys)
    assert served is not None, "the broker served nobody before the attack"
    before = rss_mib(b.pid)
    attacker = from_source(b.egress, "127.0.0.3")
    start_attacker(attacker, keys=attacker_keys)
    assert poll_until(lambda: refused(b)["penalized"] >= 1, timeout=20), f"{refused(b)}\n{b.stderr()}"
    settled = rss_mib(b.pid)
    if with_curve:
        # refused at the handshake, it does not retry: a second one from the same address must be refused too
        start_attacker(attacker, keys=attacker_keys)
        assert poll_until(lambda: refused(b)["penalized"] >= 2, timeout=20), f"{refused(b)}\n{b.stderr()}"
    else:
        # shut down at once, it keeps reconnecting: each reconnect must be refused, none taken in
        reconnected = poll_until(lambda: refused(b)["penalized"] >= RECONNECTS, timeout=20)
        assert reconnected, f"the reconnects were not refused: {refused(b)}"
    after = rss_mib(b.pid)
    counts = refused(b)
    print(f"penalty ({'curve' if with_curve else 'plaintext'}): RSS {before:.0f} -> {settled:.0f} -> {after:.0f} MiB")
    print(f"  refused {counts}")
    assert counts["sent_too_much"] + counts["over_budget"] == 1, f"dropped more than once: {counts}"
    assert "dropped the egress connection from 127.0.0.3:" in b.stderr()
    assert after - before < 200, f"the broker grew {after - before:.0f} MiB; {counts}"
    assert after - settled < 40, f"the refused reconnects cost {after - settled:.0f} MiB; {counts}"
    served = new_pair_delivers(zmq_context, b.push_ingest, b.egress, keys=keys)
    assert served is not None, "a subscriber from another address was not served during the penalty"
    assert b.alive
