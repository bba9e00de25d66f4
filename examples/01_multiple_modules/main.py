"""Recipe 1, logging in multiple modules: the subscriber sees the producer's logger hierarchy.

Run from the repository root: python examples/01_multiple_modules/main.py
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
LOCAL = "tcp://127.0.0.1:*"  # loopback, any free port
EXPECTED = 10


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main() -> None:
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(service)s: %(name)s - %(levelname)s - %(message)s"))
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], console) as listener,
    ):
        producer = [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]]
        subprocess.run(producer, check=True, timeout=60)
        wait_for(lambda: listener.stats["received"] >= EXPECTED)


if __name__ == "__main__":
    main()
