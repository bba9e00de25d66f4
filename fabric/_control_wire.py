"""The level-control protocol, version 1: what producers, operators and a broker's control endpoint say.

The broker's control socket is a ROUTER (``--control``, conventionally port
:data:`DEFAULT_PORT`); producers (:mod:`fabric._control`) and ``logfabric
level`` (:mod:`fabric.level`) connect DEALERs. Every message is one frame, a
JSON object (orjson) of at most :data:`MAX_MESSAGE` bytes with ``"v": 1`` and
an ``"op"``::

    producer -> broker  {"op": "hello", "service": S, "host": H, "pid": P, "producer": "16 hex",
                         "active": [[logger, level, seconds left], ...]}
                        {"op": "applied", "id": N, "ok": true}             (or "ok": false, "error": "...")
    broker -> producer  {"op": "set", "id": N, "loggers": [...], "level": L, "ttl": SECONDS, "by": WHO}
                        {"op": "reset", "id": N, "by": WHO}
                        {"op": "state", "changes": [{"id", "loggers", "level", "ttl", "by"}, ...]}
    operator -> broker  {"op": "set", "service": S, "level": L, "loggers": [...], "duration": SECONDS}
                        {"op": "reset", "service": S}    {"op": "list", "service": S or null}
    broker -> operator  {"ok": true, ...} or {"ok": false, "error": CODE, "message": "what to do"}

A change carries its time to live, not a wall-clock time: each producer
reverts on its own monotonic clock, so neither a broker that goes away nor
clocks that disagree can leave a level changed. The root logger is ``""``.
Every bound here is checked by whoever receives a message.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

__all__ = [
    "DEFAULT_DURATION",
    "DEFAULT_PORT",
    "DEFAULT_WAIT",
    "ENV",
    "HELLO_EVERY",
    "MAX_DURATION",
    "MAX_LEVEL",
    "MAX_LOGGERS",
    "MAX_MESSAGE",
    "MAX_NAME",
    "MAX_WAIT",
    "MIN_DURATION",
    "VERSION",
    "Invalid",
    "check_level",
    "check_loggers",
    "check_name",
    "duration_text",
    "field",
    "level_name",
    "parse_duration",
    "parse_level",
]

VERSION = 1
#: The control endpoint's conventional port (a producer's ``control=True`` connects to it on its broker's host).
DEFAULT_PORT = 5560
#: The environment variable a producer reads when ``control`` is not given: ``1``, or a control endpoint.
ENV = "LOGFABRIC_CONTROL"
#: Largest message anyone accepts (libzmq drops a larger frame and resets that connection).
MAX_MESSAGE = 64 * 1024
#: Longest logger or service name in a change.
MAX_NAME = 256
#: Most loggers changed at once in one service (one change, and all changes in force together).
MAX_LOGGERS = 64
#: How long a change lasts unless told, and at most (seconds).
DEFAULT_DURATION = 15 * 60.0
MAX_DURATION = 24 * 3600.0
MIN_DURATION = 1.0
#: Highest level number a change may set (CRITICAL); the lowest is 0 (NOTSET: inherit the parent's).
MAX_LEVEL = logging.CRITICAL
#: Seconds between a producer's hellos (the broker forgets a producer after three missed).
HELLO_EVERY = 5.0
#: Seconds the broker waits for producers to confirm a change before it answers the operator.
DEFAULT_WAIT = 3.0
MAX_WAIT = 10.0

_NAMES = {"CRITICAL": 50, "FATAL": 50, "ERROR": 40, "WARNING": 30, "WARN": 30, "INFO": 20, "DEBUG": 10, "NOTSET": 0}
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]*")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


class Invalid(ValueError):
    """A value that cannot be part of a change: ``code`` (an error code) and a message saying what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_level(value: object) -> int:
    """A level name (``DEBUG``) or number (0 to 50) as its number; :class:`Invalid` otherwise."""
    if isinstance(value, str):
        text = value.strip()
        if text.upper() in _NAMES:
            return _NAMES[text.upper()]
        if text.isdigit() and len(text) <= 3:
            value = int(text)
    return check_level(value)


def check_level(value: object) -> int:
    """``value`` if it is a whole level number from 0 to :data:`MAX_LEVEL`; :class:`Invalid` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LEVEL:
        shown = repr(value)[:40]
        raise Invalid(
            "invalid",
            f"unknown level {shown}: use DEBUG, INFO, WARNING, ERROR, CRITICAL or a number from 0 to {MAX_LEVEL}",
        )
    return value


def level_name(level: int) -> str:
    """``DEBUG`` for 10, ``Level 15`` for 15."""
    return logging.getLevelName(level)


def parse_duration(value: object) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1h30m`` as seconds, from 1 s to 24 h; :class:`Invalid` otherwise."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and len(value) <= 32:
        text = value.strip().lower()
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text)
        if text and parts and any(parts.groups()):
            hours, minutes, secs = (float(g) if g else 0.0 for g in parts.groups())
            seconds = hours * 3600 + minutes * 60 + secs
    if seconds is None or not math.isfinite(seconds):
        raise Invalid("invalid", f"cannot read the duration {str(value)[:40]!r}: write it as 90s, 15m or 2h")
    if not MIN_DURATION <= seconds <= MAX_DURATION:
        raise Invalid(
            "invalid",
            f"a change lasts from 1 second to 24 hours, not {duration_text(seconds)}: "
            "ask again with a shorter --for (run it again later to extend it)",
        )
    return seconds


def duration_text(seconds: float) -> str:
    """``2h30m``, ``15m``, ``45s``: a duration as an operator writes it."""
    if not math.isfinite(seconds) or seconds > 10 * MAX_DURATION:
        return f"{seconds:.3g}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or f"{seconds:g}s"


def check_name(value: object, what: str) -> str:
    """A logger or service name: a string of at most :data:`MAX_NAME` printable characters."""
    if not isinstance(value, str):
        raise Invalid("invalid", f"{what} must be a string")
    if len(value) > MAX_NAME:
        raise Invalid("invalid", f"{what} is {len(value)} characters long: at most {MAX_NAME}")
    if not _PRINTABLE.fullmatch(value):
        raise Invalid("invalid", f"{what} {value[:40]!r} holds control characters")
    return value


def check_loggers(value: object) -> tuple[str, ...]:
    """A list of distinct logger names (``""``: the root logger), at most :data:`MAX_LOGGERS`."""
    if not isinstance(value, list):
        raise Invalid("invalid", "loggers must be a list of logger names")
    if len(value) > MAX_LOGGERS:
        raise Invalid(
            "too_many", f"{len(value)} loggers in one change: at most {MAX_LOGGERS}; change a common parent instead"
        )
    names = tuple(dict.fromkeys(check_name(v, "a logger name") for v in value))
    return names or ("",)


def field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``doc[key]`` if it has type ``kind``; :class:`Invalid` naming ``what`` otherwise."""
    value = doc.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise Invalid("invalid", f"{key} must be {what}")
    return value
