"""A subscriber process whose only handler stalls for a while on the first record.

Usage::

    python tests/reliability/scripts/stalled_subscriber.py ENDPOINT STALL_SECONDS

Connects a ``ZmqListener`` (sub) to ENDPOINT, prints ``{"event": "ready"}``,
blocks its listener thread for STALL_SECONDS on the first record (a handler
writing to a hung disk or network), then counts. When no record has arrived
for 2 s after the stall it prints a report with the listener's stats and
exits 0. Before the fix for libzmq#3937 this process died of SIGABRT.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

import fabric


class Stalling(logging.Handler):
    def __init__(self, stall: float) -> None:
        super().__init__()
        self.stall = stall
        self.count = 0
        self.last = time.monotonic()
        self.stalled = threading.Event()
        self.resumed = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.stalled.is_set():
            self.stalled.set()
            print(json.dumps({"event": "stalling"}), flush=True)
            time.sleep(self.stall)
            self.resumed.set()
        self.count += 1
        self.last = time.monotonic()


def main() -> None:
    endpoint, stall = sys.argv[1], float(sys.argv[2])
    handler = Stalling(stall)
    listener = fabric.ZmqListener(endpoint, handler, loggers=["rel.load"])
    listener.start()
    print(json.dumps({"event": "ready"}), flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if handler.resumed.is_set() and time.monotonic() - handler.last > 2.0:
            break
    stats = dict(listener.stats)
    listener.stop()
    print(json.dumps({"event": "report", "handled": handler.count, "stats": stats}), flush=True)


if __name__ == "__main__":
    main()
