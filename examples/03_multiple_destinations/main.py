"""Recipes 3 and 4, multiple handlers and destinations, on the subscriber.

Every record goes to a file with timestamps (DEBUG and up); ERROR and up also
go to the console in a shorter format. ``respect_handler_level`` (the
ZmqListener default) makes the listener skip a handler whose level is above
the record's, as a local logger would.

Run from the repository root: python examples/03_multiple_destinations/main.py [OUTPUT_DIR]
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import fabric
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"
EXPECTED = 10


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main(out_dir: Path) -> None:
    log_file = out_dir / "spam.log"
    fh = logging.FileHandler(log_file, mode="w")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(name)-15s %(levelname)-8s %(message)s", "%m-%d %H:%M"))
    ch = logging.StreamHandler(sys.stdout)
    ch.setLevel(logging.ERROR)
    ch.setFormatter(logging.Formatter("%(name)-15s: %(levelname)-8s %(message)s"))

    print("console (ERROR and up):")
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], fh, ch, respect_handler_level=True) as listener,
    ):
        subprocess.run(
            [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]], check=True, timeout=60
        )
        wait_for(lambda: listener.stats["received"] >= EXPECTED)
    fh.close()

    lines = log_file.read_text().splitlines()
    print(f"{log_file.name} (DEBUG and up, {len(lines)} lines):")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="logfabric-03-")))
