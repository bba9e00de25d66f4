"""A producer that binds its socket and logs at a steady pace, to be attacked by its peers.

Usage::

    python tests/reliability/scripts/bound_producer.py ENDPOINT [--mode pub|push] [--rate R]

Binds a ``ZmqHandler`` (``bind=True``) to ENDPOINT and logs INFO records
``"record %d"`` (``extra={"n": i}``) on logger ``--logger`` at ``--rate``
records per second until a line (or end of file) arrives on stdin. Prints JSON
lines on stdout: ``{"event": "ready", "rss": ...}`` once the socket is bound,
``{"event": "tick", "n": ..., "rss": ..., "stats": {...}}`` every ``--tick``
seconds and ``{"event": "report", ...}`` before it exits 0. ``rss`` is the
resident set size in bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import selectors
import sys
import time
from typing import Any

import fabric


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("endpoint")
    parser.add_argument("--mode", default="pub", choices=["pub", "push"])
    parser.add_argument("--logger", default="rel.bound")
    parser.add_argument("--rate", type=float, default=2000.0, help="records per second")
    parser.add_argument("--tick", type=float, default=0.2, help="seconds between tick lines")
    args = parser.parse_args()

    handler = fabric.ZmqHandler(args.endpoint, mode=args.mode, bind=True, service="bound", linger=0.0)
    log = logging.getLogger(args.logger)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler.wait_ready(0.01)  # opens (binds) the socket; a pub handler has no subscriber yet
    say(event="ready", pid=os.getpid(), rss=rss())

    stdin = selectors.DefaultSelector()
    stdin.register(sys.stdin, selectors.EVENT_READ)
    started = time.monotonic()
    next_tick = started + args.tick
    peak = 0
    n = 0
    while True:
        ahead = started + n / args.rate - time.monotonic()
        if ahead > 0 and stdin.select(ahead):
            break
        log.info("record %d", n, extra={"n": n})
        n += 1
        if time.monotonic() >= next_tick:
            next_tick += args.tick
            now = rss()
            peak = max(peak, now)
            say(event="tick", n=n, rss=now, stats=dict(handler.stats))
            if stdin.select(0):
                break
    say(event="report", n=n, rss=rss(), peak=max(peak, rss()), stats=dict(handler.stats))
    handler.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
