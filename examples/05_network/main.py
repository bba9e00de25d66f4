"""Recipe 7, sending and receiving logging events across a network, without pickle.

The cookbook pairs a SocketHandler (pickled records) with a socketserver
receiver that calls ``logging.getLogger(record.name).handle(record)``. Here the
receiver is a ZmqListener bound to a PULL socket with ``dispatch="loggers"``,
which routes each record through the local logging tree the same way; the
client (``client.py``, started here as a second process) pushes straight to
it. Payloads are protobuf and are checked before a LogRecord is built, so a
hostile peer cannot run code in the receiver.

Run from the repository root: python examples/05_network/main.py [ENDPOINT]
(default tcp://127.0.0.1:9020, the cookbook's port)
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fabric

HERE = Path(__file__).resolve().parent
EXPECTED = 5


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have arrived."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main(endpoint: str) -> None:
    # the cookbook's receiver format, minus relativeCreated so that the output is stable
    # (as with the cookbook's logger.handle(), logger levels are not checked again here)
    logging.basicConfig(format="%(service)s %(name)-15s %(levelname)-8s %(message)s", stream=sys.stdout)
    with fabric.ZmqListener(endpoint, mode="pull", bind=True, dispatch="loggers") as listener:
        print(f"About to start the receiver on {endpoint}...")
        subprocess.run([sys.executable, str(HERE / "client.py"), endpoint], check=True, timeout=60)
        wait_for(lambda: listener.stats["received"] >= EXPECTED)
    print(f"received {listener.stats['received']}, malformed {listener.stats['malformed']}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:9020")
