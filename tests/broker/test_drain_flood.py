"""SIGTERM against a sender that never stops, and a busy proxy: the broker still stops in time.

A real ``python -m broker`` process is flooded by raw PUSH senders in other
processes (as fast as pyzmq can send) while a subscriber reads everything.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import zmq

import fabric
from broker.proxy import Proxy
from tests.helpers.broker import BrokerProc
from tests.helpers.capture import Capture
from tests.helpers.net import ROOT, child_env
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(120)

#: A raw PUSH sender: one valid-looking one-frame record, sent in a loop until killed.
FLOOD = r"""
import sys, zmq
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
push.setsockopt(zmq.LINGER, 0)
push.connect(sys.argv[1])
frame = b"2flood\x00flood\x00" + b"x" * 200
while True:
    push.send(frame)
"""


@pytest.fixture
def flooders() -> Iterator[Callable[[str, int], list[subprocess.Popen[bytes]]]]:
    """Start raw PUSH flood processes at an endpoint; all killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(endpoint: str, count: int) -> list[subprocess.Popen[bytes]]:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", FLOOD, endpoint],
                cwd=ROOT,
                env=child_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(count)
        ]
        started.extend(procs)
        return procs

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


class TestDrainUnderFlood:
    """`--drain-timeout` bounds the SIGTERM drain while a sender floods the push ingest."""

    def test_sigterm_exits_within_the_drain_timeout_while_flooded(
        self,
        start_broker: Callable[..., BrokerProc],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        flooders: Callable[[str, int], list[subprocess.Popen[bytes]]],
    ) -> None:
        """A raw sender floods the push ingest; after SIGTERM the broker exits 0 within 3 s plus a small margin."""
        drain_timeout = 3.0
        b = start_broker("--drain-timeout", str(drain_timeout))
        capturing_listener(b.egress)  # a subscriber, so records also flow out during the drain
        flooders(b.push_ingest, 1)

        def received() -> float:
            return b.metrics().total("logfabric_broker_records_received_total", ingest="push")

        assert poll_until(lambda: received() > 20_000, timeout=20), "the flood never reached the broker"
        before = received()
        time.sleep(0.5)  # a duration: the rate over half a second
        rate = (received() - before) / 0.5
        assert rate > 20_000, f"only {rate:.0f} records/s: not a flood, nothing would be tested"

        signalled = time.monotonic()
        b.signal(signal.SIGTERM)
        code = b.wait(timeout=drain_timeout + 15)  # fails (and kills it) if the broker outlives this
        took = time.monotonic() - signalled
        # 0.5 s for the CLI to notice the signal, then the drain, then closing
        assert took < drain_timeout + 2.0, f"exit took {took:.2f} s after SIGTERM, drain timeout {drain_timeout} s"
        assert code == 0, b.stderr()
        assert "drain timeout reached" in b.stderr(), b.stderr()


class TestBusyProxy:
    """A proxy too busy to answer STATISTICS in time neither fails a stop nor sends counters back to zero."""

    def test_a_timed_out_statistics_request_leaves_counters_and_terminate_intact(self) -> None:
        """While the proxy adds long subscriptions to its tries, requests time out; counters stay, terminate works."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            front, back = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
            front.bind("inproc://busy-in")
            back.bind("inproc://busy-out")
            subscriber = ctx.socket(zmq.XSUB)
            subscriber.setsockopt(zmq.SNDHWM, 0)
            subscriber.connect("inproc://busy-out")
            proxy = Proxy(ctx, "busy", front, back)
            proxy.start()
            try:
                first = proxy.statistics()
                for i in range(40):  # each 20 KB prefix costs the proxy thread two tries of 20,000 nodes
                    subscriber.send(b"\x01%02d" % i + b"s" * 20_000)
                timed_out = 0
                for _ in range(20):
                    try:
                        proxy.statistics(timeout_ms=0)
                    except TimeoutError:
                        timed_out += 1
                assert timed_out, "every request was answered at once: nothing was tested"
                assert all(now >= then for now, then in zip(proxy.last, first, strict=True))
            finally:
                proxy.terminate(timeout=10)  # its own STATISTICS request may time out too
            assert not proxy.alive
            proxy.close()
        finally:
            ctx.destroy(linger=0)
