"""``logfabric tail``: live remote records on a terminal, as text or JSON lines.

Exit codes: 0 when the tail ends normally (``--count`` reached, Ctrl-C, no
record for ``--timeout`` seconds, or the reader of stdout went away); 2 for a
bad argument, endpoint, level, pattern or configuration file (one line on
stderr, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import string
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from fabric import _intake
from fabric.codec import FABRIC_ATTRIBUTES
from fabric.config import ConfigError, apply_logging_config, load_logging_config
from fabric.listener import _route
from fabric.subscribe import subscribe

__all__ = ["SafeFormatter", "main", "to_json"]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5558"
DEFAULT_FORMAT = "%(asctime)s %(service)s %(levelname)-8s %(name)s: %(message)s"

# C0 and C1 control characters (and DEL): never written raw to a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
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


def escape(text: str) -> str:
    """Make remote text safe for one terminal line: control characters become visible escapes."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


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
    """A Formatter for untrusted records: escapes control characters, marks traceback lines.

    The record itself is not changed; a shallow copy is formatted. ``color``
    wraps the level name in ANSI colours.
    """

    def __init__(self, *args: Any, color: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.color = color
        # Remote records differ in their extras: a field the format names but
        # a record lacks renders as "-" instead of failing the whole line.
        self._wanted = _field_names(self._fmt or "", self._style) - {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        """Format a sanitised copy of ``record``."""
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
        return super().format(safe)

    def formatStack(self, stack_info: str) -> str:
        """Stack text was already escaped and marked in :meth:`format`."""
        return stack_info


def to_json(record: logging.LogRecord) -> bytes:
    """One JSON object for ``record``: the usual fields, the fabric's, and the extras."""
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
    for key, value in d.items():
        if key not in _STANDARD and key not in doc:
            doc[key] = value
    return orjson.dumps(doc, default=repr, option=orjson.OPT_NON_STR_KEYS)


def build_parser() -> argparse.ArgumentParser:
    """The tail's flags."""
    p = argparse.ArgumentParser(
        prog="logfabric tail",
        description="Print live records from brokers or producers. "
        "Exit status: 0 when it ends normally (--count, Ctrl-C, --timeout), 2 on a bad argument or config.",
    )
    p.add_argument(
        "endpoints",
        nargs="*",
        metavar="ENDPOINT",
        help=f"where to subscribe (default $LOGFABRIC_SUBSCRIBE or {DEFAULT_ENDPOINT})",
    )
    p.add_argument("-l", "--logger", action="append", default=[], metavar="PREFIX", help="logger prefix (repeatable)")
    p.add_argument("--level", help="minimum level, a name or a number")
    p.add_argument("-s", "--service", action="append", default=[], metavar="NAME", help="service name (repeatable)")
    p.add_argument("-g", "--grep", metavar="REGEX", help="only records whose message matches")
    p.add_argument(
        "-f", "--format", metavar="FMT", help=f"a logging format string (default {DEFAULT_FORMAT.replace('%', '%%')!r})"
    )
    p.add_argument("--style", choices=("%", "{", "$"), default="%", help="format string style (default %%)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="text lines or JSON lines")
    p.add_argument("--utc", action="store_true", help="timestamps in UTC")
    p.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour levels (NO_COLOR honoured)"
    )
    p.add_argument("-c", "--count", type=int, metavar="N", help="exit after N records")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="exit after SECONDS without a record")
    p.add_argument("--config", metavar="FILE", help="dictConfig (JSON, YAML) or INI file: records go to its handlers")
    p.add_argument("--mode", choices=("sub", "pull"), default="sub", help="sub (a broker's egress) or pull")
    p.add_argument("--bind", action="store_true", help="bind the endpoints instead of connecting")
    p.add_argument(
        "--curve-server-key",
        metavar="FILE",
        help="the broker's public key file, for CurveZMQ (default $LOGFABRIC_CURVE_SERVER_KEY)",
    )
    p.add_argument(
        "--curve-client-key",
        metavar="FILE",
        help="your secret key file (NAME.key_secret), for CurveZMQ (default $LOGFABRIC_CURVE_CLIENT_KEY)",
    )
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
    endpoints = args.endpoints or [os.environ.get("LOGFABRIC_SUBSCRIBE") or DEFAULT_ENDPOINT]
    try:
        pattern = re.compile(args.grep) if args.grep else None
    except re.error as exc:
        return _fail(f"invalid --grep pattern {args.grep!r}: {exc}")
    if args.count is not None and args.count < 1:
        return _fail("--count must be at least 1")
    try:
        level = _intake.resolve_level(args.level)
        config = load_logging_config(args.config) if args.config else None
        if config is not None:
            apply_logging_config(config)
        formatter = SafeFormatter(args.format or DEFAULT_FORMAT, style=args.style, color=_use_color(args.color, out))
        records = subscribe(  # opened last: nothing to close if an earlier check fails
            endpoints,
            level=level,
            loggers=args.logger,
            services=args.service,
            mode=args.mode,
            bind=args.bind,
            timeout=args.timeout,
            curve_server_key=args.curve_server_key,
            curve_client_key=args.curve_client_key,
        )
    except (ValueError, ConfigError) as exc:
        return _fail(str(exc))
    if args.utc:
        formatter.converter = time.gmtime
    shown = 0
    try:
        for record in records:
            gap = record.name == _intake.GAP_LOGGER
            if pattern is not None and not gap and not pattern.search(record.getMessage()):
                continue
            if config is not None:
                _route(record.name).handle(record)
            elif args.output == "json":
                out.buffer.write(to_json(record) + b"\n")
                out.buffer.flush()
            else:
                out.write(formatter.format(record) + "\n")
                out.flush()
            if not gap:
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
        f"logfabric tail: received {s['received']}, shown {shown}, gaps {s['gaps']}, malformed {s['malformed']}",
        file=sys.stderr,
    )
    return 0


def _fail(message: str) -> int:
    print(f"logfabric tail: {message}", file=sys.stderr)
    return 2
