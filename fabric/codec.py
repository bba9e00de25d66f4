"""Encode LogRecords for the wire and rehydrate them safely on the other side.

Two codecs share one field vocabulary (``proto/logfabric/v1/record.proto``):

* ``protobuf`` (the default): the payload is the tag byte ``0x01`` followed by a
  serialised ``logfabric.v1.LogRecord``;
* ``json``: the payload is an orjson object whose first key is ``"v": 1``.

:func:`decode` tells them apart by the first byte, so a listener never needs to
be told which codec a producer uses. Decoding never trusts the payload: fields
are allow-listed and type-checked, sizes are capped, and an extra that would
shadow a ``LogRecord`` attribute rejects the whole frame with
:class:`MalformedRecord`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import posixpath
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson

from fabric import _structured
from fabric._proto.logfabric.v1 import record_pb2 as _pb
from fabric.topic import make_topic

__all__ = [
    "CODECS",
    "FABRIC_ATTRIBUTES",
    "Codec",
    "Decoded",
    "Encoder",
    "Limits",
    "MalformedRecord",
    "ProducerIdentity",
    "decode",
    "encode",
    "severity_number",
]

Codec = Literal["protobuf", "json"]
CODECS: tuple[Codec, ...] = ("protobuf", "json")

PROTOBUF_V1 = 0x01
JSON_VERSION = 1
_PB_TAG = b"\x01"

#: Attributes the fabric adds to every rehydrated record.
FABRIC_ATTRIBUTES = frozenset({"service", "host", "producer_id", "seq", "exceptions"})

# Attributes every LogRecord has (or gains from a Formatter): never sent as
# extras, never accepted as extras.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Names an incoming extra may not take: the standard attributes plus every
# attribute and method of the class (getMessage, __dict__, __class__, ...).
_FORBIDDEN = _STANDARD | frozenset(dir(logging.LogRecord))
_BASE_LEN = len(logging.makeLogRecord({}).__dict__)

_RELATIONS = ("raised", "cause", "context")
_MAX_CHAIN = 16
_INT64 = (-(2**63), 2**63 - 1)


class MalformedRecord(ValueError):
    """A payload that is not a well-formed, safe logfabric record."""


@dataclass(frozen=True)
class Limits:
    """Caps applied when rehydrating untrusted records.

    Text over a cap is truncated with a visible marker, never silently.
    """

    message: int = 128 * 1024
    """Characters kept of the message body."""
    traceback: int = 128 * 1024
    """Characters kept of ``exc_text`` and of ``stack_info`` each."""
    field: int = 4096
    """Characters kept of every other text field (names, paths, ...)."""
    extras: int = 64
    """Number of extras kept; the rest are dropped (and counted)."""
    extra_value: int = 16 * 1024
    """Characters kept of one extra's text value."""

    _smallest: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_smallest", min(self.message, self.traceback, self.field, self.extra_value))

    @property
    def smallest(self) -> int:
        """The smallest cap: a payload no longer than this needs no capping."""
        return self._smallest


@dataclass(frozen=True)
class ProducerIdentity:
    """Who sends: constant for one handler in one process."""

    service: str
    host: str
    pid: int
    producer_id: int


def severity_number(levelno: int) -> int:
    """Map a Python level to an OpenTelemetry ``SeverityNumber`` (1-24, 0 unset).

    DEBUG, INFO, WARNING, ERROR and CRITICAL map to 5, 9, 13, 17 and 21; a
    custom level lands inside its band (TRACE=5 gives 3, SUCCESS=25 gives 11).
    """
    if levelno <= 0:
        return 0
    band, rest = divmod(levelno, 10)
    return min(band * 4 + 1 + rest * 4 // 10, 24)


_SEVERITY = [severity_number(n) for n in range(100)]


def _time_ns(created: float) -> int:
    # Exact split keeps ``created`` bit-for-bit through ns and back.
    whole = int(created)
    return whole * 1_000_000_000 + round((created - whole) * 1e9)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception as exc:  # a broken __str__ must not lose the record
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def _scrub(text: str) -> str:
    # A lone surrogate (an undecodable file name, say) cannot travel as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"


def _exception_chain(exc: BaseException | None) -> list[tuple[str, str, int]]:
    chain: list[tuple[str, str, int]] = []
    seen: set[int] = set()
    relation = 0
    while exc is not None and id(exc) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(exc))
        kind = type(exc)
        chain.append((f"{kind.__module__}.{kind.__qualname__}", _scrub(_safe_str(exc)), relation))
        if exc.__cause__ is not None:
            exc, relation = exc.__cause__, 1
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, relation = exc.__context__, 2
        else:
            break
    return chain


def _extras(record: logging.LogRecord) -> dict[str, Any] | None:
    attrs = record.__dict__
    if len(attrs) == _BASE_LEN:  # LogRecord.__init__ set exactly the standard keys
        return None
    extras = {k: v for k, v in attrs.items() if k not in _STANDARD}
    return extras or None


def _json_default(value: object) -> str:
    return _safe_repr(value)


def _to_json(value: object) -> str | None:
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        return None


def _exc_text(record: logging.LogRecord, formatter: logging.Formatter) -> str | None:
    text = record.exc_text
    if record.exc_info and (not text or text.isspace()):
        if text:  # a blank placeholder (loguru's "\n"): the real traceback travels, the record keeps it
            return formatter.formatException(record.exc_info) or None
        text = record.exc_text = formatter.formatException(record.exc_info)
    return text or None


_DEFAULT_FORMATTER = logging.Formatter()


class Encoder:
    """Serialise records for one producer: identity and codec fixed, seq per call.

    The message is merged with its args (``record.getMessage()``) so args never
    travel; ``exc_info`` becomes ``exc_text`` plus a structured exception chain.
    ``formatter`` (default: a plain :class:`logging.Formatter`) formats only the
    exception and stack text. Extras that are not JSON-able travel as ``repr()``.
    A service or host name holding a lone surrogate travels escaped, as every
    other text does.

    The sequence number is the payload's last field, so a payload is
    ``body(record) + tail(seq)``: a producer encodes first and numbers only what
    encoded, in the order it sends.
    """

    __slots__ = ("_encode", "_json_producer", "_static", "codec", "formatter", "identity", "tail")

    def __init__(
        self,
        identity: ProducerIdentity,
        codec: Codec = "protobuf",
        formatter: logging.Formatter | None = None,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
        identity = dataclasses.replace(identity, service=_scrub(identity.service), host=_scrub(identity.host))
        self.identity = identity
        self.codec = codec
        self.formatter = formatter or _DEFAULT_FORMATTER
        self._json_producer = _json_producer(identity)
        # Encoded fields that repeat from record to record, by _where(record).
        self._static: dict[tuple[Any, ...], bytes] = {}
        self._encode = _encode_protobuf if codec == "protobuf" else _encode_json
        self.tail: Callable[[int], bytes] = _pb_tail if codec == "protobuf" else _json_tail
        """``tail(seq)``: the bytes that end a payload numbered ``seq``."""

    def body(self, record: logging.LogRecord, lead: bytes = b"") -> bytes:
        """Return ``lead`` and the payload for ``record`` up to its sequence number (see :meth:`tail`).

        ``lead`` is what goes before the payload in a message (a producer's
        topic and NUL), joined here at no extra copy. Raises what formatting the
        message raises (a message whose args do not fit it, say); the producer
        counts that record as an error. A record whose message is not a string
        may carry a structlog event dict: see :mod:`fabric._structured`.
        """
        if type(record.msg) is not str:
            record = _structured.flatten(record, _FORBIDDEN, _safe_str)
        try:
            return self._encode(record, self, lead)
        except (UnicodeEncodeError, TypeError, ValueError, OverflowError):
            # Lone surrogates somewhere in the record, or a standard attribute
            # of the wrong type (a filter's doing, or extra={"taskName": ...}
            # before Python 3.12; orjson's errors are TypeErrors too): send a
            # copy with the text escaped and the types coerced, rather than
            # lose the record. A message whose args do not fit fails again.
            return self._encode(_scrubbed(_coerced(record), self.formatter), self, lead)

    def encode(self, record: logging.LogRecord, seq: int) -> bytes:
        """Return the payload for ``record`` as the producer's ``seq``-th record."""
        return self.body(record) + self.tail(seq)


_TEXT_ATTRS = ("name", "levelname", "pathname", "filename", "module", "funcName", "threadName", "processName")
_INT_ATTRS = ("levelno", "lineno", "thread", "process")
_FLOAT_ATTRS = ("created", "msecs", "relativeCreated")


def _as_int(value: object) -> int:
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    return number if _INT64[0] <= number <= _INT64[1] else 0


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0


def _coerced(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` whose standard attributes have the types the wire needs."""
    clone: logging.LogRecord = object.__new__(logging.LogRecord)
    attrs = dict(record.__dict__)
    for name in _TEXT_ATTRS:
        if not isinstance(attrs.get(name), str):
            attrs[name] = "" if attrs.get(name) is None else _safe_str(attrs[name])
    task = attrs.get("taskName")
    if task is not None and not isinstance(task, str):
        attrs["taskName"] = _safe_str(task)
    for name in _INT_ATTRS:
        value = attrs.get(name)
        if type(value) is not int and not (value is None and name in ("thread", "process")):
            attrs[name] = _as_int(value)
    for name in _FLOAT_ATTRS:
        if type(attrs.get(name)) is not float:
            attrs[name] = _as_float(attrs.get(name))
    clone.__dict__ = attrs
    return clone


def _scrubbed(record: logging.LogRecord, formatter: logging.Formatter) -> logging.LogRecord:
    exc_text = _exc_text(record, formatter)  # so that the traceback text is escaped too
    clone: logging.LogRecord = object.__new__(logging.LogRecord)
    clone.__dict__ = {_scrub(k): _scrub(v) if isinstance(v, str) else v for k, v in record.__dict__.items()}
    if exc_text:
        clone.exc_text = _scrub(exc_text)
    clone.msg, clone.args = _scrub(record.getMessage()), ()
    return clone


def encode(
    record: logging.LogRecord,
    identity: ProducerIdentity,
    seq: int,
    codec: Codec = "protobuf",
    formatter: logging.Formatter | None = None,
) -> bytes:
    """Serialise one record; see :class:`Encoder`, which a producer should keep."""
    return Encoder(identity, codec, formatter).encode(record, seq)


def _set_value(value_msg: Any, value: object) -> None:
    if isinstance(value, str):
        value_msg.string_value = value
    elif isinstance(value, bool):
        value_msg.bool_value = value
    elif isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        value_msg.int_value = value
    elif isinstance(value, float):
        value_msg.double_value = value
    else:
        text = _to_json(value)
        if text is None:
            value_msg.string_value = _safe_repr(value)
        else:
            value_msg.json_value = text


# The per-record fields are written by hand around a cached block of the others:
#
#   0x01 | time_unix_nano (1), msecs (13), relative_created (14) | body (4)
#        | STATIC: everything that repeats, one upb-serialised message, cached
#        | exceptions, stack, extras (only when the record has any)
#        | producer (23) {seq (5)}, last, so a cut frame never carries its seq
#
# A parser merges the pieces into one LogRecord; decode() reads them back fast
# when STATIC is one it has seen (see _decode_protobuf_fast).
_PB_HEAD = struct.Struct("<BBQBdBd")  # tag, then the three fixed-width fields with their keys
_PB_TIME, _PB_MSECS, _PB_RELATIVE = 0x09, 0x69, 0x71
_PB_BODY = b"\x22"  # body (4)
_PB_PRODUCER = b"\xba\x01"  # producer (23), whose only per-record field is seq (5)
_PB_SEQ = b"\x28"
_VARINT1 = [bytes((n,)) for n in range(128)]
_CACHE_LIMIT = 4096
# Standard level names a decoder fills in when severity_text is absent.
_LEVEL_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def _varint(n: int) -> bytes:
    if n < 128:
        return _VARINT1[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _where(record: logging.LogRecord) -> tuple[Any, ...]:
    """What the cached fields depend on: level, logger, call site, thread, process, task."""
    return (
        record.levelno,
        record.levelname,
        record.name,
        record.pathname,
        record.filename,
        record.module,
        record.lineno,
        record.funcName,
        record.thread,
        record.threadName,
        record.process,
        record.processName,
        record.__dict__.get("taskName"),  # Python 3.12+; getattr with a default is slower
    )


def _derived_names(pathname: str) -> tuple[str, str]:
    """``filename`` and ``module`` as ``LogRecord`` derives them from ``pathname`` (POSIX rules)."""
    filename = posixpath.basename(pathname)
    return filename, posixpath.splitext(filename)[0]


def _pb_static(record: logging.LogRecord, identity: ProducerIdentity) -> bytes:
    """Every field that repeats from record to record, as one serialised message.

    Left out, because the decoder derives them: ``filename`` and ``module``
    when they follow from ``pathname``, ``severity_text`` when it is the
    standard name of a standard level, and ``producer.pid`` (``process`` holds it).
    """
    m = _pb.LogRecord()
    p = m.producer
    p.service = identity.service
    p.host = identity.host
    p.producer_id = identity.producer_id
    levelno = record.levelno
    m.severity_number = _SEVERITY[levelno] if 0 <= levelno < 100 else severity_number(levelno)
    if record.levelname != _LEVEL_NAMES.get(levelno):
        m.severity_text = record.levelname
    m.name = record.name
    m.levelno = levelno
    m.pathname = record.pathname
    if (record.filename, record.module) != _derived_names(record.pathname):
        m.filename = record.filename
        m.module = record.module
    m.lineno = record.lineno
    if record.funcName:
        m.func_name = record.funcName
    if record.thread:
        m.thread = record.thread
    if record.threadName:
        m.thread_name = record.threadName
    if record.process:
        m.process = record.process
    if record.processName:
        m.process_name = record.processName
    task = getattr(record, "taskName", None)
    if task:
        m.task_name = task
    return m.SerializeToString()


def _pb_rare(record: logging.LogRecord, fmt: logging.Formatter, extras: dict[str, Any] | None) -> bytes:
    """Fields 5, 20, 21 and 22: exceptions, stack and extras, when a record has any."""
    m = _pb.LogRecord()
    exc_text = _exc_text(record, fmt)
    if exc_text:
        m.exc_text = exc_text
        if record.exc_info:
            for kind, message, relation in _exception_chain(record.exc_info[1]):
                e = m.exceptions.add()
                e.type = kind
                e.message = message
                e.relation = relation  # type: ignore[assignment]
    if record.stack_info:
        m.stack_info = fmt.formatStack(record.stack_info)
    if extras:
        attributes = m.attributes
        for key, value in extras.items():
            _set_value(attributes[key], value)
    return m.SerializeToString()


def _encode_protobuf(record: logging.LogRecord, enc: Encoder, lead: bytes) -> bytes:
    where = _where(record)
    static = enc._static.get(where)
    if static is None:
        if len(enc._static) >= _CACHE_LIMIT:
            enc._static.clear()
        static = enc._static[where] = _pb_static(_coerced(record), enc.identity)
    body = record.getMessage().encode()
    created = record.created
    whole = int(created)
    head = _PB_HEAD.pack(
        PROTOBUF_V1,
        _PB_TIME,
        whole * 1_000_000_000 + round((created - whole) * 1e9),
        _PB_MSECS,
        record.msecs,
        _PB_RELATIVE,
        record.relativeCreated,
    )
    extras = _extras(record)
    rare = (
        _pb_rare(record, enc.formatter, extras)
        if record.exc_info or record.exc_text or record.stack_info or extras
        else b""
    )
    return b"".join((lead, head, _PB_BODY, _varint(len(body)), body, static, rare))


def _pb_tail(seq: int) -> bytes:
    """producer (23) {seq (5)}: the protobuf payload's last field."""
    if seq < 128:
        return _PB_TAILS[seq]
    if seq < 16384:  # a two-byte varint, written at once
        return _PB_TAIL2 + bytes(((seq & 0x7F) | 0x80, seq >> 7))
    tail = _PB_SEQ + _varint(seq)
    return _PB_PRODUCER + _VARINT1[len(tail)] + tail


_PB_TAILS = [_PB_PRODUCER + b"\x02" + _PB_SEQ + _VARINT1[n] for n in range(128)]
_PB_TAIL2 = _PB_PRODUCER + b"\x03" + _PB_SEQ


def _json_extra(value: object) -> object:
    if isinstance(value, (str, bool, float)) or value is None:
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else _safe_repr(value)
    text = _to_json(value)
    return _safe_repr(value) if text is None else orjson.Fragment(text)


def _json_level(record: logging.LogRecord) -> bytes:
    return orjson.dumps(
        {
            "severity_number": severity_number(record.levelno),
            "severity_text": record.levelname,
            "name": record.name,
            "levelno": record.levelno,
        }
    )[1:-1]


def _json_site(record: logging.LogRecord) -> bytes:
    return orjson.dumps(
        {
            "pathname": record.pathname,
            "filename": record.filename,
            "module": record.module,
            "lineno": record.lineno,
            "func_name": record.funcName,
            "thread": record.thread,
            "thread_name": record.threadName,
            "process": record.process,
            "process_name": record.processName,
            "task_name": getattr(record, "taskName", None),
        }
    )[1:-1]


def _json_producer(identity: ProducerIdentity) -> bytes:
    # The producer object up to its seq, which each record completes.
    fixed = orjson.dumps(
        {"service": identity.service, "host": identity.host, "pid": identity.pid, "producer_id": identity.producer_id}
    )
    return b',"producer":' + fixed[:-1] + b',"seq":'


def _encode_json(record: logging.LogRecord, enc: Encoder, lead: bytes) -> bytes:
    # As for protobuf, the parts that repeat are encoded once and cached; the
    # object is assembled from them as text, "v" first, no key twice.
    where = _where(record)
    static = enc._static.get(where)
    if static is None:
        if len(enc._static) >= _CACHE_LIMIT:
            enc._static.clear()
        typed = _coerced(record)
        static = enc._static[where] = b"".join((_JSON_HEAD, _json_level(typed), b",", _json_site(typed), b","))
    fmt = enc.formatter
    exc_text = _exc_text(record, fmt)
    doc: dict[str, Any] = {
        "time_unix_nano": _time_ns(record.created),
        "body": record.getMessage(),
        "msecs": record.msecs,
        "relative_created": record.relativeCreated,
        "exc_text": exc_text,
        "stack_info": fmt.formatStack(record.stack_info) if record.stack_info else None,
    }
    if exc_text and record.exc_info:
        doc["exceptions"] = [
            {"type": kind, "message": message, "relation": _RELATIONS[relation]}
            for kind, message, relation in _exception_chain(record.exc_info[1])
        ]
    extras = _extras(record)
    if extras:
        doc["attributes"] = {str(k): _json_extra(v) for k, v in extras.items()}
    return b"".join((lead, static, orjson.dumps(doc)[1:-1], enc._json_producer))


# The JSON payload's end: the producer's seq, closing both objects. A bound
# method of bytes, so that numbering a record costs no Python call.
_json_tail = b"%d}}".__mod__


_JSON_HEAD = b'{"v":%d,' % JSON_VERSION


# --------------------------------------------------------------------------- decoding


class Decoded(NamedTuple):
    """A rehydrated record plus what the listener needs to track its producer."""

    record: logging.LogRecord
    producer_id: int
    seq: int
    truncated: int
    """How many fields or extras were cut to fit :class:`Limits`."""


# Text attributes of a rehydrated record that the caps apply to.
_CAPPED = (
    ("msg", "message"),
    ("exc_text", "traceback"),
    ("stack_info", "traceback"),
    ("name", "field"),
    ("levelname", "field"),
    ("pathname", "field"),
    ("filename", "field"),
    ("module", "field"),
    ("funcName", "field"),
    ("threadName", "field"),
    ("processName", "field"),
    ("taskName", "field"),
    ("service", "field"),
    ("host", "field"),
)


def _truncate(value: str, cap: int) -> str:
    return f"{value[:cap]}... [logfabric: truncated {len(value) - cap} chars]"


def _apply_caps(attrs: dict[str, Any], extras: dict[str, Any], lim: Limits) -> int:
    """Truncate oversized text in place; return how many cuts were made."""
    cuts = 0
    for key, which in _CAPPED:
        value = attrs[key]
        cap = getattr(lim, which)
        if value is not None and len(value) > cap:
            attrs[key] = _truncate(value, cap)
            cuts += 1
    for key, value in extras.items():
        if isinstance(value, str) and len(value) > lim.extra_value:
            extras[key] = _truncate(value, lim.extra_value)
            cuts += 1
    if attrs["exceptions"]:
        for e in attrs["exceptions"]:
            for k in ("type", "message"):
                if len(e[k]) > lim.field:
                    e[k] = _truncate(e[k], lim.field)
                    cuts += 1
    return cuts


def _check_extras(extras: dict[str, Any], lim: Limits) -> tuple[dict[str, Any], int]:
    """Reject shadowing names; rename fabric names; keep at most ``lim.extras``."""
    out: dict[str, Any] = {}
    dropped = 0
    for key, value in extras.items():
        if not isinstance(key, str) or not key or len(key) > 256:
            raise MalformedRecord(f"extra name must be a non-empty str of at most 256 chars, got {key!r:.80}")
        if key in _FORBIDDEN:
            raise MalformedRecord(f"extra {key!r} would shadow a LogRecord attribute")
        if len(out) >= lim.extras:
            dropped += 1
            continue
        out[f"extra_{key}" if key in FABRIC_ATTRIBUTES else key] = value
    return out, dropped


# Topics already checked -> the (levelno, name, service) that made them: a record
# with the same three needs no new topic built. Only entries made by a check
# that passed, only short topics, at most _TOPICS_LIMIT of them (about 2 MB).
_TOPICS: dict[bytes, tuple[int, str, str]] = {}
_TOPICS_LIMIT = 4096
_TOPICS_MAX_BYTES = 256


def _check_topic(topic: bytes | None, attrs: Mapping[str, Any], expected: bytes | None = None) -> None:
    """Reject a record whose topic is not the one its level, logger and service make."""
    if topic is None:
        return
    if expected is None:
        fields = (attrs["levelno"], attrs["name"], attrs["service"])
        if _TOPICS.get(topic) == fields:
            return
        expected = make_topic(*fields)
        if topic == expected and len(topic) <= _TOPICS_MAX_BYTES:
            if len(_TOPICS) >= _TOPICS_LIMIT:
                _TOPICS.clear()
            _TOPICS[topic] = fields
    if topic != expected:
        raise MalformedRecord(
            f"topic {topic[:60]!r} does not match the record: its level, logger and service "
            f"make the topic {expected[:60]!r}"
        )


def _finish(
    attrs: dict[str, Any],
    extras: dict[str, Any],
    size: int,
    lim: Limits,
    producer_id: int,
    seq: int,
    topic: bytes | None,
) -> Decoded:
    _check_topic(topic, attrs)  # before the caps: the topic was made from the names in full
    cuts = 0
    if extras:
        extras, cuts = _check_extras(extras, lim)
    if size > lim._smallest:  # only then can any one field exceed its cap
        cuts += _apply_caps(attrs, extras, lim)
    if extras:
        extras.update(attrs)
        attrs = extras
    record = _new_record(logging.LogRecord)
    record.__dict__ = attrs
    return Decoded(record, producer_id, seq, cuts)


_new_record = object.__new__


def _pb_value(v: Any) -> object:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "json_value":
        try:
            return orjson.loads(v.json_value)
        except orjson.JSONDecodeError as exc:
            raise MalformedRecord(f"extra holds invalid JSON: {exc}") from None
    return getattr(v, kind)


_PB_FROM = _pb.LogRecord.FromString


def _pb_attrs(m: Any) -> dict[str, Any]:
    """The record attributes of a parsed message (before caps and extras)."""
    p = m.producer
    pathname = m.pathname
    has = m.HasField
    derived = _derived_names(pathname)
    filename = m.filename if has("filename") else derived[0]
    module = m.module if has("module") else derived[1]
    levelno = m.levelno
    return {
        "name": m.name,
        "msg": m.body,
        "args": (),
        "levelname": m.severity_text if has("severity_text") else _LEVEL_NAMES.get(levelno, ""),
        "levelno": levelno,
        "pathname": pathname,
        "filename": filename,
        "module": module,
        "exc_info": None,
        "exc_text": m.exc_text or None,
        "stack_info": m.stack_info or None,
        "lineno": m.lineno,
        "funcName": m.func_name or None,
        "created": m.time_unix_nano / 1_000_000_000,
        "msecs": m.msecs,
        "relativeCreated": m.relative_created,
        "thread": m.thread or None,
        "threadName": m.thread_name or None,
        "processName": m.process_name or None,
        "process": m.process or None,
        "taskName": m.task_name or None,
        "service": p.service,
        "host": p.host,
        "producer_id": f"{p.producer_id:016x}",
        "seq": p.seq,
        "exceptions": [
            {
                "type": e.type,
                "message": e.message,
                "relation": _RELATIONS[e.relation] if 0 <= e.relation < 3 else "context",
            }
            for e in m.exceptions[:_MAX_CHAIN]
        ]
        if m.exceptions
        else None,
    }


def _decode_protobuf(payload: bytes, lim: Limits, topic: bytes | None = None) -> Decoded:
    try:
        m = _PB_FROM(payload[1:])
    except Exception as exc:  # google.protobuf.message.DecodeError and kin
        raise MalformedRecord(f"not a valid protobuf record: {exc}") from None
    if not (math.isfinite(m.msecs) and math.isfinite(m.relative_created)):
        raise MalformedRecord("msecs and relative_created must be finite")
    seq = m.producer.seq
    if seq == 0:  # producers count from 1; 0 means the field never arrived (a cut frame)
        raise MalformedRecord("producer.seq is missing: a record always carries a sequence number >= 1")
    attrs = _pb_attrs(m)
    extras = {k: _pb_value(v) for k, v in m.attributes.items()} if m.attributes else {}
    _learn_static(payload)
    return _finish(attrs, extras, len(payload), lim, m.producer.producer_id, seq, topic)


# ---- the fast path for the layout our encoder writes ------------------------------
#
# A payload laid out as _encode_protobuf writes it is HEAD | body | STATIC | seq
# (see there). When STATIC is a block this process has already parsed and vetted,
# only the hand-written fields around it are read here, and the attributes that
# STATIC yields come from a cache. The result is the one a full parse gives:
# STATIC is cached only if it is a complete message on its own, serialises back to
# exactly its bytes (so it holds no explicitly written default that would
# override a field around it), and sets none of the per-record fields. Anything
# else (another producer's layout, exceptions or extras, a cut or damaged frame)
# takes the full parse.

_HEAD_UNPACK = struct.Struct("<2xQxdxd").unpack_from
_STATIC_LIMIT = 4096
# Blocks are attacker-controlled bytes: only ordinary-sized ones are kept, so the
# cache stays within a few MB (a typical block is 100 to 300 bytes).
_STATIC_MAX_BYTES = 1024
# STATIC bytes -> (attributes without the per-record ones, producer_id, the topic they make)
_STATIC_ATTRS: dict[bytes, tuple[dict[str, Any], int, bytes]] = {}


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a varint of at most 10 bytes at ``pos``; (-1, pos) if there is none before ``end``."""
    value = shift = 0
    limit = min(end, pos + 10)
    while pos < limit:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
    return -1, pos


def _split_fast(payload: bytes) -> tuple[int, int, int, int] | None:
    """(body start, body end, seq start, seq) of a payload in our layout, or None."""
    size = len(payload)
    if size < 36 or payload[1] != _PB_TIME or payload[10] != _PB_MSECS or payload[19] != _PB_RELATIVE:
        return None
    if payload[28] != 0x22:
        return None
    length = payload[29]
    if length < 0x80:
        body = 30
    else:
        length, body = _read_varint(payload, 29, 34)
        if length < 0:
            return None
    body_end = body + length
    # The tail is ba 01 k 28 <varint seq>, k = 1 + the varint's length. Inside the
    # varint a 0x01 can only be the last byte, so the last "ba 01" that starts at
    # least 5 bytes before the end is the tail's.
    tail = payload.rfind(_PB_PRODUCER, max(body_end, size - 14), size - 3)
    if tail < 0 or payload[tail + 3] != 0x28 or payload[tail + 2] != size - tail - 3:
        return None
    if tail + 5 == size and payload[tail + 4] < 0x80:  # a one-byte seq (a set top bit: a cut varint)
        seq, end = payload[tail + 4], size
    else:
        seq, end = _read_varint(payload, tail + 4, size)
    if end != size or not 0 < seq < 2**64:
        return None
    return body, body_end, tail, seq


def _decode_protobuf_fast(payload: bytes, lim: Limits, topic: bytes | None = None) -> Decoded | None:
    parts = _split_fast(payload)
    if parts is None:
        return None
    body, body_end, seq_start, seq = parts
    cached = _STATIC_ATTRS.get(payload[body_end:seq_start])
    if cached is None:
        return None
    if topic is not None and topic != cached[2]:
        _check_topic(topic, cached[0], cached[2])
    try:
        msg = payload[body:body_end].decode()
    except UnicodeDecodeError:
        return None
    time_ns, msecs, relative = _HEAD_UNPACK(payload)
    if not (math.isfinite(msecs) and math.isfinite(relative)):
        return None
    attrs = cached[0].copy()
    attrs["msg"] = msg
    attrs["created"] = time_ns / 1_000_000_000
    attrs["msecs"] = msecs
    attrs["relativeCreated"] = relative
    attrs["seq"] = seq
    cuts = _apply_caps(attrs, {}, lim) if len(payload) > lim._smallest else 0
    record = _new_record(logging.LogRecord)
    record.__dict__ = attrs
    return Decoded(record, cached[1], seq, cuts)


def _learn_static(payload: bytes) -> None:
    """After a full parse, remember the payload's STATIC block if it is safe to reuse."""
    parts = _split_fast(payload)
    if parts is None:
        return
    static = payload[parts[1] : parts[2]]
    if not static or len(static) > _STATIC_MAX_BYTES or static in _STATIC_ATTRS:
        return
    try:
        m = _PB_FROM(static)
    except Exception:
        return
    if (
        m.SerializeToString() != static
        or m.time_unix_nano
        or m.body
        or m.msecs
        or m.relative_created
        or m.exc_text
        or m.stack_info
        or m.exceptions
        or m.attributes
        or m.producer.seq
    ):
        return
    if len(_STATIC_ATTRS) >= _STATIC_LIMIT:
        _STATIC_ATTRS.clear()
    attrs = _pb_attrs(m)
    _STATIC_ATTRS[static] = (
        attrs,
        m.producer.producer_id,
        make_topic(attrs["levelno"], attrs["name"], attrs["service"]),
    )


# JSON field checks: wire name -> (record attribute, accepted types, nullable, default)
_STR = (str,)
_INT = (int,)
_NUM = (int, float)
_Spec = dict[str, tuple[str, tuple[type, ...], bool, Any]]
_JSON_FIELDS: _Spec = {
    "time_unix_nano": ("created", _INT, False, None),
    "severity_text": ("levelname", _STR, False, None),
    "body": ("msg", _STR, False, None),
    "name": ("name", _STR, False, None),
    "levelno": ("levelno", _INT, False, None),
    "pathname": ("pathname", _STR, True, ""),
    "filename": ("filename", _STR, True, ""),
    "module": ("module", _STR, True, ""),
    "lineno": ("lineno", _INT, True, 0),
    "func_name": ("funcName", _STR, True, None),
    "msecs": ("msecs", _NUM, True, 0.0),
    "relative_created": ("relativeCreated", _NUM, True, 0.0),
    "thread": ("thread", _INT, True, None),
    "thread_name": ("threadName", _STR, True, None),
    "process": ("process", _INT, True, None),
    "process_name": ("processName", _STR, True, None),
    "task_name": ("taskName", _STR, True, None),
    "exc_text": ("exc_text", _STR, True, None),
    "stack_info": ("stack_info", _STR, True, None),
}
_JSON_PRODUCER: _Spec = {
    "service": ("service", _STR, True, ""),
    "host": ("host", _STR, True, ""),
    "pid": ("pid", _INT, True, 0),
    "producer_id": ("producer_id", _INT, False, None),
    "seq": ("seq", _INT, False, None),
}
_INT_RANGE: dict[str, tuple[int, int]] = {
    "time_unix_nano": (0, 2**64 - 1),
    "levelno": (-(2**31), 2**31 - 1),
    "lineno": (-(2**31), 2**31 - 1),
    "thread": (0, 2**64 - 1),
    "process": (-(2**31), 2**31 - 1),
    "pid": (-(2**31), 2**31 - 1),
    "producer_id": (0, 2**64 - 1),
    "seq": (1, 2**64 - 1),
}


def _check(doc: Mapping[str, Any], spec: _Spec, out: dict[str, Any]) -> None:
    for key, (attr, types, nullable, default) in spec.items():
        value = doc.get(key)
        if value is None:
            if not nullable:
                raise MalformedRecord(f"field {key!r} is required")
            out[attr] = default
            continue
        if type(value) is bool or not isinstance(value, types):
            expected = "/".join(t.__name__ for t in types)
            raise MalformedRecord(f"field {key!r} must be {expected}, got {type(value).__name__}")
        checked: Any = value
        if key in _INT_RANGE:
            lo, hi = _INT_RANGE[key]
            if not lo <= checked <= hi:
                raise MalformedRecord(f"field {key!r} out of range: {checked}")
        if default is None and nullable and not checked:
            checked = None  # "" and 0 mean unset, as in protobuf
        out[attr] = float(checked) if types is _NUM else checked


def _json_exceptions(exceptions: object) -> list[dict[str, str]] | None:
    if exceptions is None:
        return None
    if not isinstance(exceptions, list):
        raise MalformedRecord("field 'exceptions' must be a list")
    chain = []
    for e in exceptions[:_MAX_CHAIN]:
        if not isinstance(e, dict):
            raise MalformedRecord("each exception must be an object")
        kind, message, relation = e.get("type"), e.get("message"), e.get("relation", "context")
        if not isinstance(kind, str) or not isinstance(message, str) or relation not in _RELATIONS:
            raise MalformedRecord("an exception needs str 'type', str 'message' and a known 'relation'")
        chain.append({"type": kind, "message": message, "relation": relation})
    return chain or None


def _decode_json(payload: bytes, lim: Limits, topic: bytes | None = None) -> Decoded:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedRecord(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedRecord("a JSON record must be an object")
    if type(doc.get("v")) is not int or doc["v"] != JSON_VERSION:
        raise MalformedRecord(
            f"unsupported JSON record version {doc.get('v')!r:.20}; this listener reads v{JSON_VERSION}"
        )
    for key in doc:
        if key in _FORBIDDEN and key not in _JSON_FIELDS:
            raise MalformedRecord(f"top-level key {key!r} would shadow a LogRecord attribute")
    producer = doc.get("producer")
    if not isinstance(producer, dict):
        raise MalformedRecord("field 'producer' must be an object")
    attrs: dict[str, Any] = {"args": (), "exc_info": None}
    _check(doc, _JSON_FIELDS, attrs)
    _check(producer, _JSON_PRODUCER, attrs)
    attrs["created"] = attrs["created"] / 1_000_000_000
    del attrs["pid"]
    producer_id = attrs["producer_id"]
    attrs["producer_id"] = f"{producer_id:016x}"
    attrs["exceptions"] = _json_exceptions(doc.get("exceptions"))
    extras = doc.get("attributes")
    if extras is None:
        extras = {}
    elif not isinstance(extras, dict):
        raise MalformedRecord("field 'attributes' must be an object")
    return _finish(attrs, extras, len(payload), lim, producer_id, attrs["seq"], topic)


_DEFAULT_LIMITS = Limits()


def decode(payload: bytes, limits: Limits | None = None, topic: bytes | None = None) -> Decoded:
    """Rehydrate one payload of either codec into a :class:`logging.LogRecord`.

    Raises :class:`MalformedRecord` for anything that is not a complete, safe
    record; nothing else escapes. The record carries ``args=()`` (the message
    arrives merged), so a ``%`` in a remote message is never interpreted, and
    the fabric attributes ``service``, ``host``, ``producer_id`` (16 hex
    digits), ``seq`` and ``exceptions`` (a list of ``{"type", "message",
    "relation"}`` dicts, or None). An extra named like a fabric attribute
    arrives as ``extra_<name>``.

    With ``topic`` (the bytes before the payload in a message), a record whose
    level bucket, logger or service does not make exactly that topic (see
    :func:`fabric.topic.make_topic`) is rejected too: a topic is what
    subscriptions and gap tracking rely on, so it must follow from the record.
    """
    if not payload:
        raise MalformedRecord("empty payload")
    lim = limits or _DEFAULT_LIMITS
    first = payload[0]
    try:
        if first == PROTOBUF_V1:
            return _decode_protobuf_fast(payload, lim, topic) or _decode_protobuf(payload, lim, topic)
        if first == 0x7B:  # "{"
            return _decode_json(payload, lim, topic)
    except MalformedRecord:
        raise
    except (RecursionError, MemoryError, ValueError, TypeError, KeyError, OverflowError) as exc:
        raise MalformedRecord(f"rejected: {type(exc).__name__}: {exc}") from None
    raise MalformedRecord(f"unknown codec tag 0x{first:02x}: not a logfabric payload")
