"""The running service of recipe 5: workers that log at every level, in a loop, until stopped.

It is the cookbook's module, minus ``logging.config.listen()``: its levels can
still be changed from outside, but only through the broker's control endpoint,
only logger levels, and only for a while.

Usage: service.py PUSH_INGEST CONTROL_ENDPOINT
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time

import fabric


def work() -> None:
    logger = logging.getLogger("simpleExample")
    count = 0
    while True:  # until the example stops the service
        count += 1
        logger.debug("debug message %d", count)
        logger.info("info message %d", count)
        time.sleep(0.05)


def main() -> None:
    ingest, control = sys.argv[1], sys.argv[2]
    # the cookbook reads logging.conf here; this service logs INFO and up unless an operator says otherwise
    fabric.install(ingest, service="shop", control=control, level="INFO")
    workers = [multiprocessing.get_context("fork").Process(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
