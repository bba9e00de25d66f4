"""Recipe 5, the configuration server, done with ``logfabric level``.

A service ("shop", two worker processes) logs DEBUG and INFO messages in a
loop at level INFO. From outside, an operator turns DEBUG on for logger
``simpleExample`` in every process of the service for two seconds; the
subscriber sees DEBUG records arrive from both workers, then stop once the
change has expired by itself.

Run from the repository root: python examples/17_configuration_server/main.py
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import fabric
import fabric.level
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"


class Seen(logging.Handler):
    """Keeps what the subscriber receives."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append(record)

    def find(self, test: Callable[[logging.LogRecord], bool]) -> list[logging.LogRecord]:
        with self.guard:
            return [r for r in self.records if test(r)]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Wait (bounded) until ``condition`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen in time")
        time.sleep(0.01)


def main() -> None:
    seen = Seen()
    # control_trust_network: this example runs on 127.0.0.1 only; anywhere else use CurveZMQ with
    # an operators allow-list (curve_operators; see docs/security.md)
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL, control=LOCAL, control_trust_network=True) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], seen, services=["shop"]),
    ):
        control = broker.endpoints["control"]
        command = [sys.executable, str(HERE / "service.py"), broker.endpoints["push_ingest"], control]
        service = subprocess.Popen(command, start_new_session=True)  # its workers share its process group
        try:
            assert broker.control is not None
            wait_for(lambda: len(broker.control.producers) == 2, "both workers connecting")  # type: ignore[union-attr]
            wait_for(lambda: len({r.process for r in seen.find(lambda r: r.levelname == "INFO")}) == 2, "INFO")
            print("before: INFO from 2 workers, DEBUG from", len(seen.find(lambda r: r.levelname == "DEBUG")))

            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = fabric.level.main(
                    ["set", "shop", "DEBUG", "--logger", "simpleExample", "--for", "2s", "--control", control]
                )
            print(f"logfabric level set shop DEBUG --logger simpleExample --for 2s: exit {status}")
            print(next(line for line in out.getvalue().splitlines() if line.startswith("applied by")))

            debug = lambda r: r.levelname == "DEBUG" and r.name == "simpleExample"  # noqa: E731
            wait_for(lambda: len({r.process for r in seen.find(debug)}) == 2, "DEBUG from both workers")
            print("during: DEBUG from 2 workers")

            expired = lambda r: r.name == "logfabric.control" and "(expired)" in r.getMessage()  # noqa: E731
            wait_for(lambda: len(seen.find(expired)) == 2, "the change expiring in both workers")
            print("each worker says:", seen.find(expired)[0].getMessage())
            with seen.guard:
                reverted_at = {r.process: i for i, r in enumerate(seen.records) if expired(r)}
            # the sentinel: a later INFO from each worker; no DEBUG of that worker may come between
            wait_for(
                lambda: all(
                    any(r.process == p and r.levelname == "INFO" for r in seen.records[i:])
                    for p, i in reverted_at.items()
                ),
                "INFO after the expiry",
            )
            with seen.guard:
                late = [r for p, i in reverted_at.items() for r in seen.records[i:] if r.process == p and debug(r)]
            print(f"after: DEBUG from {len(late)} workers")
        finally:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait(10)


if __name__ == "__main__":
    main()
