"""Producer: 45 short records, nothing about files here.

Usage: python producer.py ENDPOINT COUNT   (a broker's pub ingest)
"""

from __future__ import annotations

import logging
import sys

import fabric


def main(endpoint: str, count: int) -> None:
    handler = fabric.install(endpoint, level="INFO", service="rotate", mode="pub")
    handler.wait_ready()
    logger = logging.getLogger("app")
    for i in range(count):
        logger.info("record %03d", i)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
