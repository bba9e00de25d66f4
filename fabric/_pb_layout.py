"""The protobuf payload layout, defined once: what the writer packs and the fast reader splits.

A protobuf payload is the tag byte and one serialised ``logfabric.v1.LogRecord``
(``proto/logfabric/v1/record.proto``), written as pieces that a parser merges
into one message::

    TAG | HEAD: time_unix_nano (1), msecs (13), relative_created (14), fixed width
        | body (4), length-delimited
        | STATIC: every field that repeats from record to record, one block
        | exceptions, stack, extras (only when the record has any)
        | TAIL: producer (23) {seq (5)}, last, so a cut frame never carries its seq

The field numbers and types come from the generated descriptor; from them this
module derives the writer's packing (:data:`HEAD`, :data:`BODY_KEY`,
:func:`tail`) and the reader's splitting (:func:`split`, :data:`HEAD_VALUES`),
so the two cannot drift apart. It also holds what STATIC leaves out because a
reader derives it (:data:`LEVEL_NAMES`, :func:`derived_names`).
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Callable
from typing import Any

from fabric._proto.logfabric.v1 import record_pb2 as _pb
from fabric._record import PROTOBUF_V1

__all__ = [
    "BODY_KEY",
    "HEAD",
    "HEAD_VALUES",
    "LEVEL_NAMES",
    "MSECS_KEY",
    "RELATIVE_KEY",
    "TAG",
    "TIME_KEY",
    "VARINT1",
    "derived_names",
    "read_varint",
    "split",
    "tail",
    "varint",
]

_FIELDS = _pb.LogRecord.DESCRIPTOR.fields_by_name
_PRODUCER_FIELDS = _pb.Producer.DESCRIPTOR.fields_by_name

# The fixed-width fields at the head of every payload, in order.
_HEAD_FIELDS = ("time_unix_nano", "msecs", "relative_created")
# Field type -> (wire type, struct code of its value when fixed width).
_FD = _FIELDS["msecs"]  # any descriptor carries the type constants
_WIRE: dict[int, tuple[int, str]] = {
    _FD.TYPE_FIXED64: (1, "Q"),
    _FD.TYPE_DOUBLE: (1, "d"),
    _FD.TYPE_UINT64: (0, ""),
    _FD.TYPE_STRING: (2, ""),
    _FD.TYPE_MESSAGE: (2, ""),
}

#: ``VARINT1[n]``: the one-byte varint of ``n`` < 128.
VARINT1 = [bytes((n,)) for n in range(128)]


def varint(n: int) -> bytes:
    """The protobuf varint of ``n`` >= 0."""
    if n < 128:
        return VARINT1[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
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


def _key(field: Any) -> bytes:
    """The key (field number and wire type) that precedes ``field`` on the wire."""
    return varint(field.number << 3 | _WIRE[field.type][0])


def _one_byte(key: bytes) -> int:
    if len(key) != 1:
        raise RuntimeError(f"the layout needs one-byte keys, got {key!r}: record.proto changed")
    return key[0]


#: The payload's first byte.
TAG = PROTOBUF_V1
_head_keys = [_one_byte(_key(_FIELDS[name])) for name in _HEAD_FIELDS]
_head_codes = [_WIRE[_FIELDS[name].type][1] for name in _HEAD_FIELDS]
if not all(_head_codes):
    raise RuntimeError("the head fields must be fixed width: record.proto changed")
#: The one-byte keys of the head fields.
TIME_KEY, MSECS_KEY, RELATIVE_KEY = _head_keys
#: Packs ``TAG, TIME_KEY, time, MSECS_KEY, msecs, RELATIVE_KEY, relative``.
HEAD = struct.Struct("<B" + "".join("B" + code for code in _head_codes))
#: ``HEAD_VALUES(payload)``: the head's three values, keys skipped.
HEAD_VALUES: Callable[[bytes], tuple[Any, ...]] = struct.Struct(
    "<x" + "".join("x" + code for code in _head_codes)
).unpack_from
#: The key of the body, which follows the head.
BODY_KEY = _key(_FIELDS["body"])

# Where the head's keys sit.
_TIME_AT, _MSECS_AT, _RELATIVE_AT = (
    1 + sum(1 + struct.calcsize("<" + code) for code in _head_codes[:i]) for i in range(len(_head_codes))
)
_BODY_KEY = _one_byte(BODY_KEY)
_BODY_KEY_AT = HEAD.size
_BODY_LEN_AT = _BODY_KEY_AT + 1
_BODY_AT = _BODY_LEN_AT + 1  # when the body's length takes one byte
_BODY_LEN_MAX = 5  # bytes of varint a body length may take (bodies under 32 GiB)

# The tail: PRODUCER_KEY, k, SEQ_KEY, <varint seq>, with k = the bytes after it.
_PRODUCER_KEY = _key(_FIELDS["producer"])
_SEQ_KEY = _key(_PRODUCER_FIELDS["seq"])
_TAIL_LEN_AT = len(_PRODUCER_KEY)
_TAIL_SEQ_KEY_AT = _TAIL_LEN_AT + 1
_SEQ_KEY_BYTE = _one_byte(_SEQ_KEY)
_TAIL_SEQ_AT = _TAIL_SEQ_KEY_AT + 1
_TAIL_MIN = _TAIL_SEQ_AT + 1  # a one-byte seq
_TAIL_MAX = _TAIL_SEQ_AT + 10  # a ten-byte seq
# The shortest payload the fast reader takes: a head, an empty body, a STATIC of one byte, a tail.
_MIN_SIZE = _BODY_AT + 1 + _TAIL_MIN
# The last place PRODUCER_KEY can end and leave room for the shortest tail, back from the end.
_TAIL_BACK = _TAIL_MIN - _TAIL_LEN_AT

_TAILS = [_PRODUCER_KEY + VARINT1[len(_SEQ_KEY) + 1] + _SEQ_KEY + VARINT1[n] for n in range(128)]
_TAIL2 = _PRODUCER_KEY + VARINT1[len(_SEQ_KEY) + 2] + _SEQ_KEY


def tail(seq: int) -> bytes:
    """producer (23) {seq (5)}: the payload's last field."""
    if seq < 128:
        return _TAILS[seq]
    if seq < 16384:  # a two-byte varint, written at once
        return _TAIL2 + bytes(((seq & 0x7F) | 0x80, seq >> 7))
    rest = _SEQ_KEY + varint(seq)
    return _PRODUCER_KEY + VARINT1[len(rest)] + rest


def split(payload: bytes) -> tuple[int, int, int, int] | None:
    """(body start, body end, tail start, seq) of a payload in this layout, or None.

    STATIC (and whatever rare fields follow it) is ``payload[body end:tail start]``.
    """
    size = len(payload)
    if (
        size < _MIN_SIZE
        or payload[_TIME_AT] != TIME_KEY
        or payload[_MSECS_AT] != MSECS_KEY
        or payload[_RELATIVE_AT] != RELATIVE_KEY
    ):
        return None
    if payload[_BODY_KEY_AT] != _BODY_KEY:
        return None
    length = payload[_BODY_LEN_AT]
    if length < 0x80:
        body = _BODY_AT
    else:
        length, body = read_varint(payload, _BODY_LEN_AT, _BODY_LEN_AT + _BODY_LEN_MAX)
        if length < 0:
            return None
    body_end = body + length
    # Inside the seq varint a byte of PRODUCER_KEY's last value (0x01) can only be
    # the last byte, so the last PRODUCER_KEY that leaves room for a whole tail is the tail's.
    start = payload.rfind(_PRODUCER_KEY, max(body_end, size - _TAIL_MAX), size - _TAIL_BACK)
    if (
        start < 0
        or payload[start + _TAIL_SEQ_KEY_AT] != _SEQ_KEY_BYTE
        or payload[start + _TAIL_LEN_AT] != size - start - _TAIL_SEQ_KEY_AT
    ):
        return None
    if start + _TAIL_MIN == size and payload[start + _TAIL_SEQ_AT] < 0x80:  # one byte (a set top bit: a cut varint)
        seq, end = payload[start + _TAIL_SEQ_AT], size
    else:
        seq, end = read_varint(payload, start + _TAIL_SEQ_AT, size)
    if end != size or not 0 < seq < 2**64:
        return None
    return body, body_end, start, seq


#: Standard level names: STATIC leaves out ``severity_text`` when it is one of these.
LEVEL_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def derived_names(pathname: str) -> tuple[str, str]:
    """``filename`` and ``module`` as ``LogRecord`` derives them from ``pathname`` (POSIX rules).

    STATIC leaves them out when they follow from ``pathname``.
    """
    filename = posixpath.basename(pathname)
    return filename, posixpath.splitext(filename)[0]
