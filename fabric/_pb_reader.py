"""The protobuf reader: a full parse, and a fast path for the layout our writer emits.

:func:`decode_full` parses any well-formed ``logfabric.v1.LogRecord`` with the
generated code. :func:`decode_fast` reads a payload laid out as
:mod:`fabric._pb_layout` describes (HEAD | body | STATIC | TAIL) when STATIC is a
block this process has already parsed and vetted: only the hand-written fields
around it are read, and the attributes that STATIC yields come from a cache.
The result is the one a full parse gives: STATIC is cached only if it is a
complete message on its own, serialises back to exactly its bytes (so it holds
no explicitly written default that would override a field around it), and sets
none of the per-record fields. Anything else (another producer's layout,
exceptions or extras, a cut or damaged frame) takes the full parse.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from fabric._caps import apply_caps, check_topic, finish, new_record
from fabric._pb_layout import HEAD_VALUES, LEVEL_NAMES, derived_names, split
from fabric._proto.logfabric.v1 import record_pb2 as _pb
from fabric._record import MAX_CHAIN, RELATIONS, Decoded, Limits, MalformedRecord, ReceivedRecord
from fabric.topic import make_topic

__all__ = ["STATIC_ATTRS", "STATIC_MAX_BYTES", "decode_fast", "decode_full"]

_PB_FROM = _pb.LogRecord.FromString
_STATIC_LIMIT = 4096
#: Blocks are attacker-controlled bytes: only ordinary-sized ones are kept, so the
#: cache stays within a few MB (a typical block is 100 to 300 bytes).
STATIC_MAX_BYTES = 1024
#: STATIC bytes -> (attributes without the per-record ones, producer_id, the topic they make).
STATIC_ATTRS: dict[bytes, tuple[dict[str, Any], int, bytes]] = {}


def _value(v: Any) -> object:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "json_value":
        try:
            return orjson.loads(v.json_value)
        except orjson.JSONDecodeError as exc:
            raise MalformedRecord(f"extra holds invalid JSON: {exc}") from None
    return getattr(v, kind)


def _attrs(m: Any) -> dict[str, Any]:
    """The record attributes of a parsed message (before caps and extras)."""
    p = m.producer
    pathname = m.pathname
    has = m.HasField
    derived = derived_names(pathname)
    filename = m.filename if has("filename") else derived[0]
    module = m.module if has("module") else derived[1]
    levelno = m.levelno
    return {
        "name": m.name,
        "msg": m.body,
        "args": (),
        "levelname": m.severity_text if has("severity_text") else LEVEL_NAMES.get(levelno, ""),
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
                "relation": RELATIONS[e.relation] if 0 <= e.relation < 3 else "context",
            }
            for e in m.exceptions[:MAX_CHAIN]
        ]
        if m.exceptions
        else None,
    }


def decode_full(payload: bytes, lim: Limits, topic: bytes | None = None) -> Decoded:
    """Rehydrate a protobuf payload by a full parse, and learn its STATIC block for :func:`decode_fast`."""
    try:
        m = _PB_FROM(payload[1:])
    except Exception as exc:  # google.protobuf.message.DecodeError and kin
        raise MalformedRecord(f"not a valid protobuf record: {exc}") from None
    if not (math.isfinite(m.msecs) and math.isfinite(m.relative_created)):
        raise MalformedRecord("msecs and relative_created must be finite")
    seq = m.producer.seq
    if seq == 0:  # producers count from 1; 0 means the field never arrived (a cut frame)
        raise MalformedRecord("producer.seq is missing: a record always carries a sequence number >= 1")
    attrs = _attrs(m)
    extras = {k: _value(v) for k, v in m.attributes.items()} if m.attributes else {}
    _learn_static(payload)
    return finish(attrs, extras, len(payload), lim, m.producer.producer_id, seq, topic)


def decode_fast(payload: bytes, lim: Limits, topic: bytes | None = None) -> Decoded | None:
    """Rehydrate a payload in our layout whose STATIC block is cached; None if it is not one."""
    parts = split(payload)
    if parts is None:
        return None
    body, body_end, seq_start, seq = parts
    cached = STATIC_ATTRS.get(payload[body_end:seq_start])
    if cached is None:
        return None
    if topic is not None and topic != cached[2]:
        check_topic(topic, cached[0], cached[2])
    try:
        msg = payload[body:body_end].decode()
    except UnicodeDecodeError:
        return None
    time_ns, msecs, relative = HEAD_VALUES(payload)
    if not (math.isfinite(msecs) and math.isfinite(relative)):
        return None
    attrs = cached[0].copy()
    attrs["msg"] = msg
    attrs["created"] = time_ns / 1_000_000_000
    attrs["msecs"] = msecs
    attrs["relativeCreated"] = relative
    attrs["seq"] = seq
    cuts = apply_caps(attrs, {}, lim) if len(payload) > lim.smallest else 0
    record = new_record(ReceivedRecord)
    record.__dict__ = attrs
    return Decoded(record, cached[1], seq, cuts)


def _learn_static(payload: bytes) -> None:
    """After a full parse, remember the payload's STATIC block if it is safe to reuse."""
    parts = split(payload)
    if parts is None:
        return
    static = payload[parts[1] : parts[2]]
    if not static or len(static) > STATIC_MAX_BYTES or static in STATIC_ATTRS:
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
    if len(STATIC_ATTRS) >= _STATIC_LIMIT:
        STATIC_ATTRS.clear()
    attrs = _attrs(m)
    STATIC_ATTRS[static] = (
        attrs,
        m.producer.producer_id,
        make_topic(attrs["levelno"], attrs["name"], attrs["service"]),
    )
