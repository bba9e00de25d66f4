"""Recipe 25, buffering and conditional output, on the subscriber and per producer.

The subscriber keeps each producer's recent records in its own MemoryHandler
and writes them out only when that producer sends an ERROR: then its whole
debug history appears, followed by the error. A producer that never fails
never reaches the console. Producers are told apart by ``record.producer_id``.

Run from the repository root: python examples/13_buffer_until_error/main.py
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from logging.handlers import MemoryHandler
from pathlib import Path

import fabric
from broker import Broker

HERE = Path(__file__).resolve().parent
LOCAL = "tcp://127.0.0.1:*"
EXPECTED = 8  # 3 records from the producer that succeeds, 5 from the one that fails


class HistoryOnError(MemoryHandler):
    """A MemoryHandler that flushes only at ``flushLevel``, keeping the latest ``capacity`` records meanwhile."""

    def emit(self, record: logging.LogRecord) -> None:
        self.buffer.append(record)
        del self.buffer[: -self.capacity]  # a full buffer forgets its oldest record instead of flushing
        if record.levelno >= self.flushLevel:
            self.flush()


class PerProducer(logging.Handler):
    """Routes each producer's records to its own HistoryOnError buffer."""

    def __init__(self, target: logging.Handler, capacity: int = 100) -> None:
        super().__init__()
        self.target = target
        self.capacity = capacity
        self.buffers: dict[str, HistoryOnError] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = record.__dict__["producer_id"]
        buffer = self.buffers.get(key)
        if buffer is None:
            buffer = self.buffers[key] = HistoryOnError(
                self.capacity, flushLevel=logging.ERROR, target=self.target, flushOnClose=False
            )
        buffer.handle(record)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main() -> None:
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(service)s %(levelname)-8s %(message)s"))
    buffered = PerProducer(console)
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], buffered) as listener,
    ):
        command = [sys.executable, str(HERE / "producer.py"), broker.endpoints["pub_ingest"]]
        producers = [subprocess.Popen([*command, "web-1", "ok"]), subprocess.Popen([*command, "web-2", "fail"])]
        for producer in producers:
            if producer.wait(timeout=60) != 0:
                raise SystemExit(f"a producer exited with {producer.returncode}")
        wait_for(lambda: listener.stats["received"] >= EXPECTED)
    for buffer in buffered.buffers.values():
        held = buffer.buffer
        if held:
            print(f"{held[0].__dict__['service']}: {len(held)} records held back, never written")


if __name__ == "__main__":
    main()
