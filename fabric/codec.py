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

This module is the codec's public face; each stage is a private module:
:mod:`fabric._record` (the contract), :mod:`fabric._prepare` (reading a record
for the wire), :mod:`fabric._pb_layout` (the protobuf layout, defined once),
:mod:`fabric._pb_writer` and :mod:`fabric._json_writer`, :mod:`fabric._caps`
(the rehydration contract and caps), :mod:`fabric._pb_reader` and
:mod:`fabric._json_reader`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from fabric import _json_writer, _pb_layout, _structured
from fabric._json_reader import decode_json
from fabric._json_writer import JsonWriter
from fabric._pb_reader import decode_fast, decode_full
from fabric._pb_writer import ProtobufWriter
from fabric._prepare import DEFAULT_FORMATTER, coerced, scrubbed
from fabric._record import (
    CODECS,
    FABRIC_ATTRIBUTES,
    FORBIDDEN,
    PROTOBUF_V1,
    Codec,
    Decoded,
    Limits,
    MalformedRecord,
    ProducerIdentity,
    severity_number,
)
from fabric._text import safe_str, scrub

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

    __slots__ = ("_write", "codec", "formatter", "identity", "tail")

    def __init__(
        self,
        identity: ProducerIdentity,
        codec: Codec = "protobuf",
        formatter: logging.Formatter | None = None,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
        identity = dataclasses.replace(identity, service=scrub(identity.service), host=scrub(identity.host))
        self.identity = identity
        self.codec = codec
        self.formatter = formatter or DEFAULT_FORMATTER
        writer = ProtobufWriter if codec == "protobuf" else JsonWriter
        # The writer's bound body(record, lead): it owns the cache of what repeats.
        self._write: Callable[[logging.LogRecord, bytes], bytes] = writer(identity, self.formatter).body
        self.tail: Callable[[int], bytes] = _pb_layout.tail if codec == "protobuf" else _json_writer.tail
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
            record = _structured.flatten(record, FORBIDDEN, safe_str)
        try:
            return self._write(record, lead)
        except (UnicodeEncodeError, TypeError, ValueError, OverflowError):
            # Lone surrogates somewhere in the record, or a standard attribute
            # of the wrong type (a filter's doing, or extra={"taskName": ...}
            # before Python 3.12; orjson's errors are TypeErrors too): send a
            # copy with the text escaped and the types coerced, rather than
            # lose the record. A message whose args do not fit fails again.
            return self._write(scrubbed(coerced(record), self.formatter), lead)

    def encode(self, record: logging.LogRecord, seq: int) -> bytes:
        """Return the payload for ``record`` as the producer's ``seq``-th record."""
        return self.body(record) + self.tail(seq)


def encode(
    record: logging.LogRecord,
    identity: ProducerIdentity,
    seq: int,
    codec: Codec = "protobuf",
    formatter: logging.Formatter | None = None,
) -> bytes:
    """Serialise one record; see :class:`Encoder`, which a producer should keep."""
    return Encoder(identity, codec, formatter).encode(record, seq)


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
            return decode_fast(payload, lim, topic) or decode_full(payload, lim, topic)
        if first == 0x7B:  # "{"
            return decode_json(payload, lim, topic)
    except MalformedRecord:
        raise
    except (RecursionError, MemoryError, ValueError, TypeError, KeyError, OverflowError) as exc:
        raise MalformedRecord(f"rejected: {type(exc).__name__}: {exc}") from None
    raise MalformedRecord(f"unknown codec tag 0x{first:02x}: not a logfabric payload")
