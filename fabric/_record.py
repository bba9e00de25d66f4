"""The record contract both codecs share: names, identity, limits, errors, levels, exceptions.

What a record carries on the wire is fixed by ``proto/logfabric/v1/record.proto``;
this module holds what the writers and readers of both codecs agree on around
it: which attributes are standard and may not be shadowed by an extra, the
attributes the fabric adds, the producer's identity, the caps a reader applies
and the error it raises, and how levels and exception chains are described.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal, NamedTuple

from fabric._text import safe_str, scrub

__all__ = [
    "BASE_LEN",
    "CODECS",
    "FABRIC_ATTRIBUTES",
    "FORBIDDEN",
    "INT64",
    "JSON_VERSION",
    "MAX_CHAIN",
    "PROTOBUF_V1",
    "RELATIONS",
    "STANDARD",
    "Codec",
    "Decoded",
    "Limits",
    "MalformedRecord",
    "ProducerIdentity",
    "ReceivedRecord",
    "exception_chain",
    "severity_number",
]

Codec = Literal["protobuf", "json"]
CODECS: tuple[Codec, ...] = ("protobuf", "json")

#: The first byte of a protobuf payload.
PROTOBUF_V1 = 0x01
#: The ``"v"`` of a JSON payload.
JSON_VERSION = 1


class ReceivedRecord(logging.LogRecord):
    """A record a receiver made: rehydrated from the wire, or a notice about what arrived.

    A plain ``LogRecord`` in every other respect. A ``ZmqHandler`` never sends
    one on: a subscriber whose records reach a logger that also ships its own
    logs would otherwise send every record back to the broker, in a loop.
    """


#: Attributes the fabric adds to every rehydrated record.
FABRIC_ATTRIBUTES = frozenset({"service", "host", "producer_id", "seq", "exceptions"})

#: Attributes every LogRecord has (or gains from a Formatter): never sent as
#: extras, never accepted as extras.
STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
#: Names an incoming extra may not take: the standard attributes plus every
#: attribute and method of the class (getMessage, __dict__, __class__, ...).
FORBIDDEN = STANDARD | frozenset(dir(logging.LogRecord))
#: How many attributes ``LogRecord.__init__`` sets: a record with no more has no extras.
BASE_LEN = len(logging.makeLogRecord({}).__dict__)

#: How an exception relates to the one before it in a chain, by its wire number.
RELATIONS = ("raised", "cause", "context")
#: The most exceptions of one chain that travel, and that a reader keeps.
MAX_CHAIN = 16
#: The range of a signed 64-bit integer, as the wire carries it.
INT64 = (-(2**63), 2**63 - 1)


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

    smallest: int = dataclasses.field(init=False, repr=False, compare=False)
    """The smallest cap: a payload no longer than this needs no capping."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "smallest", min(self.message, self.traceback, self.field, self.extra_value))


@dataclass(frozen=True)
class ProducerIdentity:
    """Who sends: constant for one handler in one process."""

    service: str
    host: str
    pid: int
    producer_id: int


class Decoded(NamedTuple):
    """A rehydrated record plus what the listener needs to track its producer."""

    record: logging.LogRecord
    producer_id: int
    seq: int
    truncated: int
    """How many fields or extras were cut to fit :class:`Limits`."""


def severity_number(levelno: int) -> int:
    """Map a Python level to an OpenTelemetry ``SeverityNumber`` (1-24, 0 unset).

    DEBUG, INFO, WARNING, ERROR and CRITICAL map to 5, 9, 13, 17 and 21; a
    custom level lands inside its band (TRACE=5 gives 3, SUCCESS=25 gives 11).
    """
    if levelno <= 0:
        return 0
    band, rest = divmod(levelno, 10)
    return min(band * 4 + 1 + rest * 4 // 10, 24)


def exception_chain(exc: BaseException | None) -> list[tuple[str, str, int]]:
    """``(qualified type, message, relation)`` of ``exc`` and its causes, at most :data:`MAX_CHAIN`.

    The relation indexes :data:`RELATIONS`; the message is escaped so that it travels.
    """
    chain: list[tuple[str, str, int]] = []
    seen: set[int] = set()
    relation = 0
    while exc is not None and id(exc) not in seen and len(chain) < MAX_CHAIN:
        seen.add(id(exc))
        kind = type(exc)
        chain.append((f"{kind.__module__}.{kind.__qualname__}", scrub(safe_str(exc)), relation))
        if exc.__cause__ is not None:
            exc, relation = exc.__cause__, 1
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, relation = exc.__context__, 2
        else:
            break
    return chain
