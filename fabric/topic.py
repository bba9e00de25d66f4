"""The topic grammar: how a record's topic is built and how filters subscribe.

A topic is the bytes a SUB socket matches by prefix, so filtering happens inside
libzmq (and, through a broker, upstream at the producer) instead of in Python::

    topic = BUCKET LOGGER NUL SERVICE

``BUCKET`` is one ASCII digit, ``min(levelno // 10, 9)`` (``0`` for negative
levels); ``LOGGER`` is ``record.name``; ``SERVICE`` is the producer's service
name. NUL bytes inside a name are replaced by ``?`` so the terminator stays
unambiguous, and a lone surrogate is written as its backslash escape, the way
the codec writes it into the payload, so the topic always follows from the
record. A topic is at most :data:`MAX_TOPIC` bytes. See ``docs/topics.md`` for
the full grammar and examples.

A message is one frame, ``topic NUL payload``. This module is the one place
that knows that framing: a producer puts :func:`lead` (``topic NUL``, made once
per topic) before each payload, and a receiver splits a frame with
:func:`split_message`, which refuses a frame whose topic ends past
:data:`MAX_TOPIC` bytes.

A filter subscribes to the cross product of:

* every bucket that can hold a level ``>= level`` (exact filtering of levels that
  share a bucket, such as 25 versus 20, is finished in the listener);
* for each logger prefix ``p``: ``p NUL`` (the logger itself) and ``p .`` (its
  descendants), so ``app.db`` matches ``app.db`` and ``app.db.pool`` but not
  ``app.dbx``;
* for each service ``s``, only where the logger is matched exactly: ``p NUL s NUL``
  would need a trailing terminator the topic does not have, so services are
  matched as ``p NUL s`` (a prefix) and finished exactly in the listener.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "MAX_TOPIC",
    "bucket",
    "join_message",
    "lead",
    "level_buckets",
    "make_topic",
    "matches",
    "split_message",
    "subscriptions",
]

_DIGITS = b"0123456789"
_BUCKETS = tuple(bytes([_DIGITS[min(n // 10, 9)]]) for n in range(100))

#: The longest topic, in bytes, that receivers accept: a bucket byte, a NUL and
#: 4,094 bytes of logger and service names together. A subscription is a topic
#: prefix, so none needs more (a subscription message is one flag byte more).
MAX_TOPIC = 4096
# split_message's search bound: a topic of MAX_TOPIC bytes puts its terminating NUL at offset MAX_TOPIC.
_BOUND = MAX_TOPIC + 1


def bucket(levelno: int) -> bytes:
    """Return the one-byte level bucket of ``levelno``."""
    if 0 <= levelno < 100:
        return _BUCKETS[levelno]
    return b"0" if levelno < 0 else b"9"


def _clean(name: str) -> bytes:
    # backslashreplace, as the codec's scrubbing does: the topic of a record
    # whose name holds a lone surrogate then matches the name in its payload.
    return name.replace("\x00", "?").encode("utf-8", "backslashreplace")


def make_topic(levelno: int, name: str, service: str) -> bytes:
    """Build the topic bytes for one record."""
    return b"%s%s\x00%s" % (bucket(levelno), _clean(name), _clean(service))


def lead(topic: bytes) -> bytes:
    """Return what comes before the payload in a message of ``topic``: ``topic NUL``."""
    return topic + b"\x00"


def join_message(topic: bytes, payload: bytes) -> bytes:
    """Build the one-frame message ``topic NUL payload`` that producers send."""
    return topic + b"\x00" + payload


def split_message(frame: bytes) -> tuple[bytes, bytes]:
    """Split a one-frame message into ``(topic, payload)``; ValueError, saying why, if it is not one.

    A topic holds exactly one NUL (between logger and service; NULs inside the
    names are replaced), so the payload starts after the second NUL, which must
    come within the first ``MAX_TOPIC + 1`` bytes: a frame without it (empty, no
    NUL, one NUL, or a topic over :data:`MAX_TOPIC` bytes) is malformed. The
    search stops at that bound, so a frame of megabytes costs no more to refuse.
    """
    # No first NUL (-1) makes the second search cover the bound, which then holds none;
    # a first NUL at the bound leaves the second search an empty range.
    end = frame.find(b"\x00", frame.find(b"\x00", 0, _BOUND) + 1, _BOUND)
    if end < 0:
        raise ValueError(_not_a_message(frame))
    return frame[:end], frame[end + 1 :]


def _not_a_message(frame: bytes) -> str:
    """Why :func:`split_message` refused ``frame`` (it looks no further than the bound either)."""
    if not frame:
        why = ": an empty frame"
    elif len(frame) >= _BOUND:
        why = f" in the first {_BOUND} bytes: a topic over {MAX_TOPIC} bytes, or none"
    elif b"\x00" in frame:
        why = ": one NUL (the topic's own) in the frame"
    else:
        why = ": no NUL in the frame"
    return f"no topic delimiter{why}; expected one frame, topic NUL payload, with a topic of at most {MAX_TOPIC} bytes"


def level_buckets(level: int | None) -> list[bytes]:
    """Return the buckets that may hold records at ``level`` or above."""
    if level is None or level <= 0:
        return [bytes([d]) for d in _DIGITS]
    first = min(level // 10, 9)
    return [bytes([d]) for d in _DIGITS[first:]]


def subscriptions(
    level: int | None = None,
    loggers: Iterable[str] = (),
    services: Iterable[str] = (),
) -> list[bytes]:
    """Return the SUB prefixes that select ``level``, ``loggers`` and ``services``.

    The result is a superset of what matches: :func:`matches` finishes the job.
    Raises ValueError for a prefix longer than :data:`MAX_TOPIC` (it could
    never match, and brokers refuse such subscriptions).
    """
    buckets = level_buckets(level)
    loggers = [name for name in loggers]
    services = [s for s in services]
    if not loggers or "" in loggers:
        # No logger filter: only the level can be expressed as a prefix.
        if level is None or level <= 0:
            return [b""]
        return buckets
    prefixes: list[bytes] = []
    for b in buckets:
        for name in loggers:
            stem = b + _clean(name)
            if services:
                prefixes.extend(stem + b"\x00" + _clean(s) for s in services)
            else:
                prefixes.append(stem + b"\x00")
            prefixes.append(stem + b".")
    for prefix in prefixes:
        if len(prefix) > MAX_TOPIC:
            raise ValueError(
                f"filter too long: the subscription {prefix[:40]!r}... is {len(prefix)} bytes, and a topic "
                f"(level bucket, logger, NUL, service) is at most {MAX_TOPIC} bytes; "
                "use shorter logger or service names"
            )
    return prefixes


def matches(
    levelno: int,
    name: str,
    service: str,
    level: int | None = None,
    loggers: Iterable[str] = (),
    services: Iterable[str] = (),
) -> bool:
    """Tell whether a record passes the filter exactly (the listener's check)."""
    if level is not None and levelno < level:
        return False
    if services and service not in services:
        return False
    if loggers:
        return any(prefix == "" or name == prefix or name.startswith(prefix + ".") for prefix in loggers)
    return True
