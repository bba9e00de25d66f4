"""Recipe 8 and LogRecord factories: contextual information reaches the subscriber's format string.

The producer adds ``ip`` and ``user`` with a LoggerAdapter, a LoggerAdapter
subclass and a Filter, and ``custom_attribute`` with a LogRecord factory. They
travel as typed extras (the integer stays an integer), so the subscriber's
``%(ip)s``, ``%(user)s`` and ``%(custom_attribute)#x`` work as they would locally.

Run from the repository root: python examples/06_contextual_info/main.py
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
EXPECTED = 9
FORMAT = "%(name)-11s %(levelname)-8s IP: %(ip)-15s User: %(user)-6s %(custom_attribute)#x %(message)s"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main() -> None:
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(FORMAT))
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], console) as listener,
    ):
        subprocess.run(
            [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]], check=True, timeout=60
        )
        wait_for(lambda: listener.stats["received"] >= EXPECTED)


if __name__ == "__main__":
    main()
