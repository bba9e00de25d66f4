"""Producer: the cookbook's one warning, stamped with the producer's local time.

Usage: python producer.py ENDPOINT   (a broker's pub ingest)
"""

from __future__ import annotations

import logging
import sys
import time

import fabric


def main(endpoint: str) -> None:
    handler = fabric.install(endpoint, service="clock", mode="pub")
    handler.wait_ready()
    logging.warning("The local time is %s", time.asctime())


if __name__ == "__main__":
    main(sys.argv[1])
