"""Recipe 2, logging from multiple threads: ``%(threadName)s`` at the subscriber names the producer's threads.

Run from the repository root: python examples/02_multiple_threads/main.py
"""

from __future__ import annotations

import collections
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fabric
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"
EXPECTED = 15  # 5 records from each of MainThread, worker-1 and worker-2


class CountByThread(logging.Handler):
    """Counts records per producer thread name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.threadName or "?"] += 1


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main() -> None:
    console = logging.StreamHandler(sys.stdout)
    # the cookbook's format, minus relativeCreated so that the output is stable
    console.setFormatter(logging.Formatter("%(threadName)-10s %(message)s"))
    counter = CountByThread()
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], console, counter) as listener,
    ):
        subprocess.run(
            [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]], check=True, timeout=60
        )
        wait_for(lambda: listener.stats["received"] >= EXPECTED)
    for name, count in sorted(counter.counts.items()):
        print(f"{name}: {count} records")


if __name__ == "__main__":
    main()
