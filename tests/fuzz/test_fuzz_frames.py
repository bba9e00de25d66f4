"""Hypothesis fuzzing of a subscriber's frame handling over a real socket.

Batches of arbitrary multipart messages (random frames, random payloads in the
real framing, mutated and valid records at any level) go over TCP into a
``ZmqListener`` and into a ``subscribe()`` iterator. The attacker's view is
drawn too: valid records under forged or damaged topics, producer ids taken
from a small pool (the sentinel's among them) and sequence numbers from 1 to
2**64 - 1, so streams collide, jump, go back and resynchronise; records that
pretend to be gap notices. After each batch a valid sentinel record is sent;
once it has arrived, every message of the batch must be accounted for:
``received + malformed + filtered`` grew by exactly the number of messages
sent, nothing was counted as an error, and only notices the subscriber made
itself are :class:`fabric.GapNotice` instances.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fabric
from fabric._intake import REORDER_WINDOW, GapNotice
from fabric._record import ReceivedRecord
from fabric.codec import ProducerIdentity
from fabric.topic import MAX_TOPIC, make_topic
from tests.helpers.net import tcp_endpoint
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

FUZZER = ProducerIdentity("fuzzer", "fuzz-host", 1, 0xF00D)
SENTINEL = ProducerIdentity("sentinel", "fuzz-host", 2, 0x5E9)
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
COUNTED = ("received", "malformed", "filtered")
# Producer ids and sequence numbers as an attacker picks them: collisions with
# each other and with the sentinel, and the edges of the range.
PRODUCER_IDS = st.sampled_from([0, 1, FUZZER.producer_id, SENTINEL.producer_id, 2**64 - 1]) | st.integers(0, 2**64 - 1)
SEQS = st.sampled_from([1, 2, 3, REORDER_WINDOW, REORDER_WINDOW + 2, 2**63, 2**64 - 1]) | st.integers(1, 2**64 - 1)
_sentinels = itertools.count(1)


def payload(
    name: str,
    level: int,
    msg: str,
    seq: int,
    codec: str,
    identity: ProducerIdentity = FUZZER,
    **extra: object,
) -> bytes:
    record = logging.LogRecord(name, level, "/fuzz.py", 1, msg, (), None)
    # fixed clocks and ids: the same draws must give the same bytes
    record.created, record.msecs, record.relativeCreated, record.thread, record.process = 1.7e9, 0.0, 0.0, 1, 1
    record.__dict__.update(extra)
    return fabric.encode(record, identity, seq, codec)  # type: ignore[arg-type]


@st.composite
def hostile_topics(draw: st.DrawFn, right: bytes) -> bytes:
    """A topic that is not ``right``: random, damaged, another bucket, too long, or missing its NUL."""
    kind = draw(st.sampled_from(["random", "damaged", "bucket", "long", "no-nul"]))
    if kind == "random":
        return draw(st.binary(max_size=40).filter(lambda b: b.count(b"\x00") == 1))
    if kind == "damaged":
        at = draw(st.integers(0, len(right) - 1))
        return right[:at] + bytes([(right[at] + draw(st.integers(1, 255))) % 256]) + right[at + 1 :]
    if kind == "bucket":
        return bytes([0x30 + (right[0] - 0x30 + draw(st.integers(1, 9))) % 10]) + right[1:]
    if kind == "long":
        return right + b"x" * (MAX_TOPIC + 1 - len(right))
    return right.replace(b"\x00", b"?")


@st.composite
def messages(draw: st.DrawFn, wire: Any) -> list[bytes]:
    """One multipart message of any shape a peer could send."""
    kind = draw(st.sampled_from(["frames", "payload", "valid", "mutated", "topic", "notice"]))
    if kind == "frames":
        return draw(st.lists(st.binary(max_size=200), min_size=1, max_size=4))
    if kind == "payload":
        return list(wire.message(draw(st.binary(max_size=300))))
    identity = ProducerIdentity(
        draw(st.sampled_from([FUZZER.service, SENTINEL.service])), "fuzz-host", 1, draw(PRODUCER_IDS)
    )
    name = draw(st.text(max_size=20) | st.sampled_from(["fuzz.sentinel", "logfabric.gaps"]))
    level = draw(st.integers(-10, 120))
    extra: dict[str, object] = {}
    if kind == "notice":  # a remote record dressed as a gap notice
        name, level, extra = "logfabric.gaps", logging.WARNING, {"lost": draw(st.integers(0, 10)), "kind": "gap"}
    valid = payload(
        name,
        level,
        draw(st.text(max_size=100)),
        draw(SEQS),
        draw(st.sampled_from(["protobuf", "json"])),
        identity,
        **extra,
    )
    if kind == "topic":
        right = make_topic(level, name, identity.service)
        return list(wire.under(draw(hostile_topics(right)), valid))
    if kind == "mutated":
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        valid = bytes(data)
    framed = list(wire.message(valid))
    if draw(st.booleans()):  # and sometimes extra or missing frames around it
        framed = draw(st.sampled_from([[*framed, b""], [b"", *framed], framed[-1:], framed]))
    return framed


class Seen(logging.Handler):
    """Remembers sentinel messages (thread-safe)."""

    def __init__(self) -> None:
        super().__init__()
        self.sentinels: set[str] = set()
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "fuzz.sentinel":
            with self.guard:
                self.sentinels.add(record.getMessage())

    def has(self, text: str) -> bool:
        with self.guard:
            return text in self.sentinels


@pytest.fixture(scope="module")
def sender() -> Iterator[Any]:
    """A zmq context for the raw PUSH sockets of this module (closed with linger 0)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def push_to(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    sock.connect(endpoint)
    return sock


@pytest.fixture(scope="module")
def listener_link(sender: Any) -> Iterator[tuple[fabric.ZmqListener, Seen, zmq.Socket[bytes]]]:
    """A started pull ZmqListener (level WARNING) and a raw PUSH socket connected to it."""
    endpoint = tcp_endpoint()
    seen = Seen()
    listener = fabric.ZmqListener(endpoint, seen, mode="pull", bind=True, level="WARNING")
    listener.start()
    sock = push_to(sender, endpoint)
    try:
        yield listener, seen, sock
    finally:
        sock.close(linger=0)
        listener.stop()


@pytest.fixture(scope="module")
def subscription_link(sender: Any) -> Iterator[tuple[fabric.Subscription, zmq.Socket[bytes]]]:
    """A pull subscribe() iterator (services 'fuzzer' and 'sentinel') and a raw PUSH socket connected to it."""
    endpoint = tcp_endpoint()
    sub = fabric.subscribe(endpoint, mode="pull", bind=True, services=["fuzzer", "sentinel"], timeout=10)
    sock = push_to(sender, endpoint)
    try:
        yield sub, sock
    finally:
        sock.close(linger=0)
        sub.close()


def send_batch(sock: zmq.Socket[bytes], wire: Any, batch: list[list[bytes]]) -> str:
    """Send ``batch`` then a sentinel record; return the sentinel's text."""
    for message in batch:
        sock.send_multipart(message)
    n = next(_sentinels)
    text = f"sentinel {n}"
    sock.send_multipart(wire.message(payload("fuzz.sentinel", logging.ERROR, text, n, "protobuf", SENTINEL)))
    return text


def counted(stats: dict[str, int]) -> int:
    return sum(stats[k] for k in COUNTED)


@given(data=st.data())
@SETTINGS
def test_listener_accounts_for_every_message(listener_link: Any, fuzz_wire: Any, data: Any) -> None:
    """Any batch into a ZmqListener: received + malformed + filtered grows by the batch size + 1, no errors."""
    listener, seen, sock = listener_link
    batch = data.draw(st.lists(messages(fuzz_wire), min_size=1, max_size=15))
    before = dict(listener.stats)
    text = send_batch(sock, fuzz_wire, batch)
    assert wait_until(lambda: seen.has(text), timeout=10, interval=0.002), f"sentinel lost; stats {listener.stats}"
    after = dict(listener.stats)
    assert counted(after) - counted(before) == len(batch) + 1, (before, after, batch)
    assert after["errors"] == before["errors"], after
    assert listener._thread is not None and listener._thread.is_alive()


@given(data=st.data())
@SETTINGS
def test_subscribe_accounts_for_every_message(subscription_link: Any, fuzz_wire: Any, data: Any) -> None:
    """Any batch into a subscribe() iterator: the same accounting, and only LogRecords come out."""
    sub, sock = subscription_link
    batch = data.draw(st.lists(messages(fuzz_wire), min_size=1, max_size=15))
    before = dict(sub.stats)
    text = send_batch(sock, fuzz_wire, batch)
    for record in sub:
        assert isinstance(record, logging.LogRecord)
        if isinstance(record, GapNotice):  # built here: the only records with args
            assert record.kind in ("gap", "resync") and type(record.lost) is int and record.lost >= 0
        else:
            assert record.args == () and type(record) is ReceivedRecord
        record.getMessage()
        if record.name == "fuzz.sentinel" and record.getMessage() == text:
            break
    else:
        pytest.fail(f"sentinel lost; stats {sub.stats}")
    after = dict(sub.stats)
    assert counted(after) - counted(before) == len(batch) + 1, (before, after, batch)
    assert after["errors"] == before["errors"], after
