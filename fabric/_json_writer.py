"""The JSON writer: one record as an orjson object whose first key is ``"v": 1``.

The parts that repeat from record to record (level, logger, call site) are
encoded once and cached, and the object is assembled from them as text, ``"v"``
first, no key twice. The producer object ends the payload and is completed by
:data:`tail`, the producer's seq.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from fabric._prepare import CACHE_LIMIT, coerced, exc_text, extras, time_ns, to_json, where
from fabric._record import INT64, JSON_VERSION, RELATIONS, ProducerIdentity, exception_chain, severity_number
from fabric._text import safe_repr

__all__ = ["JsonWriter", "tail"]

_HEAD = b'{"v":%d,' % JSON_VERSION

#: ``tail(seq)``: the payload's end, the producer's seq closing both objects. A
#: bound method of bytes, so that numbering a record costs no Python call.
tail: Callable[[int], bytes] = b"%d}}".__mod__


def _extra(value: object) -> object:
    if isinstance(value, (str, bool, float)) or value is None:
        return value
    if isinstance(value, int):
        return value if INT64[0] <= value <= INT64[1] else safe_repr(value)
    text = to_json(value)
    return safe_repr(value) if text is None else orjson.Fragment(text)


def _level(record: logging.LogRecord) -> bytes:
    return orjson.dumps(
        {
            "severity_number": severity_number(record.levelno),
            "severity_text": record.levelname,
            "name": record.name,
            "levelno": record.levelno,
        }
    )[1:-1]


def _site(record: logging.LogRecord) -> bytes:
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


def _producer(identity: ProducerIdentity) -> bytes:
    # The producer object up to its seq, which each record completes.
    fixed = orjson.dumps(
        {"service": identity.service, "host": identity.host, "pid": identity.pid, "producer_id": identity.producer_id}
    )
    return b',"producer":' + fixed[:-1] + b',"seq":'


class JsonWriter:
    """Writes the records of one producer up to their tail, caching what repeats."""

    __slots__ = ("_formatter", "_producer", "_static")

    def __init__(self, identity: ProducerIdentity, formatter: logging.Formatter) -> None:
        self._formatter = formatter
        self._producer = _producer(identity)
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
            typed = coerced(record)
            static = self._static[key] = b"".join((_HEAD, _level(typed), b",", _site(typed), b","))
        fmt = self._formatter
        text = exc_text(record, fmt)
        doc: dict[str, Any] = {
            "time_unix_nano": time_ns(record.created),
            "body": record.getMessage(),
            "msecs": record.msecs,
            "relative_created": record.relativeCreated,
            "exc_text": text,
            "stack_info": fmt.formatStack(record.stack_info) if record.stack_info else None,
        }
        if text and record.exc_info:
            doc["exceptions"] = [
                {"type": kind, "message": message, "relation": RELATIONS[relation]}
                for kind, message, relation in exception_chain(record.exc_info[1])
            ]
        found = extras(record)
        if found:
            doc["attributes"] = {str(k): _extra(v) for k, v in found.items()}
        return b"".join((lead, static, orjson.dumps(doc)[1:-1], self._producer))
