"""A listener process whose peak memory the reliability suite measures.

Usage::

    python tests/reliability/scripts/listener_rss.py ENDPOINT WARMUP

Binds a ``ZmqListener`` (pull) on ENDPOINT whose handlers format every record
twice (``logging.Formatter`` and the tail's ``SafeFormatter``), as a
collector's would. Prints JSON lines: ``ready``; ``warm`` with the peak
resident set size (``VmHWM``, KiB) once WARMUP records of logger
``rel.warmup`` were handled; ``report`` with the peak again and the
listener's stats once a record of logger ``rel.done`` was handled.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from pathlib import Path

import fabric
from fabric.tail import SafeFormatter

FORMAT = "%(asctime)s %(service)s %(levelname)s %(name)s: %(message)s"


def vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


class Formatting(logging.Handler):
    """Formats each record with both formatters and keeps only the longest line length."""

    def __init__(self) -> None:
        super().__init__()
        self.plain = logging.Formatter(FORMAT)
        self.safe = SafeFormatter(FORMAT)
        self.names: dict[str, int] = {}
        self.longest = 0
        self.changed = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        out = io.StringIO()
        out.write(self.plain.format(record))
        out.write(self.safe.format(record))
        self.longest = max(self.longest, out.tell())
        self.names[record.name] = self.names.get(record.name, 0) + 1
        self.changed.set()


def main() -> None:
    endpoint, warmup = sys.argv[1], int(sys.argv[2])
    handler = Formatting()
    listener = fabric.ZmqListener(endpoint, handler, mode="pull", bind=True)
    listener.start()
    print(json.dumps({"event": "ready"}), flush=True)
    deadline = time.monotonic() + 60
    while handler.names.get("rel.warmup", 0) < warmup and time.monotonic() < deadline:
        handler.changed.wait(0.05)
        handler.changed.clear()
    print(json.dumps({"event": "warm", "hwm_kb": vm_hwm_kb(), "stats": dict(listener.stats)}), flush=True)
    while not handler.names.get("rel.done") and time.monotonic() < deadline:
        handler.changed.wait(0.05)
        handler.changed.clear()
    report = {
        "event": "report",
        "hwm_kb": vm_hwm_kb(),
        "stats": dict(listener.stats),
        "longest_line": handler.longest,
        "alive": listener._thread is not None and listener._thread.is_alive(),
    }
    listener.stop()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
