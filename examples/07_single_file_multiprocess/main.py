"""Recipe 9, logging to a single file from multiple processes.

Worker processes, two started with ``fork`` and two with ``spawn``, each
attach a ZmqHandler to their root logger (the cookbook's worker configurer,
with the fabric in place of a multiprocessing queue). One subscriber, in this
process, writes every record to one file. The line count is exact: pub-mode
handlers wait until the subscription has reached them, and records still
queued when a worker ends are delivered as it exits (the handler flushes
itself in multiprocessing workers, fork and spawn alike).

Run from the repository root: python examples/07_single_file_multiprocess/main.py [OUTPUT_DIR]
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import fabric
from broker import Broker

LOCAL = "tcp://127.0.0.1:*"
PER_WORKER = 250
LOGGERS = ["a.b.c", "d.e.f"]
LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]


def worker_configurer(endpoint: str) -> fabric.ZmqHandler:
    """Just the one handler needed; no level or filter logic here, as in the cookbook."""
    handler = fabric.ZmqHandler(endpoint, mode="pub", service="mptest")
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return handler


def worker_process(endpoint: str) -> None:
    handler = worker_configurer(endpoint)
    if not handler.wait_ready(10.0):
        raise SystemExit("no subscriber reached this worker")
    for i in range(PER_WORKER):
        logger = logging.getLogger(LOGGERS[i % len(LOGGERS)])
        logger.log(LEVELS[i % len(LEVELS)], "Message no. %d", i)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait (bounded) until the records have crossed the fabric."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the records did not arrive in time")
        time.sleep(0.01)


def main(out_dir: Path) -> None:
    log_file = out_dir / "mptest.log"
    file_handler = logging.FileHandler(log_file, mode="w")
    file_handler.setFormatter(logging.Formatter("%(processName)-10s %(name)s %(levelname)-8s %(message)s"))
    plan = [("fork", 1), ("fork", 2), ("spawn", 3), ("spawn", 4)]
    with (
        Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker,
        fabric.ZmqListener(broker.endpoints["egress"], file_handler) as listener,
    ):
        workers = [
            (multiprocessing.get_context("fork") if method == "fork" else multiprocessing.get_context("spawn")).Process(
                target=worker_process, args=(broker.endpoints["pub_ingest"],), name=f"{method}-{n}"
            )
            for method, n in plan
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            if worker.exitcode != 0:
                raise SystemExit(f"{worker.name} exited with {worker.exitcode}")
        expected = PER_WORKER * len(workers)
        wait_for(lambda: listener.stats["received"] >= expected)
    file_handler.close()

    lines = log_file.read_text().splitlines()
    per_process = collections.Counter(line.split()[0] for line in lines)
    print(f"{log_file.name}: {len(lines)} lines, expected {expected}")
    for name, count in sorted(per_process.items()):
        print(f"  {name}: {count} lines")
    print(f"gaps {listener.stats['gaps']}, malformed {listener.stats['malformed']}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="logfabric-07-")))
