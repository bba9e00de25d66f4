"""Hypothesis fuzzing of both decoders: arbitrary bytes and mutated valid payloads of generated records.

Whatever comes in, ``fabric.decode`` either raises ``MalformedRecord`` or
returns a record that is safe to hand to any handler: the standard attributes
have their documented types, nothing shadows a ``LogRecord`` method, the
message is inert (``args == ()``) and every text field respects its cap. Given
the topic a message carried, it accepts a record only under the topic that
record's level, logger and service make.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fabric
from fabric.codec import Limits, ProducerIdentity
from fabric.topic import make_topic

IDENTITY = ProducerIdentity("fuzz", "fuzz-host", 4242, 0x0123456789ABCDEF)
LIMITS = Limits(message=2000, traceback=2000, field=300, extras=8, extra_value=500)
MARKER = 60  # the longest "... [logfabric: truncated N chars]" marker
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMAT = logging.Formatter(
    "%(asctime)s %(created)f %(msecs)d %(relativeCreated)d %(levelname)s %(levelno)d %(name)s %(pathname)s "
    "%(filename)s %(module)s %(lineno)d %(funcName)s %(thread)s %(threadName)s %(process)s %(processName)s "
    "%(message)s %(service)s %(host)s %(producer_id)s %(seq)s"
)
_METHODS = {name for name in dir(logging.LogRecord) if callable(getattr(logging.LogRecord, name))}

text = st.text(max_size=40)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
# taskName is a standard attribute from Python 3.12 on (an encoder concern, not a decoder one)
_STANDARD = {*logging.makeLogRecord({}).__dict__, "taskName", "message", "asctime"}
extra_names = st.text(min_size=1, max_size=12).filter(lambda n: n not in _STANDARD)


@st.composite
def records(draw: st.DrawFn) -> logging.LogRecord:
    """A LogRecord with generated name, level, message, traceback text and extras."""
    record = logging.LogRecord(
        draw(st.text(max_size=30)),
        draw(st.integers(-5, 200)),
        draw(text),
        draw(st.integers(0, 10**6)),
        draw(st.text(max_size=3000)),
        (),
        None,
    )
    record.exc_text = draw(st.none() | st.text(max_size=3000))
    # fixed clocks and ids: the same draws must give the same payload
    record.created, record.msecs, record.relativeCreated = 1.7e9, 0.0, 0.0
    record.thread, record.process = 1, 1
    for name, value in draw(st.dictionaries(extra_names, values, max_size=12)).items():
        if name not in _METHODS and not name.startswith("__"):
            record.__dict__[name] = value
    return record


@st.composite
def mutated(draw: st.DrawFn, payload: bytes) -> bytes:
    """``payload`` with a few bytes overwritten, inserted, deleted, or cut short."""
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["set", "insert", "delete", "cut", "splice"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "cut":
            del data[at:]
        elif op == "splice":
            data[at:at] = bytes(data[draw(st.integers(0, max(0, len(data) - 1))) :][:32])
    return bytes(data)


def check_safe(payload: bytes, topic: bytes | None = None) -> None:
    """Decode ``payload`` (under ``topic``): MalformedRecord, or a record every handler can use safely."""
    try:
        decoded = fabric.decode(payload, LIMITS, topic)
    except fabric.MalformedRecord:
        return
    record = decoded.record
    if topic is not None:
        assert topic == make_topic(record.levelno, record.name, record.__dict__["service"])
    assert isinstance(record, logging.LogRecord)
    assert type(record.levelno) is int and isinstance(record.levelname, str)
    assert isinstance(record.name, str) and isinstance(record.msg, str)
    assert record.args == () and record.exc_info is None
    assert record.getMessage() == record.msg
    assert isinstance(record.created, float) and isinstance(record.lineno, int)
    assert isinstance(decoded.producer_id, int) and isinstance(decoded.seq, int) and decoded.truncated >= 0
    assert len(record.msg) <= LIMITS.message + MARKER
    assert record.exc_text is None or len(record.exc_text) <= LIMITS.traceback + MARKER
    for name in ("name", "levelname", "pathname", "filename", "module", "funcName", "threadName", "service"):
        value = record.__dict__[name]
        assert value is None or (isinstance(value, str) and len(value) <= LIMITS.field + MARKER), name
    shadowed = [k for k in record.__dict__ if k in _METHODS]
    assert not shadowed, f"attributes shadow LogRecord methods: {shadowed}"
    extras = set(record.__dict__) - set(logging.makeLogRecord({}).__dict__)
    assert len(extras - {"service", "host", "producer_id", "seq", "exceptions", "taskName"}) <= LIMITS.extras
    FORMAT.format(record)


@given(st.binary(max_size=2000))
@SETTINGS
def test_arbitrary_bytes(payload: bytes) -> None:
    """Arbitrary bytes never raise anything but MalformedRecord."""
    check_safe(payload)


@given(st.binary(max_size=2000), st.binary(max_size=60))
@SETTINGS
def test_arbitrary_bytes_under_arbitrary_topics(payload: bytes, topic: bytes) -> None:
    """Arbitrary payloads under arbitrary topics never raise anything but MalformedRecord."""
    check_safe(payload, topic)


@given(st.sampled_from([b"\x01", b"{"]), st.binary(max_size=2000))
@SETTINGS
def test_arbitrary_bytes_behind_each_codec_tag(tag: bytes, body: bytes) -> None:
    """Garbage behind a valid codec tag never raises anything but MalformedRecord."""
    check_safe(tag + body)


@given(record=records(), codec=st.sampled_from(["protobuf", "json"]), data=st.data())
@SETTINGS
def test_mutated_payloads_of_generated_records(record: logging.LogRecord, codec: str, data: Any) -> None:
    """A generated record's payload, valid as sent, then mutated: safe whatever the mutation."""
    payload = fabric.encode(record, IDENTITY, 7, codec)  # type: ignore[arg-type]
    check_safe(payload)  # unmutated, it decodes (possibly capped)
    fabric.decode(payload, LIMITS)
    check_safe(data.draw(mutated(payload)))


@given(record=records(), codec=st.sampled_from(["protobuf", "json"]), data=st.data())
@SETTINGS
def test_only_the_records_own_topic_is_accepted(record: logging.LogRecord, codec: str, data: Any) -> None:
    """A generated record decodes under the topic its producer made, and under no other bytes."""
    payload = fabric.encode(record, IDENTITY, 7, codec)  # type: ignore[arg-type]
    own = make_topic(record.levelno, record.name, IDENTITY.service)
    assert fabric.decode(payload, LIMITS, own).seq == 7
    other = data.draw(st.binary(max_size=60) | mutated(own))
    if other != own:
        try:
            fabric.decode(payload, LIMITS, other)
        except fabric.MalformedRecord as exc:
            assert "does not match the record" in str(exc)
        else:
            raise AssertionError(f"accepted under the topic {other!r}; its own is {own!r}")
    check_safe(data.draw(mutated(payload)), own)


_JSON_KEYS = [
    "time_unix_nano", "severity_text", "body", "name", "levelno", "lineno", "msecs", "relative_created",
    "thread", "process", "exc_text", "stack_info", "exceptions", "attributes", "producer", "v",
    "msg", "args", "levelname", "getMessage", "__dict__", "exc_info", "message",
]  # fmt: skip


@given(
    record=records(),
    changes=st.dictionaries(st.sampled_from(_JSON_KEYS) | text, values, min_size=1, max_size=4),
    producer=st.dictionaries(st.sampled_from(["service", "host", "pid", "producer_id", "seq"]) | text, values),
)
@SETTINGS
def test_json_documents_with_any_values(
    record: logging.LogRecord, changes: dict[str, Any], producer: dict[str, Any]
) -> None:
    """A JSON record with any values at any keys (forbidden ones included), producer fields too: safe."""
    doc = orjson.loads(fabric.encode(record, IDENTITY, 3, "json"))
    doc.update(changes)
    if isinstance(doc.get("producer"), dict):
        doc["producer"].update(producer)
    check_safe(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))
