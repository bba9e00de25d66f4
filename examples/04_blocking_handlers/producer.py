"""Producer: time each logging call, through the fabric or (``--direct``) into the slow handler itself.

Usage: python producer.py ENDPOINT COUNT [--direct]
Prints one line: ``<microseconds per call>``.
"""

from __future__ import annotations

import logging
import sys
import time

from mailer import SlowMailHandler

import fabric


def main(endpoint: str, count: int, direct: bool) -> None:
    logger = logging.getLogger("shop.orders")
    logger.setLevel(logging.INFO)
    if direct:  # the cookbook's problem: the slow handler runs in the logging thread
        logger.addHandler(SlowMailHandler())
    else:  # the fix: only a queue-like handler in the logging thread
        handler = fabric.ZmqHandler(endpoint, mode="pub", service="shop")
        logger.addHandler(handler)
        handler.wait_ready()
    started = time.perf_counter()
    for i in range(count):
        logger.error("order %d failed to ship", i)
    elapsed = time.perf_counter() - started
    print(f"{elapsed / count * 1e6:.1f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--direct" in sys.argv[3:])
