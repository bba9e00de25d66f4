"""Reading a ``LogRecord`` for the wire: what both writers take from a record, and how.

Which attributes travel as extras, where the traceback text comes from, the
key of what repeats from record to record (the writers' cache), and the two
repairs a record gets when it cannot be written as it is: standard attributes
coerced to the types the wire needs, and text with its lone surrogates escaped.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from fabric._record import BASE_LEN, INT64, STANDARD
from fabric._text import safe_repr, safe_str, scrub

__all__ = [
    "CACHE_LIMIT",
    "DEFAULT_FORMATTER",
    "coerced",
    "exc_text",
    "extras",
    "scrubbed",
    "time_ns",
    "to_json",
    "where",
]

#: The formatter of an encoder given none: formats only exception and stack text.
DEFAULT_FORMATTER = logging.Formatter()
#: Entries a writer's cache of repeating fields holds before it starts over.
CACHE_LIMIT = 4096

_TEXT_ATTRS = ("name", "levelname", "pathname", "filename", "module", "funcName", "threadName", "processName")
_INT_ATTRS = ("levelno", "lineno", "thread", "process")
_FLOAT_ATTRS = ("created", "msecs", "relativeCreated")


def where(record: logging.LogRecord) -> tuple[Any, ...]:
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


def time_ns(created: float) -> int:
    """``created`` in integer nanoseconds."""
    # Exact split keeps ``created`` bit-for-bit through ns and back.
    whole = int(created)
    return whole * 1_000_000_000 + round((created - whole) * 1e9)


def extras(record: logging.LogRecord) -> dict[str, Any] | None:
    """The attributes of ``record`` that are not standard ones, or None."""
    attrs = record.__dict__
    if len(attrs) == BASE_LEN:  # LogRecord.__init__ set exactly the standard keys
        return None
    found = {k: v for k, v in attrs.items() if k not in STANDARD}
    return found or None


def _json_default(value: object) -> str:
    return safe_repr(value)


def to_json(value: object) -> str | None:
    """``value`` as JSON text (what is not JSON-able as its ``repr()``), or None if it cannot be."""
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        return None


def exc_text(record: logging.LogRecord, formatter: logging.Formatter) -> str | None:
    """The traceback text of ``record``, formatted (and kept on the record) when it has none yet."""
    text = record.exc_text
    if record.exc_info and (not text or text.isspace()):
        if text:  # a blank placeholder (loguru's "\n"): the real traceback travels, the record keeps it
            return formatter.formatException(record.exc_info) or None
        text = record.exc_text = formatter.formatException(record.exc_info)
    return text or None


def _as_int(value: object) -> int:
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    return number if INT64[0] <= number <= INT64[1] else 0


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0


def coerced(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` whose standard attributes have the types the wire needs."""
    clone: logging.LogRecord = object.__new__(logging.LogRecord)
    attrs = dict(record.__dict__)
    for name in _TEXT_ATTRS:
        if not isinstance(attrs.get(name), str):
            attrs[name] = "" if attrs.get(name) is None else safe_str(attrs[name])
    task = attrs.get("taskName")
    if task is not None and not isinstance(task, str):
        attrs["taskName"] = safe_str(task)
    for name in _INT_ATTRS:
        value = attrs.get(name)
        if type(value) is not int and not (value is None and name in ("thread", "process")):
            attrs[name] = _as_int(value)
    for name in _FLOAT_ATTRS:
        if type(attrs.get(name)) is not float:
            attrs[name] = _as_float(attrs.get(name))
    clone.__dict__ = attrs
    return clone


def scrubbed(record: logging.LogRecord, formatter: logging.Formatter) -> logging.LogRecord:
    """A copy of ``record`` with its text (message merged, traceback formatted) escaped."""
    text = exc_text(record, formatter)  # so that the traceback text is escaped too
    clone: logging.LogRecord = object.__new__(logging.LogRecord)
    clone.__dict__ = {scrub(k): scrub(v) if isinstance(v, str) else v for k, v in record.__dict__.items()}
    if text:
        clone.exc_text = scrub(text)
    clone.msg, clone.args = scrub(record.getMessage()), ()
    return clone
