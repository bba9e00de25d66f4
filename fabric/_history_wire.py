"""The history protocol, version 1: what a subscriber asks a broker's history endpoint and what comes back.

The broker's history socket is a ROUTER; a subscriber's is a DEALER. A request
is one frame, a JSON object (orjson)::

    {"v": 1, "id": 7,                                  version (required), echoed id
     "level": 30, "loggers": ["app.db"], "services": ["checkout"],   the filter
     "since": NS, "until": NS,                          time range (stored time, ns since the epoch)
     "last": N,                                         the newest N matches only
     "sync": true,                                      a subscriber goes live after this: see below
     "cursor": {...}}                                   the "cursor" of the previous page, as it came

A reply is ``[header, times, frame, frame, ...]``: a JSON header, the stored
times of the records as packed little-endian int64, and each record in its
wire form (``topic NUL payload``), oldest first::

    {"v": 1, "id": 7, "ok": true, "count": 512, "end": false, "cursor": {...}, "now": NS}
    {"v": 1, "id": 7, "ok": false, "error": "no_store", "message": "..."}

A page holds at most :data:`PAGE_RECORDS` records and about :data:`PAGE_BYTES`
bytes (always at least one record). ``end`` says the query is answered; else
the client asks again with the cursor. With ``sync``, the last page comes only
once the store holds everything the broker had received when the first
request arrived (or after :data:`SYNC_SECONDS`), so a subscriber whose live
subscription was in place before it asked misses nothing between history and
live.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = [
    "DEFAULT_PORT",
    "ERRORS",
    "MAX_FILTER_NAMES",
    "MAX_REQUEST",
    "PAGE_BYTES",
    "PAGE_RECORDS",
    "SYNC_SECONDS",
    "VERSION",
    "pack_times",
    "unpack_times",
]

VERSION = 1
#: The port a broker's history endpoint listens on by convention (the egress is 5558).
DEFAULT_PORT = 5559
#: Largest request frame the broker accepts (ZMQ_MAXMSGSIZE: a larger one resets the connection).
MAX_REQUEST = 64 * 1024
#: Most logger prefixes, and most services, in one request.
MAX_FILTER_NAMES = 256
#: Most records in one page.
PAGE_RECORDS = 1000
#: A page stops growing once it holds this many bytes of records.
PAGE_BYTES = 512 * 1024
#: Longest a ``sync`` query waits for the store to take what the broker had received.
SYNC_SECONDS = 2.0

#: The ``error`` codes of a refused request, and what each means.
ERRORS: dict[str, str] = {
    "malformed": "the request is not one JSON object (or is not one frame)",
    "version": "the request's version is not one this broker speaks",
    "invalid": "a field of the request has a wrong type or value",
    "too_many": "too many logger prefixes or services",
    "no_store": "the broker keeps no records",
    "unavailable": "the broker's store cannot be read now",
}

_TIME = struct.Struct("<q")


def pack_times(times: list[int]) -> bytes:
    """The ``times`` frame of a reply."""
    return struct.pack(f"<{len(times)}q", *times)


def unpack_times(blob: bytes, count: int) -> tuple[int, ...]:
    """The stored times of a reply's ``count`` records; ValueError if the frame does not hold them."""
    if len(blob) != count * _TIME.size:
        raise ValueError(f"the times frame holds {len(blob)} bytes for {count} records")
    return struct.unpack(f"<{count}q", blob)


def is_int(value: Any, low: int = 0, high: int = 2**63 - 1) -> bool:
    """Whether ``value`` is a whole number (not a bool) in [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
