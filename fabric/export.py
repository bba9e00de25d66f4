"""``logfabric export otlp``: subscribe to brokers and export every record to an OpenTelemetry receiver.

The endpoint, filter and key flags are those of ``logfabric tail``
(:mod:`fabric._subscriber_args`). ``--pipeline EP`` takes a share of a broker's
pipeline instead (a connecting PULL), so several exporters split the load.
Records go to ``--to URL`` over OTLP/HTTP with protobuf (the default) or
OTLP/gRPC (``--protocol grpc``) through :class:`fabric.otlp.OtlpHandler`.

A stats line (``exported``, ``retried``, ``dropped``, ...) goes to stderr every
``--stats-interval`` seconds and at exit. SIGTERM and Ctrl-C stop receiving,
send what is queued within ``--flush-timeout`` seconds, and exit 0; a bad
argument exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from fabric._intake import GapNotice
from fabric._subscriber_args import add_subscriber_arguments, open_subscription
from fabric.config import ConfigError

__all__ = ["build_parser", "main"]

_DEFAULT_TO = {"http": "http://localhost:4318/v1/logs", "grpc": "http://localhost:4317"}


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``logfabric export otlp``."""
    p = argparse.ArgumentParser(
        prog="logfabric export otlp",
        description="Export live records to an OpenTelemetry receiver (a Collector, or any OTLP backend). "
        "Exit status: 0 when it ends normally (SIGTERM, Ctrl-C, --count, --timeout), 2 on a bad argument.",
    )
    p.add_argument("target", choices=("otlp",), help="the export format (otlp)")
    add_subscriber_arguments(p)
    p.add_argument(
        "--pipeline",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="take a share of a broker's --pipeline (repeatable) instead of subscribing to ENDPOINTs",
    )
    p.add_argument("--to", metavar="URL", help="the OTLP receiver (default http://localhost:4318/v1/logs, gRPC :4317)")
    p.add_argument("--protocol", choices=("http", "grpc"), default="http", help="http (protobuf, default) or grpc")
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a header (HTTP) or metadata entry (gRPC) sent with every request, e.g. 'Authorization=Bearer T'",
    )
    p.add_argument("--batch-size", type=int, default=512, metavar="N", help="records per request at most (512)")
    p.add_argument("--queue-size", type=int, default=20_000, metavar="N", help="records waiting at most (20000)")
    p.add_argument("--request-timeout", type=float, default=10.0, metavar="SECONDS", help="per request (10)")
    p.add_argument(
        "--flush-timeout", type=float, default=5.0, metavar="SECONDS", help="at exit, to send what is queued (5)"
    )
    p.add_argument(
        "--stats-interval", type=float, default=60.0, metavar="SECONDS", help="stats line period; 0: only at exit (60)"
    )
    return p


class _Terminate(Exception):
    """SIGTERM arrived while the exporter waited for records."""


def _headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--header needs KEY=VALUE, got {pair!r}")
        headers[key.strip()] = value.strip()
    return headers


def _stats_line(received: int, otlp: Any, intake: dict[str, int]) -> str:
    s = otlp.stats
    return (
        f"logfabric export: received {received}, exported {s['exported']}, retried {s['retried']}, "
        f"dropped {s['dropped']}, rejected {s['rejected']}, queued {s['queued']}, gaps {intake['gaps']}, "
        f"malformed {intake['malformed']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``logfabric export``; return the exit status."""
    args = build_parser().parse_intermixed_args(argv)  # endpoints may come after the flags
    try:
        from fabric.otlp import OtlpHandler
    except ImportError as exc:
        return _fail(f"OTLP export needs opentelemetry-proto: pip install 'logfabric[otlp]' ({exc})")
    if args.pipeline and (args.endpoints or args.bind or args.mode != "sub"):
        return _fail("--pipeline connects a PULL to each broker pipeline: give no ENDPOINT, --mode or --bind with it")
    if args.stats_interval < 0:
        return _fail("--stats-interval must not be negative")
    try:
        otlp = OtlpHandler(
            args.to or _DEFAULT_TO[args.protocol],
            protocol=args.protocol,
            headers=_headers(args.header),
            timeout=args.request_timeout,
            queue_size=args.queue_size,
            batch_size=args.batch_size,
            flush_timeout=args.flush_timeout,
        )
    except ValueError as exc:
        return _fail(str(exc))
    try:
        records, pattern = open_subscription(args, args.pipeline or None, "pull" if args.pipeline else None)
    except (ValueError, ConfigError) as exc:
        otlp.close()
        return _fail(str(exc))
    state = {"busy": False, "stop": False}

    def on_term(signum: int, frame: FrameType | None) -> None:
        if state["busy"]:  # inside the handler: stop right after it
            state["stop"] = True
        else:
            raise _Terminate

    previous = signal.signal(signal.SIGTERM, on_term)
    received = 0
    done = threading.Event()
    reporter = None
    if args.stats_interval > 0:

        def report() -> None:
            while not done.wait(args.stats_interval):
                print(_stats_line(received, otlp, records.stats), file=sys.stderr, flush=True)

        reporter = threading.Thread(target=report, name="logfabric-export-stats", daemon=True)
        reporter.start()
    try:
        for record in records:
            notice = isinstance(record, GapNotice)  # made here, never by a remote peer
            if pattern is not None and not notice and not pattern.search(record.getMessage()):
                continue
            state["busy"] = True
            try:
                otlp.handle(record)
            finally:
                state["busy"] = False
            if not notice:
                received += 1
            if state["stop"] or (args.count is not None and received >= args.count):
                break
    except (_Terminate, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the flush short
        records.close()
        otlp.close()
        done.set()
        if reporter is not None:
            reporter.join(1.0)
        signal.signal(signal.SIGTERM, previous)
    print(_stats_line(received, otlp, records.stats), file=sys.stderr, flush=True)
    return 0


def _fail(message: str) -> int:
    print(f"logfabric export: {message}", file=sys.stderr)
    return 2
