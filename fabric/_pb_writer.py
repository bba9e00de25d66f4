"""The protobuf writer: one record as the pieces of the layout in :mod:`fabric._pb_layout`.

The per-record fields are written by hand around a cached block of the others
(STATIC, one upb-serialised message per call site); exceptions, stack and
extras are serialised only when a record has any. The tail (the producer's
seq) is :func:`fabric._pb_layout.tail`, added by whoever numbers the record.
"""

from __future__ import annotations

import logging
from typing import Any

from fabric._pb_layout import BODY_KEY, HEAD, LEVEL_NAMES, MSECS_KEY, RELATIVE_KEY, TAG, TIME_KEY, derived_names, varint
from fabric._prepare import CACHE_LIMIT, coerced, exc_text, extras, to_json, where
from fabric._proto.logfabric.v1 import record_pb2 as _pb
from fabric._record import INT64, ProducerIdentity, exception_chain, severity_number
from fabric._text import safe_repr

__all__ = ["ProtobufWriter"]

_SEVERITY = [severity_number(n) for n in range(100)]
_HEAD_PACK = HEAD.pack


def _set_value(value_msg: Any, value: object) -> None:
    if isinstance(value, str):
        value_msg.string_value = value
    elif isinstance(value, bool):
        value_msg.bool_value = value
    elif isinstance(value, int) and INT64[0] <= value <= INT64[1]:
        value_msg.int_value = value
    elif isinstance(value, float):
        value_msg.double_value = value
    else:
        text = to_json(value)
        if text is None:
            value_msg.string_value = safe_repr(value)
        else:
            value_msg.json_value = text


def _static(record: logging.LogRecord, identity: ProducerIdentity) -> bytes:
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
    if record.levelname != LEVEL_NAMES.get(levelno):
        m.severity_text = record.levelname
    m.name = record.name
    m.levelno = levelno
    m.pathname = record.pathname
    if (record.filename, record.module) != derived_names(record.pathname):
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


def _rare(record: logging.LogRecord, fmt: logging.Formatter, found: dict[str, Any] | None) -> bytes:
    """Fields 5, 20, 21 and 22: exceptions, stack and extras, when a record has any."""
    m = _pb.LogRecord()
    text = exc_text(record, fmt)
    if text:
        m.exc_text = text
        if record.exc_info:
            for kind, message, relation in exception_chain(record.exc_info[1]):
                e = m.exceptions.add()
                e.type = kind
                e.message = message
                e.relation = relation  # type: ignore[assignment]
    if record.stack_info:
        m.stack_info = fmt.formatStack(record.stack_info)
    if found:
        attributes = m.attributes
        for key, value in found.items():
            _set_value(attributes[key], value)
    return m.SerializeToString()


class ProtobufWriter:
    """Writes the records of one producer up to their tail, caching what repeats."""

    __slots__ = ("_formatter", "_identity", "_static")

    def __init__(self, identity: ProducerIdentity, formatter: logging.Formatter) -> None:
        self._identity = identity
        self._formatter = formatter
        # Encoded fields that repeat from record to record, by where(record).
        self._static: dict[tuple[Any, ...], bytes] = {}

    def body(self, record: logging.LogRecord, lead: bytes) -> bytes:
        """``lead`` and the payload for ``record`` up to its tail.

        Raises what a record whose text or types do not fit the wire raises
        (UnicodeEncodeError, TypeError, ValueError, OverflowError).
        """
        key = where(record)
        static = self._static.get(key)
        if static is None:
            if len(self._static) >= CACHE_LIMIT:
                self._static.clear()
            static = self._static[key] = _static(coerced(record), self._identity)
        body = record.getMessage().encode()
        created = record.created
        whole = int(created)
        head = _HEAD_PACK(
            TAG,
            TIME_KEY,
            whole * 1_000_000_000 + round((created - whole) * 1e9),
            MSECS_KEY,
            record.msecs,
            RELATIVE_KEY,
            record.relativeCreated,
        )
        found = extras(record)
        rare = (
            _rare(record, self._formatter, found)
            if record.exc_info or record.exc_text or record.stack_info or found
            else b""
        )
        return b"".join((lead, head, BODY_KEY, varint(len(body)), body, static, rare))
