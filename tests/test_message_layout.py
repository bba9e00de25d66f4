"""One frame per record: ``topic NUL payload``, split back exactly, filtered by SUB prefixes."""

from __future__ import annotations

import logging

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric._intake import Intake
from fabric.codec import Encoder, ProducerIdentity
from fabric.topic import join_message, make_topic, split_message, subscriptions

IDENTITY = ProducerIdentity("svc", "host-1", 4242, 0x0123456789ABCDEF)
names = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)


@given(level=st.integers(-5, 200), name=names, service=names, payload=st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_split_returns_what_join_put_in(level: int, name: str, service: str, payload: bytes) -> None:
    """NULs inside names are replaced, so the second NUL always ends the topic, whatever the payload holds."""
    topic = make_topic(level, name, service)
    assert split_message(join_message(topic, payload)) == (topic, payload)


@pytest.mark.parametrize("frame", [b"", b"no delimiter", b"2app\x00svc"])
def test_a_frame_without_two_nuls_is_not_a_message(frame: bytes) -> None:
    with pytest.raises(ValueError, match="no topic delimiter"):
        split_message(frame)


def test_intake_reads_one_frame_and_counts_other_shapes_as_malformed() -> None:
    """One frame (topic NUL payload) decodes; no delimiter, or several frames, is malformed."""
    record = logging.makeLogRecord({"name": "app.db", "msg": "hello", "levelno": 20, "levelname": "INFO"})
    topic = make_topic(20, "app.db", IDENTITY.service)
    enc = Encoder(IDENTITY)
    intake = Intake()
    one = intake.receive([join_message(topic, enc.encode(record, 1))])
    assert [r.msg for r in one] == ["hello"]
    assert intake.receive([b"2app.db\x00svc"]) == []
    assert intake.receive([topic, enc.encode(record, 2)]) == []
    assert intake.receive([topic, b"\x01", b"extra"]) == []
    assert intake.stats["malformed"] == 3 and intake.stats["received"] == 1


def test_sub_prefixes_filter_one_frame_messages() -> None:
    """A SUB socket subscribed with topic prefixes receives exactly the matching one-frame messages."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    try:
        for prefix in subscriptions(logging.WARNING, ["app.db"], ["checkout"]):
            sub.setsockopt(zmq.SUBSCRIBE, prefix)
        sub.setsockopt(zmq.RCVTIMEO, 2000)
        pub.bind("inproc://layout")
        sub.connect("inproc://layout")
        messages = {
            (30, "app.db", "checkout"): True,
            (40, "app.db.pool", "billing"): True,  # descendants match by the "p." prefix, any service
            (20, "app.db", "checkout"): False,  # below the level
            (30, "app.dbx", "checkout"): False,  # not a descendant
            (50, "other", "checkout"): False,
        }
        expected = []
        # The subscription reaches an inproc PUB at once; send until the first message arrives to be sure.
        probe = join_message(make_topic(30, "app.db", "checkout"), b"probe")
        while True:
            pub.send(probe)
            if sub.poll(50):
                sub.recv()
                break
        for (level, name, service), wanted in messages.items():
            frame = join_message(make_topic(level, name, service), f"{level} {name}".encode())
            pub.send(frame)
            if wanted:
                expected.append(frame)
        got = []
        while sub.poll(200):
            got.append(sub.recv())
        assert [g for g in got if g != probe] == expected
    finally:
        pub.close(linger=0)
        sub.close(linger=0)
        ctx.term()
