"""Producer: the cookbook's main(), logging a message and an exception.

Usage: python producer.py ENDPOINT   (a broker's pub ingest)
"""

from __future__ import annotations

import logging
import sys

import fabric


def main(endpoint: str) -> None:
    handler = fabric.install(endpoint, level="DEBUG", service="calc", mode="pub")
    handler.wait_ready()
    logging.info("Sample message")
    try:
        x = 1 / 0
    except ZeroDivisionError as e:
        logging.exception("ZeroDivisionError: %s", e)
    else:
        logging.info("x is %s", x)


if __name__ == "__main__":
    main(sys.argv[1])
