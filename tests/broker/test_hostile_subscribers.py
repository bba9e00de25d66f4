"""Hostile peers at the sockets that take subscriptions or nothing at all: the broker survives, bounded, counting.

Every attacker is a real ZeroMQ peer (a raw XSUB, or hand-made ZMTP over a TCP
socket) against a real ``python -m broker`` process; memory is the broker's
own VmRSS.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq

import fabric
from broker import Broker
from fabric.curve import CurveKeys, generate
from fabric.topic import MAX_TOPIC, subscriptions
from tests.helpers.broker import BrokerProc, new_pair_delivers
from tests.helpers.capture import Capture, probe_until_seen
from tests.helpers.net import from_source, host_port
from tests.helpers.processes import rss_mib
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(120)


def raw_socket(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, endpoint: str) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 5000)  # a send never hangs a test
    sock.connect(endpoint)
    return sock


def received(sock: zmq.Socket[bytes], timeout: float) -> bool:
    return bool(sock.poll(int(timeout * 1000)))


class TestSubscriptionSize:
    """One subscription can be at most a topic long (``MAX_TOPIC`` bytes); a longer one resets its connection."""

    def test_a_120_kb_subscription_does_not_crash_the_broker(
        self, start_broker: Callable[..., BrokerProc], zmq_context: zmq.Context[zmq.Socket[bytes]]
    ) -> None:
        """A raw XSUB subscribing to a 120 KB prefix, then hanging up, leaves the broker up and forwarding."""
        b = start_broker()
        attacker = raw_socket(zmq_context, zmq.XSUB, b.egress)
        attacker.send(b"\x01" + b"a" * 120_000)

        def egress(name: str) -> float | None:
            return b.metrics().get(name, socket="egress")

        # taken in: held as a subscription, or its connection reset
        taken = poll_until(
            lambda: egress("logfabric_broker_subscriptions") or egress("logfabric_broker_disconnects_total")
        )
        assert taken, f"the broker never took the subscription in:\n{b.stderr()}"
        attacker.close(linger=0)  # libzmq 4.3.5 crashes removing so deep a trie (SIGSEGV)
        assert poll_until(lambda: egress("logfabric_broker_disconnects_total"))
        # a record through the egress after the hang-up: the egress has taken the hang-up in
        assert new_pair_delivers(zmq_context, b.push_ingest, b.egress) is not None, b.stderr()
        assert b.alive, f"the broker died (exit {b.proc.returncode if b.proc else None}):\n{b.stderr()}"
        assert b.get("/healthz")[0] == 200

    @pytest.mark.parametrize("with_curve", [False, True], ids=["plaintext", "curve"])
    def test_longest_topic_is_a_valid_subscription_one_byte_more_is_not(
        self, zmq_context: zmq.Context[zmq.Socket[bytes]], tmp_path: Path, with_curve: bool
    ) -> None:
        """A SUB prefix of MAX_TOPIC bytes gets its records, with or without CURVE; one of MAX_TOPIC + 1 gets reset."""
        options: dict[str, Any] = {}
        client: CurveKeys | None = None
        producer: CurveKeys | None = None
        if with_curve:
            public, secret = generate("broker", tmp_path / "broker")
            allowed = {}
            for role in ("producers", "subscribers"):
                key, key_secret = generate(role, tmp_path / f"{role}-keys")
                (tmp_path / role).mkdir()
                (tmp_path / role / key.name).write_bytes(key.read_bytes())
                allowed[role] = CurveKeys.load(public, key_secret)
            options = {
                "curve_secret_key": str(secret),
                "curve_producers": str(tmp_path / "producers"),
                "curve_subscribers": str(tmp_path / "subscribers"),
            }
            client, producer = allowed["subscribers"], allowed["producers"]
        broker = Broker(
            pub_ingest="tcp://127.0.0.1:*", push_ingest="tcp://127.0.0.1:*", egress="tcp://127.0.0.1:*", **options
        ).start()
        try:
            longest = b"2" + b"l" * (MAX_TOPIC - 1)
            subs = []
            for prefix in (longest, longest + b"x"):
                sub = zmq_context.socket(zmq.SUB)
                sub.setsockopt(zmq.LINGER, 0)
                if client is not None:
                    client.apply(sub)
                sub.setsockopt(zmq.SUBSCRIBE, prefix)
                sub.connect(broker.endpoints["egress"])
                subs.append(sub)
            push = zmq_context.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.setsockopt(zmq.SNDTIMEO, 5000)
            if producer is not None:
                producer.apply(push)
            push.connect(broker.endpoints["push_ingest"])
            frame = longest + b"x\x00svc\x00payload"  # matches both prefixes
            deadline = time.monotonic() + 10
            while not received(subs[0], 0.1) and time.monotonic() < deadline:
                push.send(frame)
            assert subs[0].recv() == frame, "the longest valid subscription never got its record"
            push.send(frame)
            assert not received(subs[1], 1.0), "a subscription longer than MAX_TOPIC was accepted"
            assert broker.disconnects("egress") >= 1
            assert broker.alive
        finally:
            broker.stop(drain_timeout=0)

    def test_what_a_downstream_accepts_fits_its_upstream(
        self, start_broker: Callable[..., BrokerProc], zmq_context: zmq.Context[zmq.Socket[bytes]]
    ) -> None:
        """The longest subscription an egress accepts is forwarded upstream without resetting the federation link."""
        upstream = start_broker()
        downstream = start_broker(upstream=(upstream.egress,))
        hostile = raw_socket(zmq_context, zmq.XSUB, downstream.egress)
        hostile.send(b"\x01" + b"9" + b"h" * (MAX_TOPIC + 8))  # the old-style message form: 9 bytes more
        sub = raw_socket(zmq_context, zmq.SUB, downstream.egress)
        sub.setsockopt(zmq.SUBSCRIBE, b"2fed")
        push = raw_socket(zmq_context, zmq.PUSH, upstream.push_ingest)
        deadline = time.monotonic() + 15
        while not received(sub, 0.1) and time.monotonic() < deadline:
            push.send(b"2fed\x00svc\x00payload")
        assert received(sub, 0), "nothing crossed the federation link"

        def held_upstream() -> float:
            return upstream.metrics().get("logfabric_broker_subscriptions", socket="egress") or 0

        # The hostile subscription went up the link before the real one: with both held, it was taken in.
        assert poll_until(lambda: held_upstream() >= 2), f"held upstream: {held_upstream()}"
        assert upstream.metrics().get("logfabric_broker_disconnects_total", socket="egress") == 0


class TestSubscriptionBudget:
    """The distinct subscriptions held for subscribers stay within ``--subscription-budget``; drops are counted."""

    def test_held_subscriptions_are_counted_exactly(
        self,
        start_broker: Callable[..., BrokerProc],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
    ) -> None:
        """A listener's distinct prefixes show in subscriptions{egress} and their bytes in subscription_bytes."""
        b = start_broker()
        capturing_listener(b.egress, level="WARNING", loggers=["app.db"])
        prefixes = set(subscriptions(30, ["app.db"]))

        def held() -> tuple[float | None, float | None]:
            m = b.metrics()
            return (
                m.get("logfabric_broker_subscriptions", socket="egress"),
                m.get("logfabric_broker_subscription_bytes", socket="egress"),
            )

        want = (len(prefixes), sum(len(p) for p in prefixes))
        assert poll_until(lambda: held() == want, timeout=10), f"held {held()}, want {want}"

    def test_a_subscription_flood_is_dropped_bounded_and_counted(
        self,
        start_broker: Callable[..., BrokerProc],
        capturing_listener: Callable[..., tuple[fabric.ZmqListener, Capture]],
        make_handler: Callable[..., fabric.ZmqHandler],
        start_attacker: Callable[..., subprocess.Popen[str]],
    ) -> None:
        """1.8 MB of subscriptions (which cost 359 MiB before) cost under 200 MiB; the subscriber is dropped.

        It is dropped once: its address is penalized, so each time libzmq
        reconnects it (plaintext here) the connection is shut down as soon as it
        is accepted, instead of taking the 1.8 MB in again.
        """
        b = start_broker()
        _, capture = capturing_listener(b.egress)
        handler = make_handler(b.push_ingest)
        probe_until_seen(handler, [capture])
        before = rss_mib(b.pid)
        start_attacker(from_source(b.egress, "127.0.0.2"), 450, 4000)

        def dropped() -> float:
            return b.metrics().total("logfabric_broker_subscriptions_refused_total", socket="egress")

        assert poll_until(lambda: dropped() >= 1, timeout=20), b.stderr()
        peak = before
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:  # the bridges may still be taking in the burst's backlog
            peak = max(peak, rss_mib(b.pid))
            time.sleep(0.05)  # a duration: the peak over 4 s, sampled every 50 ms
        growth = peak - before
        m = b.metrics()
        refused = {
            reason: m.get("logfabric_broker_subscriptions_refused_total", socket="egress", reason=reason)
            for reason in ("sent_too_much", "over_budget", "penalized")
        }
        print(f"1.8 MB of subscriptions: broker RSS {before:.0f} -> {peak:.0f} MiB (+{growth:.0f}), {refused}")
        assert growth < 200, f"the broker grew {growth:.0f} MiB for 1.8 MB of subscriptions; {refused}"
        assert (refused["sent_too_much"] or 0) + (refused["over_budget"] or 0) >= 1
        assert refused["penalized"], f"the subscriber's reconnects were not refused; {refused}"
        assert "dropped the egress connection from 127.0.0.2:" in b.stderr()
        assert poll_until(
            lambda: (b.metrics().get("logfabric_broker_subscription_bytes", socket="egress") or 0) <= 256 * 1024,
            timeout=15,
        ), "the subscriptions held never came back within the budget"
        probe_until_seen(handler, [capture])  # the subscriber that was there all along still gets records
        assert b.alive


class TestPipelineInbound:
    """A PUSH socket never reads what its peers send: the pipeline must not keep it."""

    def test_a_consumer_sending_400_mib_costs_the_broker_almost_nothing(
        self, start_broker: Callable[..., BrokerProc], zmq_context: zmq.Context[zmq.Socket[bytes]]
    ) -> None:
        """A ZMTP peer claiming to be a PULL pushes 400 x 1 MiB at --pipeline; the broker grows under 20 MiB."""
        b = start_broker(pipeline=True)
        assert b.pipeline is not None
        consumer = raw_socket(zmq_context, zmq.PULL, b.pipeline)
        before = rss_mib(b.pid)
        host, port = host_port(b.pipeline)
        sent = 0
        with socket.create_connection((host, port), timeout=5) as peer:
            peer.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" * 32)
            ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 4) + b"PULL"
            peer.sendall(bytes([0x04, len(ready)]) + ready)
            chunk = b"\x02" + struct.pack(">Q", 1 << 20) + b"y" * (1 << 20)
            try:
                for _ in range(400):
                    peer.sendall(chunk)
                    sent += 1
            except OSError:  # reset or stalled by the broker: what should happen
                pass
            time.sleep(1.0)  # a duration: what is still in the socket buffers has a second to reach the broker
            growth = rss_mib(b.pid) - before  # while the peer is still connected: what it makes the broker hold
        print(f"pipeline peer sent {sent} MiB before it was stopped; broker RSS +{growth:.1f} MiB")
        assert growth < 20, f"the broker kept {growth:.0f} MiB of what a consumer sent ({sent} MiB sent)"
        push = raw_socket(zmq_context, zmq.PUSH, b.push_ingest)
        push.send(b"2pipe\x00svc\x00payload")
        assert received(consumer, 10), "the pipeline stopped delivering"
