"""The command-line flags that say what a subscriber command receives: endpoints, filter, lifetime, keys.

One definition for every command that subscribes (``logfabric export``, and
the same flags as ``logfabric tail``), so the flags and their meaning cannot
drift apart.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Literal

from fabric import _intake
from fabric.subscribe import Subscription, subscribe

__all__ = ["DEFAULT_ENDPOINT", "add_subscriber_arguments", "open_subscription"]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5558"


def add_subscriber_arguments(p: argparse.ArgumentParser) -> None:
    """Add the endpoint, filter, lifetime, socket and CurveZMQ flags to ``p``."""
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
    p.add_argument("-c", "--count", type=int, metavar="N", help="exit after N records")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="exit after SECONDS without a record")
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


def open_subscription(
    args: argparse.Namespace,
    endpoints: list[str] | None = None,
    mode: Literal["sub", "pull"] | None = None,
) -> tuple[Subscription, re.Pattern[str] | None]:
    """Check the flags and open the subscription they describe; return it and the ``--grep`` pattern.

    ``endpoints`` and ``mode`` override the flags (a pipeline share, say).
    Raises ValueError with a one-line reason for a bad pattern, count, level,
    endpoint or key file.
    """
    try:
        pattern = re.compile(args.grep) if args.grep else None
    except re.error as exc:
        raise ValueError(f"invalid --grep pattern {args.grep!r}: {exc}") from None
    if args.count is not None and args.count < 1:
        raise ValueError("--count must be at least 1")
    records = subscribe(
        endpoints or args.endpoints or [os.environ.get("LOGFABRIC_SUBSCRIBE") or DEFAULT_ENDPOINT],
        level=_intake.resolve_level(args.level),
        loggers=args.logger,
        services=args.service,
        mode=mode or args.mode,
        bind=args.bind,
        timeout=args.timeout,
        curve_server_key=args.curve_server_key,
        curve_client_key=args.curve_client_key,
    )
    return records, pattern
