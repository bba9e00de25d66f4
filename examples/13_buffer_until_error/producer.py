"""Producer: the cookbook's foo(fail), logging at every level, and at ERROR and CRITICAL only if it fails.

Usage: python producer.py ENDPOINT SERVICE ok|fail   (a broker's pub ingest)
"""

from __future__ import annotations

import logging
import sys

import fabric

logger = logging.getLogger("app.foo")


def foo(fail: bool = False) -> bool:
    logger.debug("Actually logged at DEBUG")
    logger.info("Actually logged at INFO")
    logger.warning("Actually logged at WARNING")
    if fail:
        logger.error("Actually logged at ERROR")
        logger.critical("Actually logged at CRITICAL")
    return fail


def main(endpoint: str, service: str, fail: bool) -> None:
    handler = fabric.install(endpoint, level="DEBUG", service=service, mode="pub")
    handler.wait_ready()
    foo(fail)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "fail")
