"""``logfabric tail``: remote records on a terminal, as text or JSON lines: stored ones first if asked, then live.

``-n N`` prints the newest N stored records that match, ``--since 10m`` (or an
ISO 8601 time) those stored from then on, ``--until`` bounds them (and ends
after them); then live records follow unless ``--no-follow``.

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
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import orjson

from fabric._intake import GapNotice
from fabric._safe_format import SafeFormatter, escape
from fabric._subscriber_args import add_subscriber_arguments, open_subscription
from fabric.codec import FABRIC_ATTRIBUTES
from fabric.config import ConfigError, apply_logging_config, load_logging_config
from fabric.listener import _route

__all__ = ["SafeFormatter", "escape", "main", "to_json"]

DEFAULT_FORMAT = "%(asctime)s %(service)s %(levelname)-8s %(name)s: %(message)s"

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


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
    except ConfigError as exc:  # a history the brokers cannot give (no store, no history endpoint)
        records.close()
        return _fail(str(exc))
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
