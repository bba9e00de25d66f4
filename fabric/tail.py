"""``logfabric tail``: live remote records on a terminal, as text or JSON lines.

Exit codes: 0 when the tail ends normally (``--count`` reached, Ctrl-C, no
record for ``--timeout`` seconds, or the reader of stdout went away); 2 for a
bad argument, endpoint, level, pattern or configuration file (one line on
stderr, no traceback).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import string
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import orjson

from fabric._intake import GapNotice
from fabric._subscriber_args import add_subscriber_arguments, open_subscription
from fabric.codec import FABRIC_ATTRIBUTES
from fabric.config import ConfigError, apply_logging_config, load_logging_config
from fabric.listener import _route

__all__ = ["SafeFormatter", "main", "to_json"]

DEFAULT_FORMAT = "%(asctime)s %(service)s %(levelname)-8s %(name)s: %(message)s"

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

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
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


def to_json(record: logging.LogRecord) -> bytes:
    """One JSON object for ``record``: the usual fields, the fabric's, and the extras.

    A gap notice (:class:`fabric.subscribe.GapNotice`) carries ``"notice"`` (its kind);
    a remote extra of that name, or named ``"fallback"``, is written as
    ``"extra_notice"`` (``"extra_fallback"``), so no remote record can pass for
    a notice or a fallback line. Raises ``TypeError`` for an extra orjson
    cannot write (nested more than 254 levels deep).
    """
    return orjson.dumps(_json_doc(record, record.__dict__.items()), default=repr, option=orjson.OPT_NON_STR_KEYS)


def _json_doc(record: logging.LogRecord, extras: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    d = record.__dict__
    doc: dict[str, Any] = {
        "name": record.name,
        "levelname": record.levelname,
        "levelno": record.levelno,
        "message": record.getMessage(),
        "created": record.created,
        "service": d.get("service"),
        "host": d.get("host"),
        "process": record.process,
        "processName": record.processName,
        "thread": record.thread,
        "threadName": record.threadName,
        "pathname": record.pathname,
        "lineno": record.lineno,
        "funcName": record.funcName,
        "exc_text": record.exc_text,
        "stack_info": record.stack_info,
    }
    for key in FABRIC_ATTRIBUTES - {"service", "host"}:
        doc[key] = d.get(key)
    if isinstance(record, GapNotice):
        doc["notice"] = d.get("kind", "gap")
    for key, value in extras:
        if key in _RESERVED:
            key = f"extra_{key}"
        if key not in _STANDARD and key not in doc:
            doc[key] = value
    return doc


# Keys of a JSON line that only the tail itself writes.
_RESERVED = frozenset({"notice", "fallback"})


def _fallback_json(record: logging.LogRecord, error: BaseException) -> bytes:
    """A JSON line for a record :func:`to_json` could not write: each extra orjson cannot write is replaced."""
    extras = []
    for key, value in record.__dict__.items():
        if key in _STANDARD:
            continue
        try:
            orjson.dumps([value], default=repr, option=orjson.OPT_NON_STR_KEYS)
        except Exception as exc:  # nested too deep, or a repr() that fails
            value = f"<not shown: {type(exc).__name__}: {exc}>"[:200]
        extras.append((key, value))
    try:
        doc = _json_doc(record, extras)
    except Exception:  # a record broken beyond its extras: keep what is plainly text
        doc = {k: v for k in ("name", "levelname", "msg") if isinstance(v := record.__dict__.get(k), str)}
    doc["fallback"] = f"logfabric tail could not write this record as is: {type(error).__name__}: {error}"[:300]
    try:
        return orjson.dumps(doc, default=repr, option=orjson.OPT_NON_STR_KEYS)
    except Exception:
        return orjson.dumps({"fallback": doc["fallback"]})


class _Printer:
    """Writes each record to stdout as a text or JSON line; one that cannot be written as is
    comes out in a fallback form, marked so in its line, and is counted in :attr:`fallbacks`.
    """

    def __init__(self, out: TextIO, json_lines: bool, formatter: SafeFormatter) -> None:
        self.out = out
        self.json_lines = json_lines
        self.formatter = formatter
        self._json_fallbacks = 0

    @property
    def fallbacks(self) -> int:
        """Records shown in a fallback form."""
        return self._json_fallbacks + self.formatter.fallbacks

    def show(self, record: logging.LogRecord) -> None:
        if not self.json_lines:
            self.out.write(self.formatter.format(record) + "\n")
            self.out.flush()
            return
        try:
            line = to_json(record)
        except Exception as exc:  # an extra nested deeper than orjson writes
            self._json_fallbacks += 1
            line = _fallback_json(record, exc)
        self.out.buffer.write(line + b"\n")
        self.out.buffer.flush()


def build_parser() -> argparse.ArgumentParser:
    """The tail's flags."""
    p = argparse.ArgumentParser(
        prog="logfabric tail",
        description="Print live records from brokers or producers. "
        "Exit status: 0 when it ends normally (--count, Ctrl-C, --timeout), 2 on a bad argument or config.",
    )
    add_subscriber_arguments(p)
    p.add_argument(
        "-f", "--format", metavar="FMT", help=f"a logging format string (default {DEFAULT_FORMAT.replace('%', '%%')!r})"
    )
    p.add_argument("--style", choices=("%", "{", "$"), default="%", help="format string style (default %%)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="text lines or JSON lines")
    p.add_argument("--utc", action="store_true", help="timestamps in UTC")
    p.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour levels (NO_COLOR honoured)"
    )
    p.add_argument("--config", metavar="FILE", help="dictConfig (JSON, YAML) or INI file: records go to its handlers")
    return p


def _use_color(choice: str, stream: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``logfabric tail``; return the exit status."""
    args = build_parser().parse_args(argv)
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):
        # A terminal or pipe that cannot encode a character (PYTHONIOENCODING=ascii,
        # a Latin-1 locale) shows it as an escape instead of ending the tail.
        out.reconfigure(errors="backslashreplace")
    try:
        config = load_logging_config(args.config) if args.config else None
        if config is not None:
            apply_logging_config(config)
        formatter = SafeFormatter(args.format or DEFAULT_FORMAT, style=args.style, color=_use_color(args.color, out))
        records, pattern = open_subscription(args)  # opened last: nothing to close if an earlier check fails
    except (ValueError, ConfigError) as exc:
        return _fail(str(exc))
    if args.utc:
        formatter.converter = time.gmtime
    printer = _Printer(out, args.output == "json", formatter)
    shown = 0
    try:
        for record in records:
            notice = isinstance(record, GapNotice)  # made here, never by a remote peer
            if pattern is not None and not notice and not pattern.search(record.getMessage()):
                continue
            if config is not None:
                _route(record.name).handle(record)
            else:
                printer.show(record)
            if not notice:
                shown += 1
                if args.count is not None and shown >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    finally:
        records.close()
        if config is not None:
            logging.shutdown()
    s = records.stats
    print(
        f"logfabric tail: received {s['received']}, shown {shown}, gaps {s['gaps']}, malformed {s['malformed']}, "
        f"fallback {printer.fallbacks}",
        file=sys.stderr,
    )
    return 0


def _fail(message: str) -> int:
    print(f"logfabric tail: {message}", file=sys.stderr)
    return 2
