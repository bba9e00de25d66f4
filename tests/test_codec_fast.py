"""The protobuf decoder's fast path gives exactly what a full parse gives, or steps aside.

``decode()`` reads a payload in the encoder's own layout from a cache of the
block of repeated fields once it has parsed that block fully. These tests check
that the cached path and the full parse (``fabric._pb_reader.decode_full``) agree on every
record, and on damaged payloads: both reject, or both return the same record.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric import _pb_layout, _pb_reader, codec
from fabric._proto.logfabric.v1 import record_pb2 as pb
from fabric.codec import Encoder, Limits, MalformedRecord, ProducerIdentity, decode

IDENTITY = ProducerIdentity("svc", "host-1", 4242, 0x0123456789ABCDEF)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@st.composite
def records(draw: st.DrawFn) -> logging.LogRecord:
    levelno = draw(st.sampled_from([5, 10, 20, 25, 30, 40, 50, 120]))
    fields: dict[str, Any] = {
        "name": draw(text),
        "msg": draw(text),
        "levelno": levelno,
        "levelname": draw(st.sampled_from([logging.getLevelName(levelno), "", "CUSTOM"])),
        "pathname": draw(st.sampled_from(["/srv/app/orders.py", "", "rel/x.tar.gz", "C:\\app\\w.py", "/x/"])),
        "lineno": draw(st.integers(0, 2**31 - 1)),
        "funcName": draw(st.sampled_from(["place", "", None])),
        "created": draw(st.floats(0, 4e9)),
        "msecs": draw(st.floats(0, 999)),
        "relativeCreated": draw(st.floats(0, 1e9)),
        "thread": draw(st.sampled_from([0, 140234567890123])),
        "threadName": draw(st.sampled_from(["MainThread", ""])),
        "process": draw(st.sampled_from([0, 4242])),
        "processName": draw(st.sampled_from(["MainProcess", ""])),
    }
    record = logging.makeLogRecord(fields)
    if draw(st.booleans()):  # filename and module that do not follow from pathname
        record.filename, record.module = draw(text), draw(text)
    if draw(st.booleans()):
        record.ctx = draw(st.integers())  # an extra: the cached block then does not apply
    return record


def _same(a: codec.Decoded, b: codec.Decoded) -> None:
    assert a.record.__dict__ == b.record.__dict__
    assert (a.producer_id, a.seq, a.truncated) == (b.producer_id, b.seq, b.truncated)


@given(record=records(), seq=st.integers(1, 2**64 - 1))
@SETTINGS
def test_cached_path_equals_full_parse(record: logging.LogRecord, seq: int) -> None:
    """The first decode parses fully and caches; the second uses the cache; both match a full parse."""
    payload = Encoder(IDENTITY, "protobuf").encode(record, seq)
    full = _pb_reader.decode_full(payload, Limits())
    _same(decode(payload), full)
    _same(decode(payload), full)
    # and a full parse by the generated code agrees on the message
    message = pb.LogRecord.FromString(payload[1:])
    assert message.body == record.getMessage()
    assert message.producer.seq == seq


def test_typical_records_take_the_cached_path() -> None:
    """Without exceptions or extras, the second record from a call site is read from the cache."""
    logger = logging.getLogger("fast.path")
    enc = Encoder(IDENTITY, "protobuf")
    first = enc.encode(logger.makeRecord(logger.name, 20, __file__, 7, "a %d", (1,), None, "f"), 1)
    second = enc.encode(logger.makeRecord(logger.name, 20, __file__, 7, "b %d", (2,), None, "f"), 2)
    decode(first)
    fast = _pb_reader.decode_fast(second, Limits())
    assert fast is not None
    assert fast.record.getMessage() == "b 2" and fast.seq == 2
    assert fast.record.filename == "test_codec_fast.py" and fast.record.module == "test_codec_fast"


@given(record=records(), data=st.data())
@SETTINGS
def test_damaged_payloads_agree_with_the_full_parse(record: logging.LogRecord, data: st.DataObject) -> None:
    """Bytes overwritten or cut: the cached path and the full parse reject together or agree."""
    enc = Encoder(IDENTITY, "protobuf")
    good = enc.encode(record, 77)
    decode(good)  # the block of repeated fields is now cached
    damaged = bytearray(good)
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 4))):
            damaged[data.draw(st.integers(1, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    else:
        damaged = damaged[: data.draw(st.integers(1, len(damaged) - 1))]
    payload = bytes(damaged)
    try:
        full = _pb_reader.decode_full(payload, Limits())
    except MalformedRecord:
        with pytest.raises(MalformedRecord):
            decode(payload)
        return
    _same(decode(payload), full)


def test_a_one_byte_seq_with_its_top_bit_set_is_rejected() -> None:
    """A last byte overwritten with a continuation bit is a cut varint: both paths reject, no seq is invented."""
    record = logging.makeLogRecord({"name": "x", "msg": "m", "levelno": 5, "levelname": "Level 5"})
    good = Encoder(IDENTITY, "protobuf").encode(record, 77)
    decode(good)  # the block of repeated fields is now cached
    damaged = good[:-1] + bytes([0x96])
    with pytest.raises(MalformedRecord):
        _pb_reader.decode_full(damaged, Limits())
    with pytest.raises(MalformedRecord):
        decode(damaged)


def test_a_block_with_an_explicit_default_is_not_cached() -> None:
    """A repeated-fields block that writes body="" explicitly would override the body: never cached."""
    enc = Encoder(IDENTITY, "protobuf")
    record = logging.makeLogRecord({"name": "x", "msg": "real", "levelno": 20, "levelname": "INFO"})
    payload = enc.encode(record, 5)
    _, body_end, tail, _ = _pb_layout.split(payload) or pytest.fail("not our layout")
    forged = payload[:body_end] + b"\x22\x00" + payload[body_end:]  # body "" inside the block
    full = _pb_reader.decode_full(forged, Limits())
    assert full.record.msg == ""
    assert decode(forged).record.msg == ""
    assert forged[body_end : tail + 2] not in _pb_reader.STATIC_ATTRS


def test_an_oversized_block_is_not_cached() -> None:
    """A block of repeated fields over 1 KiB is decoded fully every time, never kept in memory."""
    enc = Encoder(IDENTITY, "protobuf")
    record = logging.makeLogRecord({"name": "x", "msg": "m", "levelno": 20, "pathname": "/p" * 1000})
    payload = enc.encode(record, 1)
    _, body_end, tail, _ = _pb_layout.split(payload) or pytest.fail("not our layout")
    assert tail - body_end > _pb_reader.STATIC_MAX_BYTES
    assert decode(payload).record.pathname == "/p" * 1000
    assert payload[body_end:tail] not in _pb_reader.STATIC_ATTRS
    assert _pb_reader.decode_fast(payload, Limits()) is None
