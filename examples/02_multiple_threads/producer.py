"""Producer: the cookbook's threads, logging through one ZmqHandler on the root logger.

Usage: python producer.py ENDPOINT   (a broker's pub ingest)
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import fabric

ROUNDS = 5


def worker(number: int) -> None:
    for i in range(ROUNDS):
        logging.debug("Hi from worker %d (%d)", number, i)
        time.sleep(0.01)


def main(endpoint: str) -> None:
    handler = fabric.install(endpoint, level="DEBUG", service="threads", mode="pub")
    handler.wait_ready()
    threads = [threading.Thread(target=worker, args=(n,), name=f"worker-{n}") for n in (1, 2)]
    for thread in threads:
        thread.start()
    for i in range(ROUNDS):
        logging.debug("Hello from main (%d)", i)
        time.sleep(0.015)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main(sys.argv[1])
