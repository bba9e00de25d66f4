"""The command-line flags that say what a subscriber command receives: endpoints, filter, lifetime, keys.

The flags of every command that subscribes (``logfabric tail`` and
``logfabric export otlp``) are derived from the subscriber options
(:mod:`fabric._subscriber_options`): each option that has flags gives one,
with its help, default and environment variable, and its ``dest`` is the
option's name, so the flags, the library's arguments and the config keys
cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, Literal

from fabric._subscriber_options import BY_NAME, DEFAULT_ENDPOINT, Option, for_target
from fabric.subscribe import Subscription, subscribe

__all__ = ["DEFAULT_ENDPOINT", "add_subscriber_arguments", "open_subscription"]

_ENDPOINTS = BY_NAME["endpoints"]


def _help(option: Option) -> str:
    text = option.help
    if option.cli.get("action") == "append":
        text += " (repeatable)"
    if option is _ENDPOINTS:
        text += f" (default ${option.env} or {DEFAULT_ENDPOINT})"
    elif option.env:
        text += f" (default ${option.env})"
    return text


def add_subscriber_arguments(p: argparse.ArgumentParser) -> None:
    """Add the endpoint, filter, lifetime, socket and CurveZMQ flags to ``p``."""
    for option in for_target("command"):
        keywords: dict[str, Any] = {"help": _help(option), **option.cli}
        if option.kind == "keyword":
            keywords["dest"] = option.name
            action = option.cli.get("action")
            if action == "append":
                keywords["default"] = list(option.default)
            elif action != "store_true":
                keywords["default"] = option.default
        p.add_argument(*option.flags, **keywords)


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
    options = {o.name: getattr(args, o.name) for o in for_target("command") if "subscribe" in o.targets}
    del options["endpoints"]
    if mode is not None:
        options["mode"] = mode
    options["level"] = BY_NAME["level"].convert(options["level"])  # a bad level is reported before the socket opens
    records = subscribe(
        endpoints or args.endpoints or [os.environ.get(_ENDPOINTS.env) or DEFAULT_ENDPOINT],
        **options,
    )
    return records, pattern
