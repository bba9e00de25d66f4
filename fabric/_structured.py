"""Records whose message is not a string: structlog's event dicts, made flat for the wire.

structlog's ``ProcessorFormatter`` recipe (``wrap_for_formatter`` as the last
processor) logs the event dict itself as ``record.msg``, with ``args=()`` and
the extras ``_logger`` and ``_name`` as its marks. :func:`flatten` turns such a
record into a copy the codec encodes like any other: the ``event`` is the
message and the other key-values are extras, as structlog's other recipe
(``render_to_log_kwargs``) makes them. The rule:

* Only a record with both marks and a mapping message with no args is
  structured. Any other message (a plain ``logger.info({"a": 1})``, a dict with
  args) keeps the standard library's meaning: the message is
  ``record.getMessage()`` (the dict's repr) and it gives no extras.
* The marks themselves and keys starting with ``_`` (structlog's private
  ``_record``, ``_from_structlog``, ...) never travel.
* ``exc_info``, ``stack_info`` and ``stacklevel`` are logging arguments, as
  ``render_to_log_kwargs`` treats them: ``exc_info`` (``True``, an exception or
  an ``exc_info`` tuple) gives the record its exception when it has none, a
  ``stack_info`` text its stack; they are not extras.
* A key that is not a string travels as ``str(key)``; a key that would shadow
  a ``LogRecord`` attribute (``name``, ``msg``, ``getMessage``, ...) or is empty
  travels as ``extra_<key>``; names are cut to 256 characters. A name already
  taken (by an extra of the record, or an earlier key) keeps its first value.
* Level and logger stay the record's. Values are encoded as any extra is
  (typed, else JSON, else ``repr``), and capped by the listener's limits.

Anything that goes wrong while reading the mapping leaves the record as it is.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

__all__ = ["MARKS", "flatten"]

#: The extras ``structlog.stdlib.ProcessorFormatter.wrap_for_formatter`` sets.
MARKS = ("_logger", "_name")
_ARGUMENTS = frozenset({"exc_info", "stack_info", "stacklevel"})
_MAX_NAME = 256

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _exc_info(value: object) -> _ExcInfo | None:
    """What ``exc_info=value`` means to structlog: True is the exception being handled."""
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value
    if value is True:
        info = sys.exc_info()
        return info if info[1] is not None else None
    return None


def flatten(record: logging.LogRecord, reserved: frozenset[str], text: Callable[[object], str]) -> logging.LogRecord:
    """Return ``record``, or a flat copy of it when it carries a structlog event dict (see the module).

    ``reserved`` are the names an extra may not take; ``text`` turns any object
    into a string without raising.
    """
    attrs = record.__dict__
    if MARKS[0] not in attrs or MARKS[1] not in attrs:
        return record
    flat = {k: v for k, v in attrs.items() if k not in MARKS}
    event = record.msg
    if isinstance(event, Mapping) and not record.args:
        try:
            _merge(flat, event, reserved, text)
        except Exception:  # a hostile mapping: keep the record as the stdlib sees it
            flat = {k: v for k, v in attrs.items() if k not in MARKS}
    clone: logging.LogRecord = object.__new__(logging.LogRecord)
    clone.__dict__ = flat
    return clone


def _merge(
    flat: dict[str, Any], event: Mapping[Any, Any], reserved: frozenset[str], text: Callable[[object], str]
) -> None:
    """Set the message, the logging arguments and the extras of ``flat`` from ``event``."""
    extras: dict[str, Any] = {}
    for key, value in event.items():
        if key == "event":
            continue
        name = key if type(key) is str else text(key)
        if name in _ARGUMENTS:
            continue
        if name.startswith("_"):
            continue
        if not name or name in reserved:
            name = f"extra_{name}"
        name = name[:_MAX_NAME]
        if name not in flat and name not in extras:
            extras[name] = value
    message = event.get("event", "")
    if not flat.get("exc_info"):
        info = _exc_info(event.get("exc_info"))
        if info is not None:
            flat["exc_info"], flat["exc_text"] = info, None
    stack = event.get("stack_info")
    if not flat.get("stack_info") and isinstance(stack, str):
        flat["stack_info"] = stack
    flat["msg"] = message if type(message) is str else text(message)
    flat["args"] = ()
    flat.update(extras)
