"""SafeFormatter: received records written as text that cannot forge lines or steer a terminal.

Public as ``fabric.SafeFormatter``; :mod:`fabric.tail`, the command that prints with it,
names it (and :func:`escape`) too, so ``fabric.tail.SafeFormatter`` works as well.
"""

from __future__ import annotations

import logging
import re
import string
from typing import Any

__all__ = ["SafeFormatter", "escape"]

# Never written raw to a terminal: C0 and C1 control characters (and DEL), and
# every Unicode format character and line or paragraph separator (categories
# Cf, Zl, Zp as of Unicode 15.1): bidi overrides, embeddings and isolates
# (U+202A-U+202E, U+2066-U+2069, U+200E/F, U+061C), zero-width characters
# (U+200B-U+200D, U+2060, U+FEFF), U+2028/U+2029, invisible tag characters.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}
_COLORS = {
    "DEBUG": "\x1b[36m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}
_RESET = "\x1b[0m"

# What a line in the fallback layout shows (the default format's fields).
_FALLBACK = ("service", "levelname", "name", "msg")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str) -> str:
    """Make remote text safe for one terminal line: control and format characters become visible escapes."""
    return _CONTROL.sub(_visible, text)


def _field_names(fmt: str, style: logging.PercentStyle) -> frozenset[str]:
    """The record attributes a format string names, for each logging style."""
    if isinstance(style, logging.StrFormatStyle):
        roots = (re.split(r"[.\[]", f)[0] for _, f, _, _ in string.Formatter().parse(fmt) if f)
        return frozenset(roots)
    if isinstance(style, logging.StringTemplateStyle):
        found = (m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(fmt))
        return frozenset(f for f in found if f)
    return frozenset(re.findall(r"%\((\w+)\)", fmt))


def _block(text: str) -> str:
    # Multi-line remote text (a traceback): each line escaped and marked as a
    # continuation, so no line of it can pass for a record of its own.
    return "\n".join("  | " + escape(line) for line in text.splitlines())


class SafeFormatter(logging.Formatter):
    """A Formatter for untrusted records: escapes control characters, marks traceback lines, never raises.

    The record itself is not changed; a shallow copy is formatted. ``color``
    wraps the level name in ANSI colours. A record the format cannot render
    (``%d`` of a field that is missing or None, an extra nested too deep for
    ``str``) comes out in the default layout, marked so in its line, and is
    counted in :attr:`fallbacks`.
    """

    def __init__(self, *args: Any, color: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.color = color
        self.fallbacks = 0
        """Records rendered in the fallback layout because the format failed on them."""
        # Remote records differ in their extras: a field the format names but
        # a record lacks renders as "-" instead of failing the whole line.
        self._wanted = _field_names(self._fmt or "", self._style) - {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        """Format a sanitised copy of ``record`` (in the fallback layout if the format fails on it)."""
        safe = self._sanitised(record)
        try:
            return super().format(safe)
        except Exception as exc:
            self.fallbacks += 1
            return self._fallback(safe, exc)

    def _fallback(self, safe: logging.LogRecord, error: Exception) -> str:
        d = safe.__dict__
        try:
            when = self.formatTime(safe, self.datefmt)
        except Exception:
            when = "-"
        service, levelname, name, message = (d.get(k) if isinstance(d.get(k), str) else "-" for k in _FALLBACK)
        note = escape(f"({type(error).__name__}: {error})"[:300])
        lines = [
            f"{when} {service} {levelname:<8} {name}: {message} "
            f"[logfabric: the format failed on this record {note}; shown in the fallback form]"
        ]
        lines.extend(d[k] for k in ("exc_text", "stack_info") if isinstance(d.get(k), str))
        return "\n".join(lines)

    def _sanitised(self, record: logging.LogRecord) -> logging.LogRecord:
        safe = logging.makeLogRecord({})
        attrs = {k: escape(v) if isinstance(v, str) else v for k, v in record.__dict__.items()}
        attrs["msg"] = escape(record.getMessage())
        attrs["args"] = ()
        attrs["exc_info"] = None
        attrs["exc_text"] = _block(record.exc_text) if record.exc_text else None
        attrs["stack_info"] = _block(record.stack_info) if record.stack_info else None
        if self.color:
            code = _COLORS.get(record.levelname)
            if code:
                attrs["levelname"] = f"{code}{attrs['levelname']}{_RESET}"
        for name in self._wanted - attrs.keys():
            attrs[name] = "-"
        safe.__dict__ = attrs
        return safe

    def formatStack(self, stack_info: str) -> str:
        """Stack text was already escaped and marked in :meth:`format`."""
        return stack_info
