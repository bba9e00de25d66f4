"""Unit tests for fabric.codec: encoding LogRecords and rehydrating them safely."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric._proto.logfabric.v1 import record_pb2 as pb
from fabric.codec import (
    CODECS,
    FABRIC_ATTRIBUTES,
    Decoded,
    Encoder,
    Limits,
    MalformedRecord,
    ProducerIdentity,
    decode,
    encode,
    severity_number,
)
from tests.helpers.capture import Capture

IDENTITY = ProducerIdentity(service="billing", host="web-1", pid=4242, producer_id=0x0123456789ABCDEF)

# Every attribute a plain LogRecord has (taskName only exists from Python 3.12).
STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"taskName"}
# Names a generated extra must not take: standard attributes, formatter
# artefacts, class attributes and methods, and the fabric's own attributes.
RESERVED = STANDARD | {"message", "asctime"} | frozenset(dir(logging.LogRecord)) | FABRIC_ATTRIBUTES

# A format that touches every standard attribute: a rehydrated record must survive it.
EVERYTHING = logging.Formatter(
    "%(asctime)s %(created)f %(msecs)03d %(relativeCreated)d %(name)s %(levelno)d %(levelname)s "
    "%(pathname)s %(filename)s %(module)s %(lineno)d %(funcName)s %(thread)s %(threadName)s "
    "%(process)s %(processName)s %(message)s"
)
FIDELITY = logging.Formatter(
    "%(asctime)s %(processName)s %(threadName)s %(name)s %(levelname)s %(message)s %(pathname)s %(lineno)d %(funcName)s"
)

codecs = pytest.mark.parametrize("codec", CODECS)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_record(**fields: Any) -> logging.LogRecord:
    """A LogRecord with sane defaults for the fields makeLogRecord leaves unset."""
    base: dict[str, Any] = {
        "name": "app.db",
        "levelno": logging.INFO,
        "levelname": "INFO",
        "msg": "hello",
        "created": 1_700_000_000.123456,
        "pathname": "/srv/app/db.py",
        "filename": "db.py",
        "module": "db",
        "lineno": 42,
        "funcName": "query",
        "msecs": 123.0,
        "relativeCreated": 4321.5,
    }
    base.update(fields)
    return logging.makeLogRecord(base)


def roundtrip(
    record: logging.LogRecord,
    codec: str,
    seq: int = 1,
    limits: Limits | None = None,
    identity: ProducerIdentity = IDENTITY,
) -> Decoded:
    """Encode ``record`` with ``codec`` and decode the payload."""
    return decode(Encoder(identity, codec).encode(record, seq), limits)  # type: ignore[arg-type]


def json_doc(**fields: Any) -> dict[str, Any]:
    """A valid JSON wire document for ``make_record(**fields)``, ready to be tampered with."""
    return orjson.loads(Encoder(IDENTITY, "json").encode(make_record(**fields), 1))


def pb_message(**fields: Any) -> pb.LogRecord:
    """A valid protobuf wire message for ``make_record(**fields)``, ready to be tampered with."""
    return pb.LogRecord.FromString(Encoder(IDENTITY, "protobuf").encode(make_record(**fields), 1)[1:])


def pb_payload(message: pb.LogRecord) -> bytes:
    return b"\x01" + message.SerializeToString()


def same_typed(a: object, b: object) -> bool:
    """True when ``a`` and ``b`` are equal and of the same type, recursively (1 != 1.0 != True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same_typed(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same_typed(a[k], b[k]) for k in a)
    return a == b


@pytest.fixture
def codec_logger() -> Iterator[tuple[logging.Logger, Capture]]:
    """A private logger at level 1 that keeps what it logs (state restored afterwards)."""
    logger = logging.getLogger("logfabric.tests.codec")
    keep = Capture()
    saved = logger.propagate, logger.level
    logger.propagate = False
    logger.setLevel(1)
    logger.addHandler(keep)
    yield logger, keep
    logger.removeHandler(keep)
    logger.propagate, logger.level = saved


@pytest.fixture
def custom_levels() -> Iterator[None]:
    """TRACE=5 and SUCCESS=25 registered with logging; the level tables restored afterwards."""
    to_name, to_level = dict(logging._levelToName), dict(logging._nameToLevel)
    logging.addLevelName(5, "TRACE")
    logging.addLevelName(25, "SUCCESS")
    yield
    logging._levelToName.clear()
    logging._levelToName.update(to_name)
    logging._nameToLevel.clear()
    logging._nameToLevel.update(to_level)


# --------------------------------------------------------------------------- strategies

_INT32 = st.integers(-(2**31), 2**31 - 1)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_FINITE = st.floats(allow_nan=False, allow_infinity=False)
# Lone surrogates are escaped by design (TestSurrogates), so round trips use valid text.
_CHAR = st.characters(exclude_categories=("Cs",))
_TEXT = st.text(_CHAR, max_size=40)
# Message text biased towards the characters that matter: '%' and line breaks.
_MESSAGE = st.text(alphabet=_CHAR | st.sampled_from("%%%\r\n{}"), max_size=120)
_OPTIONAL_TEXT = st.none() | st.text(_CHAR, max_size=30)
_KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(lambda k: k not in RESERVED)
_SCALARS = st.none() | st.booleans() | _INT64 | _FINITE | _TEXT
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def generated_records(draw: st.DrawFn) -> tuple[logging.LogRecord, dict[str, Any]]:
    """A LogRecord from generated fields, and the extras it carries."""
    raw = draw(_MESSAGE)
    arg = draw(st.none() | _TEXT)
    msg, args = (raw, ()) if arg is None else (raw.replace("%", "%%") + " [%s]", (arg,))
    extras = draw(st.dictionaries(_KEYS, _VALUES, max_size=5))
    fields = {
        "name": draw(_TEXT),
        "msg": msg,
        "args": args,
        "levelno": draw(_INT32 | st.sampled_from([0, 5, 10, 20, 25, 30, 40, 50])),
        "levelname": draw(_TEXT),
        "pathname": draw(_TEXT),
        "filename": draw(_TEXT),
        "module": draw(_TEXT),
        "lineno": draw(_INT32),
        "funcName": draw(_OPTIONAL_TEXT),
        "created": draw(st.floats(1e9, 4.1e9)),
        "msecs": draw(st.floats(0, 1000, exclude_max=True)),
        "relativeCreated": draw(_FINITE),
        "thread": draw(st.none() | st.integers(0, 2**64 - 1)),
        "threadName": draw(_OPTIONAL_TEXT),
        "process": draw(st.none() | st.integers(0, 2**31 - 1)),
        "processName": draw(_OPTIONAL_TEXT),
        "taskName": draw(_OPTIONAL_TEXT),
        "exc_text": draw(_OPTIONAL_TEXT),
        "stack_info": draw(_OPTIONAL_TEXT),
        **extras,
    }
    return logging.makeLogRecord(fields), extras


_IDENTITIES = st.builds(
    ProducerIdentity,
    service=_TEXT,
    host=_TEXT,
    pid=st.integers(0, 2**31 - 1),
    producer_id=st.integers(0, 2**64 - 1),
)


# --------------------------------------------------------------------------- tests


class TestWireShape:
    def test_protobuf_payload_starts_with_tag(self) -> None:
        """A protobuf payload is the tag byte 0x01 followed by a LogRecord message."""
        payload = Encoder(IDENTITY, "protobuf").encode(make_record(), 7)
        assert payload[0] == 0x01
        message = pb.LogRecord.FromString(payload[1:])
        assert (message.body, message.producer.seq, message.producer.service) == ("hello", 7, "billing")

    def test_json_payload_is_versioned_object(self) -> None:
        """A JSON payload is an object whose first key is "v": 1."""
        payload = Encoder(IDENTITY, "json").encode(make_record(), 7)
        assert payload.startswith(b'{"v":1,')
        doc = orjson.loads(payload)
        assert (doc["body"], doc["producer"]["seq"]) == ("hello", 7)

    def test_unknown_codec_rejected(self) -> None:
        """Encoder refuses a codec it does not know."""
        with pytest.raises(ValueError, match="unknown codec"):
            Encoder(IDENTITY, "xml")  # type: ignore[arg-type]

    @codecs
    def test_module_level_encode(self, codec: str) -> None:
        """encode() is a one-shot Encoder: its payload decodes to the same record."""
        payload = encode(make_record(msg="one-shot"), IDENTITY, 3, codec)  # type: ignore[arg-type]
        decoded = decode(payload)
        assert (decoded.record.msg, decoded.seq, decoded.producer_id) == ("one-shot", 3, IDENTITY.producer_id)

    @codecs
    def test_encoding_leaves_msg_and_args_alone(self, codec: str) -> None:
        """Encoding merges the message for the wire only: the producer's record keeps msg and args."""
        record = make_record(msg="%s and %d", args=("x", 5), color="red")
        Encoder(IDENTITY, codec).encode(record, 1)  # type: ignore[arg-type]
        assert (record.msg, record.args, record.color) == ("%s and %d", ("x", 5), "red")

    @codecs
    def test_decoder_detects_codec(self, codec: str) -> None:
        """decode() needs no codec argument: it tells the two apart by the first byte."""
        assert roundtrip(make_record(msg="auto"), codec).record.getMessage() == "auto"


class TestSeverityNumber:
    @pytest.mark.parametrize(
        ("levelno", "expected"),
        [(10, 5), (20, 9), (30, 13), (40, 17), (50, 21), (0, 0), (25, 11), (5, 3), (1000, 24), (-7, 0), (1, 1)],
    )
    def test_mapping(self, levelno: int, expected: int) -> None:
        """Python levels map onto OpenTelemetry SeverityNumber bands (custom levels inside their band)."""
        assert severity_number(levelno) == expected

    @pytest.mark.parametrize("levelno", [5, 20, 25, 1000])
    def test_wire_carries_severity(self, levelno: int) -> None:
        """Both codecs put severity_number(levelno) on the wire."""
        record = make_record(levelno=levelno)
        pb_record = pb.LogRecord.FromString(Encoder(IDENTITY, "protobuf").encode(record, 1)[1:])
        json_record = orjson.loads(Encoder(IDENTITY, "json").encode(record, 1))
        assert pb_record.severity_number == json_record["severity_number"] == severity_number(levelno)

    @given(st.integers(-(2**31), 2**31 - 1))
    @settings(max_examples=200, deadline=None)
    def test_range_and_monotonic(self, levelno: int) -> None:
        """Every level maps into 0..24, and a higher level never gets a lower severity."""
        assert 0 <= severity_number(levelno) <= 24
        assert severity_number(levelno) <= severity_number(levelno + 1)


class TestRoundTrip:
    @codecs
    @given(generated=generated_records(), identity=_IDENTITIES, seq=st.integers(1, 2**64 - 1))
    @FAST
    def test_every_field_survives(
        self, codec: str, generated: tuple[logging.LogRecord, dict[str, Any]], identity: ProducerIdentity, seq: int
    ) -> None:
        """decode(encode(r)) reproduces every field; empty optional text (funcName, threadName, ...) comes back None.

        None and "" are one value on the wire (proto3 has no presence for
        strings), so funcName, threadName, processName, taskName, exc_text and
        stack_info canonicalise "" to None; thread and process canonicalise 0
        to None the same way.
        """
        record, extras = generated
        expected_message = record.getMessage()
        decoded = roundtrip(record, codec, seq, identity=identity)
        out = decoded.record
        assert isinstance(out, logging.LogRecord)
        assert (decoded.producer_id, decoded.seq, decoded.truncated) == (identity.producer_id, seq, 0)
        # The message arrives merged, with no args left to interpolate.
        assert out.msg == expected_message
        assert out.args == ()
        assert out.getMessage() == expected_message
        for attr in ("name", "levelno", "levelname", "pathname", "filename", "module", "lineno"):
            assert getattr(out, attr) == getattr(record, attr), attr
        # Time is exact: created bit for bit, msecs and relativeCreated as floats.
        assert out.created.hex() == record.created.hex()
        assert out.msecs == record.msecs
        assert out.relativeCreated == record.relativeCreated
        for attr in ("funcName", "threadName", "processName", "taskName", "exc_text", "stack_info"):
            assert getattr(out, attr) == (getattr(record, attr) or None), attr
        assert out.thread == (record.thread or None)
        assert out.process == (record.process or None)
        assert out.exc_info is None
        # Fabric attributes.
        assert (out.service, out.host, out.seq) == (identity.service, identity.host, seq)
        assert out.producer_id == f"{identity.producer_id:016x}"
        assert len(out.producer_id) == 16
        assert out.exceptions is None
        # Extras: same names, same values, same types; nothing else appears.
        for key, value in extras.items():
            assert same_typed(out.__dict__[key], value), (key, out.__dict__[key], value)
        assert set(out.__dict__) == STANDARD | FABRIC_ATTRIBUTES | set(extras)

    @codecs
    @given(created=st.floats(1e9, 4.1e9))
    @settings(max_examples=300, deadline=None)
    def test_created_is_bit_exact(self, codec: str, created: float) -> None:
        """record.created survives the integer-nanosecond wire field bit for bit."""
        out = roundtrip(make_record(created=created), codec).record
        assert out.created.hex() == created.hex()

    @codecs
    def test_current_time_is_bit_exact(self, codec: str) -> None:
        """A record created now (time.time_ns-based on recent Pythons) keeps created, msecs, relativeCreated."""
        record = logging.LogRecord("app", logging.INFO, __file__, 1, "now", (), None)
        out = roundtrip(record, codec).record
        assert (out.created, out.msecs, out.relativeCreated) == (record.created, record.msecs, record.relativeCreated)

    @codecs
    def test_empty_strings_become_none(self, codec: str) -> None:
        """Empty funcName/threadName/processName and a zero thread/process arrive as None."""
        record = make_record(funcName="", threadName="", processName="", thread=0, process=0)
        out = roundtrip(record, codec).record
        assert (out.funcName, out.threadName, out.processName, out.thread, out.process) == (None,) * 5

    @codecs
    def test_formatter_artefacts_not_forwarded(self, codec: str) -> None:
        """message and asctime set by a producer-side Formatter do not travel as extras."""
        record = make_record(msg="formatted")
        FIDELITY.format(record)
        assert "asctime" in record.__dict__
        out = roundtrip(record, codec).record
        assert "message" not in out.__dict__
        assert "asctime" not in out.__dict__
        assert set(out.__dict__) == STANDARD | FABRIC_ATTRIBUTES


def _explicit_chain() -> None:
    try:
        raise KeyError("inner")
    except KeyError as exc:
        raise RuntimeError("outer") from exc


def _implicit_chain() -> None:
    try:
        raise KeyError("inner")
    except KeyError:
        raise RuntimeError("outer")  # noqa: B904 - the implicit chain is the point


def _suppressed_chain() -> None:
    try:
        raise KeyError("inner")
    except KeyError:
        raise RuntimeError("outer") from None


class TestFidelity:
    @codecs
    def test_formatted_text_identical(self, codec: str, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """A rehydrated record formats to exactly the producer's text, traceback and stack included."""
        logger, keep = codec_logger
        try:
            _explicit_chain()
        except RuntimeError:
            logger.error("payment %s failed: %d%%", "p-17", 3, exc_info=True, stack_info=True)
        (record,) = keep.records
        expected = FIDELITY.format(record)
        out = roundtrip(record, codec).record
        assert FIDELITY.format(out) == expected
        assert "RuntimeError: outer" in expected
        assert "Stack (most recent call last)" in expected
        assert out.funcName == "test_formatted_text_identical"

    @codecs
    def test_formatted_text_identical_without_prior_format(
        self, codec: str, codec_logger: tuple[logging.Logger, Capture]
    ) -> None:
        """Encoding a never-formatted record still yields the traceback text the producer's Formatter would."""
        logger, keep = codec_logger
        try:
            _explicit_chain()
        except RuntimeError:
            logger.exception("boom")
        (record,) = keep.records
        out = roundtrip(record, codec).record
        assert out.exc_text == logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
        assert FIDELITY.format(out) == FIDELITY.format(record)

    @codecs
    def test_explicit_chain(self, codec: str, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """`raise ... from ...` arrives as a chain: the raised exception, then its cause."""
        logger, keep = codec_logger
        try:
            _explicit_chain()
        except RuntimeError:
            logger.exception("boom")
        out = roundtrip(keep.records[0], codec).record
        assert out.exc_text and "KeyError: 'inner'" in out.exc_text
        assert out.exc_info is None
        assert out.exceptions == [
            {"type": "builtins.RuntimeError", "message": "outer", "relation": "raised"},
            {"type": "builtins.KeyError", "message": "'inner'", "relation": "cause"},
        ]

    @codecs
    def test_implicit_chain(self, codec: str, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """An exception raised while handling another links to it as "context"."""
        logger, keep = codec_logger
        try:
            _implicit_chain()
        except RuntimeError:
            logger.exception("boom")
        out = roundtrip(keep.records[0], codec).record
        assert [(e["type"], e["relation"]) for e in out.exceptions] == [
            ("builtins.RuntimeError", "raised"),
            ("builtins.KeyError", "context"),
        ]

    @codecs
    def test_suppressed_context(self, codec: str, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """`raise ... from None` hides the context, as the traceback does."""
        logger, keep = codec_logger
        try:
            _suppressed_chain()
        except RuntimeError:
            logger.exception("boom")
        out = roundtrip(keep.records[0], codec).record
        assert out.exceptions == [{"type": "builtins.RuntimeError", "message": "outer", "relation": "raised"}]

    @codecs
    def test_cyclic_chain_terminates(self, codec: str) -> None:
        """An exception chain that loops back on itself is cut, not followed forever."""
        a, b = ValueError("a"), ValueError("b")
        a.__cause__, b.__cause__ = b, a
        record = make_record(exc_info=(ValueError, a, None))
        out = roundtrip(record, codec).record
        assert [e["message"] for e in out.exceptions] == ["a", "b"]

    @codecs
    def test_broken_exception_str(self, codec: str) -> None:
        """An exception whose __str__ raises still travels, with a placeholder message."""

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        exc = Unprintable()
        record = make_record(exc_info=(Unprintable, exc, None), exc_text="Unprintable: <exception str() failed>")
        out = roundtrip(record, codec).record
        assert out.exceptions[0]["message"].startswith("<unprintable Unprintable")

    @codecs
    def test_record_without_exception(self, codec: str) -> None:
        """No exc_info means no exc_text and exceptions None."""
        out = roundtrip(make_record(), codec).record
        assert (out.exc_text, out.exceptions, out.stack_info) == (None, None, None)


class BraceMessage:
    """The logging cookbook's str.format-style message."""

    def __init__(self, fmt: str, /, *args: Any, **kwargs: Any) -> None:
        self.fmt, self.args, self.kwargs = fmt, args, kwargs

    def __str__(self) -> str:
        return self.fmt.format(*self.args, **self.kwargs)


class StructuredMessage:
    """The logging cookbook's structured (JSON-suffixed) message."""

    def __init__(self, message: str, /, **kwargs: Any) -> None:
        self.message, self.kwargs = message, kwargs

    def __str__(self) -> str:
        return f"{self.message} >>> {json.dumps(self.kwargs)}"


class TestMessages:
    @codecs
    def test_brace_message(self, codec: str, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """A str.format-based message object arrives as its rendered text."""
        logger, keep = codec_logger
        logger.info(BraceMessage("Message with {0} {name}", 2, name="placeholders"))
        out = roundtrip(keep.records[0], codec).record
        assert out.msg == out.getMessage() == "Message with 2 placeholders"

    @codecs
    def test_structured_message(self, codec: str, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """The cookbook's StructuredMessage arrives as its rendered text."""
        logger, keep = codec_logger
        logger.info(StructuredMessage("message 1", foo="bar", bar="baz", num=123))
        out = roundtrip(keep.records[0], codec).record
        assert out.getMessage() == 'message 1 >>> {"foo": "bar", "bar": "baz", "num": 123}'

    @codecs
    def test_percent_args_merged(self, codec: str, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """%-style args are merged before sending; mapping args too."""
        logger, keep = codec_logger
        logger.info("%s owes %.2f", "bob", 3.5)
        logger.info("%(user)s logged in", {"user": "ann"})
        first, second = (roundtrip(r, codec).record for r in keep.records)
        assert (first.getMessage(), first.args) == ("bob owes 3.50", ())
        assert (second.getMessage(), second.args) == ("ann logged in", ())

    @codecs
    def test_non_string_msg(self, codec: str) -> None:
        """A non-string msg (an int, a dict) arrives as its str()."""
        assert roundtrip(make_record(msg=404), codec).record.msg == "404"
        assert roundtrip(make_record(msg={"a": 1}), codec).record.msg == "{'a': 1}"

    @codecs
    def test_custom_levels(self, codec: str, custom_levels: None, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """Custom levels (TRACE=5, SUCCESS=25) keep their levelname and levelno."""
        logger, keep = codec_logger
        logger.log(5, "tracing")
        logger.log(25, "it worked")
        trace, success = (roundtrip(r, codec).record for r in keep.records)
        assert (trace.levelno, trace.levelname) == (5, "TRACE")
        assert (success.levelno, success.levelname) == (25, "SUCCESS")

    @codecs
    def test_unregistered_level(self, codec: str) -> None:
        """A level with no registered name keeps logging's "Level N" name."""
        record = logging.LogRecord("app", 33, __file__, 1, "odd", (), None)
        out = roundtrip(record, codec).record
        assert (out.levelno, out.levelname) == (33, "Level 33")

    @codecs
    def test_multiline_and_unicode(self, codec: str) -> None:
        """CR, LF, NUL and astral characters travel verbatim."""
        text = "line1\r\nline2\n\x00tab\there \U0001f600 ünïcødé %s %%"
        assert roundtrip(make_record(msg=text), codec).record.getMessage() == text


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque 7>"


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class TestExtras:
    @codecs
    def test_scalar_types_kept(self, codec: str) -> None:
        """str, bool, int, float and None extras keep their exact type (True is not 1, 1.0 is not 1)."""
        values = {"s": "text", "t": True, "f": False, "i": 7, "neg": -(2**63), "big": 2**63 - 1, "x": 1.0, "n": None}
        out = roundtrip(make_record(**values), codec).record
        for key, value in values.items():
            assert same_typed(out.__dict__[key], value), key

    @codecs
    def test_nested_containers(self, codec: str) -> None:
        """Nested dicts and lists round-trip with their element types; tuples arrive as lists."""
        nested = {"users": [{"id": 1, "tags": ["a", "b"], "score": 2.5, "ok": True, "none": None}], "empty": {}}
        out = roundtrip(make_record(ctx=nested, pair=(1, "two")), codec).record
        assert same_typed(out.ctx, nested)
        assert same_typed(out.pair, [1, "two"])

    @codecs
    def test_unserialisable_travels_as_repr(self, codec: str) -> None:
        """A non-JSON-able extra travels as its repr(), alone or inside a container."""
        out = roundtrip(make_record(obj=Opaque(), objs=[Opaque(), 1], s={3}), codec).record
        assert out.obj == "<Opaque 7>"
        assert out.objs == ["<Opaque 7>", 1]
        assert out.s == "{3}"

    @codecs
    def test_huge_int_travels_as_repr(self, codec: str) -> None:
        """An int beyond 64 bits travels as its decimal repr string."""
        out = roundtrip(make_record(huge=2**70, neg=-(2**70), inlist=[2**70]), codec).record
        assert (out.huge, out.neg) == (str(2**70), str(-(2**70)))
        assert out.inlist == f"[{2**70}]"

    @codecs
    def test_broken_repr_still_encodes(self, codec: str) -> None:
        """An extra whose __repr__ raises does not lose the record; it arrives as a placeholder."""
        out = roundtrip(make_record(msg="kept", bad=BadRepr()), codec).record
        assert out.msg == "kept"
        assert isinstance(out.bad, str)
        assert "BadRepr" in out.bad

    @codecs
    def test_non_str_dict_keys(self, codec: str) -> None:
        """Non-string keys inside a container extra arrive as strings."""
        assert roundtrip(make_record(d={1: "a", 2.5: "b"}), codec).record.d == {"1": "a", "2.5": "b"}

    @codecs
    def test_fabric_names_renamed(self, codec: str) -> None:
        """Extras named like fabric attributes arrive as extra_<name>; the fabric's own values win."""
        record = make_record(host="spoofed", service="fake", seq="s", producer_id="p", exceptions="e")
        out = roundtrip(record, codec).record
        assert (out.extra_host, out.extra_service, out.extra_seq) == ("spoofed", "fake", "s")
        assert (out.extra_producer_id, out.extra_exceptions) == ("p", "e")
        assert (out.host, out.service, out.seq) == ("web-1", "billing", 1)
        assert out.producer_id == "0123456789abcdef"
        assert out.exceptions is None

    @codecs
    def test_extras_through_logger(self, codec: str, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """extra= passed to a Logger call arrives as record attributes."""
        logger, keep = codec_logger
        logger.warning("login", extra={"user_id": 12, "ip": "10.0.0.1", "tags": ["a"]})
        out = roundtrip(keep.records[0], codec).record
        assert (out.user_id, out.ip, out.tags) == (12, "10.0.0.1", ["a"])


class TestSurrogates:
    """Lone surrogates (os.fsdecode of an undecodable file name) cannot be UTF-8 encoded."""

    PATH = os.fsdecode(b"/data/caf\xe9.csv")

    @codecs
    def test_message_with_surrogate_arrives_escaped(self, codec: str) -> None:
        """A message holding a lone surrogate is sent with it backslash-escaped instead of being lost."""
        record = make_record(msg="cannot read %s", args=(self.PATH,), path=self.PATH)
        out = roundtrip(record, codec).record
        assert out.getMessage() == "cannot read /data/caf\\udce9.csv"
        assert out.path == "/data/caf\\udce9.csv"
        assert (record.msg, record.args) == ("cannot read %s", (self.PATH,))

    @codecs
    def test_exception_with_surrogate(self, codec: str, codec_logger: tuple[logging.Logger, Capture]) -> None:
        """An exception message holding a lone surrogate travels escaped, traceback and chain included."""
        logger, keep = codec_logger
        try:
            raise ValueError(f"bad file {self.PATH}")
        except ValueError:
            logger.exception("import failed")
        out = roundtrip(keep.records[0], codec).record
        assert out.exceptions[0]["message"] == "bad file /data/caf\\udce9.csv"
        assert out.exc_text is not None
        assert "bad file /data/caf\\udce9.csv" in out.exc_text


def _json_payload(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def _with(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc.update(changes)
    return doc


def _without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        del doc[key]
    return doc


def _producer(**changes: Any) -> dict[str, Any]:
    doc = json_doc()
    doc["producer"].update(changes)
    return doc


def _producer_without(key: str) -> dict[str, Any]:
    doc = json_doc()
    del doc["producer"][key]
    return doc


def _nested_json(depth: int) -> bytes:
    head = orjson.dumps(json_doc())[:-1]
    return head + b',"attributes":{"deep":' + b"[" * depth + b"]" * depth + b"}}"


def _truncated_protobuf() -> bytes:
    payload = Encoder(IDENTITY, "protobuf").encode(make_record(msg="x" * 200), 1)
    return payload[: payload.index(b"x" * 200) + 100]  # cut in the middle of the body


def _pb_extra(key: str, **value: Any) -> bytes:
    message = pb_message()
    message.attributes[key].CopyFrom(pb.AnyValue(**value))
    return pb_payload(message)


def _pb_with(**fields: Any) -> bytes:
    message = pb_message()
    for name, value in fields.items():
        setattr(message, name, value)
    return pb_payload(message)


POISON: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "unknown tag 0x02": lambda: b"\x02" + pb_message().SerializeToString(),
    "unknown tag 0x00": lambda: b"\x00",
    "json array": lambda: b"[1, 2]",
    "plain text": lambda: b"hello world",
    "truncated protobuf": _truncated_protobuf,
    "protobuf garbage": lambda: b"\x01\xff\xff\xff\xff",
    "protobuf invalid utf-8 body": lambda: b"\x01\x22\x02\xff\xfe",
    "protobuf extra getMessage": lambda: _pb_extra("getMessage", string_value="x"),
    "protobuf extra args": lambda: _pb_extra("args", json_value="[1]"),
    "protobuf extra __dict__": lambda: _pb_extra("__dict__", json_value="{}"),
    "protobuf extra msg": lambda: _pb_extra("msg", string_value="spoof"),
    "protobuf extra empty name": lambda: _pb_extra("", int_value=1),
    "protobuf extra long name": lambda: _pb_extra("k" * 257, int_value=1),
    "protobuf extra bad json": lambda: _pb_extra("ctx", json_value="{nope"),
    "protobuf msecs nan": lambda: _pb_with(msecs=math.nan),
    "protobuf relative_created inf": lambda: _pb_with(relative_created=math.inf),
    "json invalid": lambda: b'{"v": 1, ',
    "json wrong version": lambda: _json_payload(_with(json_doc(), v=2)),
    "json version missing": lambda: _json_payload(_without(json_doc(), "v")),
    "json version string": lambda: _json_payload(_with(json_doc(), v="1")),
    "json version true": lambda: _json_payload(_with(json_doc(), v=True)),
    "json version float": lambda: _json_payload(_with(json_doc(), v=1.0)),
    "json levelno string": lambda: _json_payload(_with(json_doc(), levelno="50")),
    "json levelno true": lambda: _json_payload(_with(json_doc(), levelno=True)),
    "json levelno float": lambda: _json_payload(_with(json_doc(), levelno=50.0)),
    "json levelno null": lambda: _json_payload(_with(json_doc(), levelno=None)),
    "json levelno beyond int32": lambda: _json_payload(_with(json_doc(), levelno=2**40)),
    "json body missing": lambda: _json_payload(_without(json_doc(), "body")),
    "json body number": lambda: _json_payload(_with(json_doc(), body=5)),
    "json name list": lambda: _json_payload(_with(json_doc(), name=["a"])),
    "json time negative": lambda: _json_payload(_with(json_doc(), time_unix_nano=-1)),
    "json time float": lambda: _json_payload(_with(json_doc(), time_unix_nano=1.5e18)),
    "json msecs string": lambda: _json_payload(_with(json_doc(), msecs="5")),
    "json extra getMessage": lambda: _json_payload(_with(json_doc(), attributes={"getMessage": "x"})),
    "json extra __class__": lambda: _json_payload(_with(json_doc(), attributes={"__class__": "x"})),
    "json extra levelno": lambda: _json_payload(_with(json_doc(), attributes={"levelno": 99})),
    "json extra empty name": lambda: _json_payload(_with(json_doc(), attributes={"": 1})),
    "json top-level args": lambda: _json_payload(_with(json_doc(), args=["x"])),
    "json top-level msg": lambda: _json_payload(_with(json_doc(), msg="spoof")),
    "json top-level getMessage": lambda: _json_payload(_with(json_doc(), getMessage="x")),
    "json top-level __dict__": lambda: _json_payload(_with(json_doc(), __dict__={})),
    "json attributes list": lambda: _json_payload(_with(json_doc(), attributes=["a", 1])),
    "json attributes empty list": lambda: _json_payload(_with(json_doc(), attributes=[])),
    "json attributes string": lambda: _json_payload(_with(json_doc(), attributes="a=1")),
    "json attributes zero": lambda: _json_payload(_with(json_doc(), attributes=0)),
    "json deeply nested attribute": lambda: _nested_json(100_000),
    "json deeply nested body": lambda: b'{"v":1,"body":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "json producer missing": lambda: _json_payload(_without(json_doc(), "producer")),
    "json producer list": lambda: _json_payload(_with(json_doc(), producer=[1])),
    "json producer_id missing": lambda: _json_payload(_producer_without("producer_id")),
    "json producer_id string": lambda: _json_payload(_producer(producer_id="abc")),
    "json producer_id negative": lambda: _json_payload(_producer(producer_id=-1)),
    "json seq missing": lambda: _json_payload(_producer_without("seq")),
    "json seq null": lambda: _json_payload(_producer(seq=None)),
    "json exceptions object": lambda: _json_payload(_with(json_doc(), exceptions={"type": "x"})),
    "json exception not object": lambda: _json_payload(_with(json_doc(), exceptions=["boom"])),
    "json exception bad relation": lambda: _json_payload(
        _with(json_doc(), exceptions=[{"type": "E", "message": "m", "relation": "friend"}])
    ),
    "json exception message number": lambda: _json_payload(
        _with(json_doc(), exceptions=[{"type": "E", "message": 1, "relation": "raised"}])
    ),
}


class TestPoison:
    @pytest.mark.parametrize("make_payload", POISON.values(), ids=POISON.keys())
    def test_rejected(self, make_payload: Callable[[], bytes]) -> None:
        """Each malformed or unsafe payload raises MalformedRecord, and nothing else escapes."""
        payload = make_payload()
        with pytest.raises(MalformedRecord):
            decode(payload)

    def test_malformed_is_value_error(self) -> None:
        """MalformedRecord is a ValueError, so generic handlers catch it."""
        assert issubclass(MalformedRecord, ValueError)

    def test_valid_baselines_decode(self) -> None:
        """The untampered documents the poison cases start from are accepted (so each case tests its change)."""
        assert decode(_json_payload(json_doc())).record.msg == "hello"
        assert decode(pb_payload(pb_message())).record.msg == "hello"
        assert decode(_json_payload(_with(json_doc(), attributes={"ok": 1}))).record.ok == 1
        assert decode(_json_payload(_with(json_doc(), attributes=None))).record.msg == "hello"
        assert decode(_json_payload(_with(json_doc(), unknown_future_field=1))).record.msg == "hello"

    def test_json_empty_values_of_required_fields_accepted(self) -> None:
        """JSON accepts an empty body and name, level 0 and producer_id 0, as protobuf does."""
        doc = _with(json_doc(), body="", name="", levelno=0, severity_text="")
        doc["producer"].update(producer_id=0, seq=1)
        decoded = decode(_json_payload(doc))
        assert (decoded.record.msg, decoded.record.name, decoded.record.levelno) == ("", "", 0)
        assert (decoded.producer_id, decoded.seq) == (0, 1)
        message = pb_message(msg="", name="", levelno=0, levelname="")
        message.producer.seq = 1
        decoded = decode(pb_payload(message))
        assert (decoded.record.msg, decoded.record.name, decoded.record.levelno) == ("", "", 0)

    def test_seq_zero_is_rejected_by_both_codecs(self) -> None:
        """Producers count from 1, so seq 0 (a frame cut before its producer field) is malformed."""
        doc = json_doc()
        doc["producer"]["seq"] = 0
        with pytest.raises(MalformedRecord, match="seq"):
            decode(_json_payload(doc))
        message = pb_message()
        message.producer.seq = 0
        with pytest.raises(MalformedRecord, match="seq"):
            decode(pb_payload(message))
        with pytest.raises(MalformedRecord):
            decode(b"\x01")

    def test_json_empty_optional_fields_become_none(self) -> None:
        """JSON "" and 0 in optional fields decode as None, like protobuf, but still must have the right type."""
        doc = _with(json_doc(), func_name="", thread_name="", thread=0, process=0, exc_text="", stack_info="")
        out = decode(_json_payload(doc)).record
        assert (out.funcName, out.threadName, out.thread, out.process, out.exc_text, out.stack_info) == (None,) * 6
        with pytest.raises(MalformedRecord):
            decode(_json_payload(_with(json_doc(), thread=[])))
        with pytest.raises(MalformedRecord):
            decode(_json_payload(_with(json_doc(), func_name=0)))

    def test_forbidden_extra_beyond_cap_still_rejects(self) -> None:
        """A shadowing extra is rejected even when the extras cap would have dropped it."""
        payload = _json_payload(_with(json_doc(), attributes={"a": 1, "b": 2, "getMessage": 3}))
        with pytest.raises(MalformedRecord):
            decode(payload, Limits(extras=1))

    def test_protobuf_prefixes_never_pass_as_the_record(self) -> None:
        """Every proper prefix of a protobuf payload is rejected or decodes without the real seq.

        proto3 cannot tell a frame cut at a field boundary from a shorter
        record, but producer.seq is serialised last, so a cut frame never
        carries the original's sequence number.
        """
        payload = Encoder(IDENTITY, "protobuf").encode(make_record(msg="m" * 50, extra_field=[1, 2]), 9)
        for cut in range(1, len(payload)):
            try:
                decoded = decode(payload[:cut])
            except MalformedRecord:
                continue
            assert decoded.seq != 9, cut

    @given(st.binary(max_size=300))
    @settings(max_examples=500, deadline=None)
    def test_random_bytes(self, payload: bytes) -> None:
        """Arbitrary bytes either decode or raise MalformedRecord; nothing else escapes."""
        try:
            decoded = decode(payload)
        except MalformedRecord:
            return
        EVERYTHING.format(decoded.record)

    @given(body=st.binary(max_size=300), tag=st.sampled_from([b"\x01", b"{"]))
    @settings(max_examples=500, deadline=None)
    def test_random_bytes_behind_valid_tag(self, body: bytes, tag: bytes) -> None:
        """Garbage behind a valid codec tag raises only MalformedRecord; what decodes formats cleanly."""
        try:
            decoded = decode(tag + body)
        except MalformedRecord:
            return
        EVERYTHING.format(decoded.record)

    _MUTATION_BASE = Encoder(IDENTITY, "protobuf").encode(
        make_record(ctx={"a": [1]}, n=5, exc_text="tb", stack_info="st"), 3
    )

    @given(data=st.data())
    @settings(max_examples=400, deadline=None)
    def test_mutated_protobuf(self, data: st.DataObject) -> None:
        """A valid protobuf payload with bytes overwritten raises MalformedRecord or decodes to a formattable record."""
        payload = bytearray(self._MUTATION_BASE)
        for _ in range(data.draw(st.integers(1, 4))):
            payload[data.draw(st.integers(1, len(payload) - 1))] = data.draw(st.integers(0, 255))
        try:
            decoded = decode(bytes(payload))
        except MalformedRecord:
            return
        EVERYTHING.format(decoded.record)

    _JSON_VALUES = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | _FINITE | _TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
        max_leaves=8,
    )

    @given(
        key=st.sampled_from([*json_doc(), "exceptions", "attributes", "args", "msg", "extra"]),
        value=_JSON_VALUES,
    )
    @settings(max_examples=400, deadline=None)
    def test_any_json_field_value(self, key: str, value: Any) -> None:
        """Any JSON value in any top-level field raises MalformedRecord or decodes to a formattable record."""
        doc = json_doc()
        doc[key] = value
        try:
            decoded = decode(orjson.dumps(doc))
        except MalformedRecord:
            return
        EVERYTHING.format(decoded.record)

    @given(key=st.sampled_from(["service", "host", "pid", "producer_id", "seq"]), value=_JSON_VALUES)
    @settings(max_examples=200, deadline=None)
    def test_any_json_producer_value(self, key: str, value: Any) -> None:
        """Any JSON value in any producer field raises MalformedRecord or decodes with sound producer fields."""
        doc = json_doc()
        doc["producer"][key] = value
        try:
            decoded = decode(orjson.dumps(doc))
        except MalformedRecord:
            return
        assert isinstance(decoded.producer_id, int)
        assert isinstance(decoded.seq, int)
        assert isinstance(decoded.record.service, str)
        assert isinstance(decoded.record.host, str)


class TestFormatBomb:
    BOMB = "%100000000s%(x)s%s"

    def _payloads(self) -> list[bytes]:
        json_bomb = _json_payload(_with(json_doc(), body=self.BOMB))
        pb_bomb = pb_message()
        pb_bomb.body = self.BOMB
        return [json_bomb, pb_payload(pb_bomb)]

    @pytest.mark.parametrize("which", ["json", "protobuf"])
    def test_bomb_is_literal(self, which: str) -> None:
        """A remote message full of % directives is never interpolated: getMessage() returns it verbatim, fast."""
        payload = self._payloads()[0 if which == "json" else 1]
        started = time.perf_counter()
        record = decode(payload).record
        message = record.getMessage()
        formatted = logging.Formatter("%(levelname)s %(message)s").format(record)
        elapsed = time.perf_counter() - started
        assert record.args == ()
        assert message == self.BOMB
        assert formatted == "INFO " + self.BOMB
        assert elapsed < 0.5


class TestLimits:
    @codecs
    def test_message_truncated_with_marker(self, codec: str) -> None:
        """A message over Limits.message is cut to the cap plus a visible marker, and counted."""
        body = "".join(str(i % 10) for i in range(10_000))
        decoded = roundtrip(make_record(msg=body), codec, limits=Limits(message=100))
        msg = decoded.record.getMessage()
        assert msg.startswith(body[:100])
        assert body[:101] not in msg
        assert "truncated" in msg
        assert "9900" in msg  # how much was cut
        assert len(msg) < 200
        assert decoded.truncated == 1

    @codecs
    def test_extras_capped(self, codec: str) -> None:
        """Limits.extras keeps that many extras and counts the rest as truncated."""
        extras = {f"k{i}": i for i in range(5)}
        decoded = roundtrip(make_record(**extras), codec, limits=Limits(extras=2))
        kept = {k: v for k, v in decoded.record.__dict__.items() if k in extras}
        assert len(kept) == 2
        assert all(extras[k] == v for k, v in kept.items())
        assert decoded.truncated == 3

    @codecs
    def test_field_cap(self, codec: str) -> None:
        """Names and other short fields are capped by Limits.field."""
        decoded = roundtrip(make_record(name="n" * 100, funcName="f" * 100), codec, limits=Limits(field=20))
        assert decoded.record.name.startswith("n" * 20)
        assert "truncated" in decoded.record.name
        assert "truncated" in decoded.record.funcName
        assert decoded.truncated == 2

    @codecs
    def test_identity_capped(self, codec: str) -> None:
        """A producer's service and host are capped by Limits.field too."""
        identity = ProducerIdentity("s" * 50, "h" * 50, 1, 2)
        decoded = roundtrip(make_record(), codec, limits=Limits(field=20), identity=identity)
        assert "truncated" in decoded.record.service
        assert "truncated" in decoded.record.host
        assert decoded.truncated == 2

    @codecs
    def test_traceback_cap(self, codec: str) -> None:
        """exc_text and stack_info are capped by Limits.traceback each."""
        record = make_record(exc_text="E" * 1000, stack_info="S" * 1000)
        decoded = roundtrip(record, codec, limits=Limits(traceback=50))
        assert decoded.record.exc_text.startswith("E" * 50)
        assert "truncated" in decoded.record.exc_text
        assert "truncated" in decoded.record.stack_info
        assert decoded.truncated == 2

    @codecs
    def test_extra_value_cap(self, codec: str) -> None:
        """A long string extra is capped by Limits.extra_value; short ones and numbers are untouched."""
        record = make_record(long="L" * 500, short="ok", num=10**12)
        decoded = roundtrip(record, codec, limits=Limits(extra_value=20))
        out = decoded.record
        assert out.long.startswith("L" * 20)
        assert "truncated" in out.long
        assert (out.short, out.num) == ("ok", 10**12)
        assert decoded.truncated == 1

    @codecs
    def test_exception_chain_capped(self, codec: str) -> None:
        """Exception messages in the chain are capped by Limits.field."""
        exc = ValueError("x" * 500)
        record = make_record(exc_info=(ValueError, exc, None))
        decoded = roundtrip(record, codec, limits=Limits(field=40))
        assert "truncated" in decoded.record.exceptions[0]["message"]
        assert decoded.truncated == 1

    @codecs
    def test_within_limits_untouched(self, codec: str) -> None:
        """A record within every cap is not truncated and counts zero."""
        record = make_record(msg="m" * 100, ctx="c" * 100)
        decoded = roundtrip(record, codec, limits=Limits(message=100, extra_value=100))
        assert (decoded.record.msg, decoded.record.ctx, decoded.truncated) == ("m" * 100, "c" * 100, 0)

    @codecs
    def test_default_limits_allow_large_messages(self, codec: str) -> None:
        """The default caps keep a 100 kB message whole."""
        body = "x" * 100_000
        decoded = roundtrip(make_record(msg=body), codec)
        assert (decoded.record.msg, decoded.truncated) == (body, 0)

    def test_smallest(self) -> None:
        """Limits.smallest is the smallest text cap."""
        assert Limits(message=10, traceback=20, field=30, extra_value=40).smallest == 10
        assert Limits(extra_value=5).smallest == 5


class TestWrongTypes:
    """Standard attributes of the wrong type (set by a filter, or extra={"taskName": ...} on 3.11)."""

    @codecs
    @pytest.mark.parametrize(
        ("attr", "value", "expected"),
        [
            ("taskName", ["x"], "['x']"),
            ("taskName", 7, "7"),
            ("funcName", 5, "5"),
            ("lineno", "12", 12),
            ("lineno", "twelve", 0),
            ("created", "x", 0.0),
            ("thread", "t", None),
        ],
    )
    def test_record_is_sent_with_the_attribute_coerced(self, codec: str, attr: str, value: Any, expected: Any) -> None:
        """The record is not lost: the attribute arrives converted to its wire type, the message intact."""
        record = logging.LogRecord("app", logging.INFO, "/src/app.py", 3, "hello %s", ("world",), None)
        record.__dict__[attr] = value
        out = roundtrip(record, codec).record
        assert getattr(out, attr) == expected
        assert out.getMessage() == "hello world"
        assert record.__dict__[attr] == value  # the caller's record is left alone

    @codecs
    def test_good_records_after_a_bad_one_keep_their_own_values(self, codec: str) -> None:
        """A coerced record does not leak its values into the encoder's cache for later records."""
        encoder = Encoder(IDENTITY, codec)  # type: ignore[arg-type]
        bad = logging.LogRecord("app", logging.INFO, "/src/app.py", 3, "bad", (), None)
        bad.__dict__["taskName"] = ["x"]
        good = logging.LogRecord("app", logging.INFO, "/src/app.py", 3, "good", (), None)
        good.__dict__["taskName"] = "Task-1"
        decode(encoder.encode(bad, 1))
        out = decode(encoder.encode(good, 2)).record
        assert out.taskName == "Task-1" and out.getMessage() == "good"

    @codecs
    def test_message_whose_args_do_not_fit_still_raises(self, codec: str) -> None:
        """Coercion does not hide a real formatting error: the handler's handleError sees it."""
        record = logging.LogRecord("app", logging.INFO, "/src/app.py", 3, "%d", ("x",), None)
        with pytest.raises(TypeError):
            Encoder(IDENTITY, codec).encode(record, 1)  # type: ignore[arg-type]
