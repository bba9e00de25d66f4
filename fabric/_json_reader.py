"""The JSON reader: an orjson object of version 1, every field allow-listed and type-checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fabric._caps import finish
from fabric._record import FORBIDDEN, JSON_VERSION, MAX_CHAIN, RELATIONS, Decoded, Limits, MalformedRecord

__all__ = ["decode_json"]

# JSON field checks: wire name -> (record attribute, accepted types, nullable, default)
_STR = (str,)
_INT = (int,)
_NUM = (int, float)
_Spec = dict[str, tuple[str, tuple[type, ...], bool, Any]]
_FIELDS: _Spec = {
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
_PRODUCER: _Spec = {
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


def _exceptions(exceptions: object) -> list[dict[str, str]] | None:
    if exceptions is None:
        return None
    if not isinstance(exceptions, list):
        raise MalformedRecord("field 'exceptions' must be a list")
    chain = []
    for e in exceptions[:MAX_CHAIN]:
        if not isinstance(e, dict):
            raise MalformedRecord("each exception must be an object")
        kind, message, relation = e.get("type"), e.get("message"), e.get("relation", "context")
        if not isinstance(kind, str) or not isinstance(message, str) or relation not in RELATIONS:
            raise MalformedRecord("an exception needs str 'type', str 'message' and a known 'relation'")
        chain.append({"type": kind, "message": message, "relation": relation})
    return chain or None


def decode_json(payload: bytes, lim: Limits, topic: bytes | None = None) -> Decoded:
    """Rehydrate a JSON payload; raise :class:`MalformedRecord` for anything but a valid v1 record."""
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
        if key in FORBIDDEN and key not in _FIELDS:
            raise MalformedRecord(f"top-level key {key!r} would shadow a LogRecord attribute")
    producer = doc.get("producer")
    if not isinstance(producer, dict):
        raise MalformedRecord("field 'producer' must be an object")
    attrs: dict[str, Any] = {"args": (), "exc_info": None}
    _check(doc, _FIELDS, attrs)
    _check(producer, _PRODUCER, attrs)
    attrs["created"] = attrs["created"] / 1_000_000_000
    del attrs["pid"]
    producer_id = attrs["producer_id"]
    attrs["producer_id"] = f"{producer_id:016x}"
    attrs["exceptions"] = _exceptions(doc.get("exceptions"))
    extras = doc.get("attributes")
    if extras is None:
        extras = {}
    elif not isinstance(extras, dict):
        raise MalformedRecord("field 'attributes' must be an object")
    return finish(attrs, extras, len(payload), lim, producer_id, attrs["seq"], topic)
