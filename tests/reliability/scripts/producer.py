"""A producer process for the reliability suite.

Usage::

    python tests/reliability/scripts/producer.py ENDPOINT COUNT [options]

Logs ``COUNT`` INFO records ``"record %d"`` (``extra={"n": i}``) on logger
``--logger``, optionally paced at ``--rate`` records per second. Prints JSON
lines on stdout: ``{"event": "start", ...}`` before the first record,
``{"event": "progress", "n": N}`` every ``--progress`` records, socket monitor
events with ``--monitor`` (``{"event": "monitor", "kind": ..., "t": ...}``) and
``{"event": "report", ...}`` after the last record, with the handler's stats,
the longest pause between two logging calls and the wall-clock time just
before the process ends as ``--end`` says. With ``--then N`` it prints
``{"event": "waiting"}`` after the first ``COUNT`` records, waits for the file
``--then-wait-file`` and logs ``N`` more records on the same logger.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

import fabric

_EVENTS = {
    int(zmq.EVENT_CONNECTED): "connected",
    int(zmq.EVENT_DISCONNECTED): "disconnected",
    int(zmq.EVENT_HANDSHAKE_SUCCEEDED): "handshake",
}


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("endpoint")
    parser.add_argument("count", type=int)
    parser.add_argument("--mode", default="push", choices=["push", "pub"])
    parser.add_argument("--codec", default="protobuf", choices=["protobuf", "json"])
    parser.add_argument("--service", default="reliability")
    parser.add_argument("--logger", default="rel.load")
    parser.add_argument("--linger", type=float, default=1.0)
    parser.add_argument("--send-timeout", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=0.0, help="records per second; 0: as fast as possible")
    parser.add_argument("--pad", type=int, default=0, help="characters appended to each message")
    parser.add_argument("--wait-ready", type=float, default=0.0, help="pub: wait this long for a subscriber")
    parser.add_argument("--settle", type=float, default=0.0, help="seconds to sleep after readiness")
    parser.add_argument("--progress", type=int, default=0, help="print a progress line every N records")
    parser.add_argument("--monitor", action="store_true", help="report the handler socket's connection events")
    parser.add_argument("--then", type=int, default=0, help="records to log after --then-wait-file appears")
    parser.add_argument("--then-wait-file", default=None, help="wait (at most 60 s) for this file before --then")
    parser.add_argument("--end", default="exit", choices=["exit", "close", "hard"])
    args = parser.parse_args()

    handler = fabric.ZmqHandler(
        args.endpoint,
        mode=args.mode,
        codec=args.codec,
        service=args.service,
        linger=args.linger,
        send_timeout=args.send_timeout,
    )
    log = logging.getLogger(args.logger)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    monitor: zmq.Socket[bytes] | None = None
    if args.wait_ready or args.monitor:
        # opens the socket (push: at once); pub waits for the first subscription
        ready = handler.wait_ready(args.wait_ready or 0.01)
        if args.wait_ready and not ready:
            print("no subscriber arrived", file=sys.stderr, flush=True)
            sys.exit(3)
    if args.monitor:
        sock = handler._sock  # the socket the handler opened in this process
        assert sock is not None
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    if args.settle:
        time.sleep(args.settle)

    def poll_monitor() -> None:
        while monitor is not None and monitor.poll(0):
            event = recv_monitor_message(monitor)
            kind = _EVENTS.get(int(event["event"]))
            if kind:
                say(event="monitor", kind=kind, t=time.time())

    pad = "x" * args.pad
    say(event="start", pid=os.getpid(), producer_id=f"{handler.identity.producer_id:016x}", t=time.time())
    started = last = time.monotonic()
    longest = 0.0
    for i in range(args.count):
        if args.rate:
            ahead = started + i / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
                last = time.monotonic()
        log.info("record %d%s", i, pad, extra={"n": i})
        now = time.monotonic()
        longest, last = max(longest, now - last), now
        if args.progress and (i + 1) % args.progress == 0:
            say(event="progress", n=i + 1, t=time.time())
        if monitor is not None and i % 16 == 0:
            poll_monitor()
    if args.then:
        say(event="waiting", n=args.count)
        deadline = time.monotonic() + 60
        while args.then_wait_file and not os.path.exists(args.then_wait_file) and time.monotonic() < deadline:
            time.sleep(0.02)
        last = time.monotonic()
        for i in range(args.count, args.count + args.then):
            log.info("record %d%s", i, pad, extra={"n": i})
    poll_monitor()
    if monitor is not None:
        monitor.close(linger=0)
    say(
        event="report",
        pid=os.getpid(),
        producer_id=f"{handler.identity.producer_id:016x}",
        stats=dict(handler.stats),
        longest_pause=longest,
        log_seconds=time.monotonic() - started,
        t_end=time.time(),
    )
    if args.end == "close":
        handler.close()
    elif args.end == "hard":
        os._exit(0)
    sys.exit(0)


if __name__ == "__main__":
    main()
