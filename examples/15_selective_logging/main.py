"""Recipe 27, a context manager for selective logging, on the producer.

The producer's LoggingContext lowers the level of logger ``foo`` for a block
(and adds a local stdout handler for one of them); only what passes the
producer's logger level is sent, so the subscriber receives exactly messages
1, 3, 5 and 6.

Run from the repository root: python examples/15_selective_logging/main.py
"""

from __future__ import annotations

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
EXPECTED = 4


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main() -> None:
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("subscriber: %(message)s"))
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], console) as listener,
    ):
        command = [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]]
        producer = subprocess.run(command, check=True, timeout=60, capture_output=True, text=True)
        wait_for(lambda: listener.stats["received"] >= EXPECTED)
    for line in producer.stdout.splitlines():
        print(f"producer stdout: {line}")
    print(f"producer: {producer.stderr.strip()}; subscriber: {listener.stats['received']} records received")


if __name__ == "__main__":
    main()
