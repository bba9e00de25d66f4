"""Producer: the cookbook's 'application code', with one ZmqHandler and no local destinations.

Usage: python producer.py ENDPOINT   (a broker's pub ingest)
"""

from __future__ import annotations

import logging
import sys

import fabric


def main(endpoint: str) -> None:
    handler = fabric.install(endpoint, level="DEBUG", service="spam", mode="pub")
    handler.wait_ready()

    logger = logging.getLogger("simple_example")
    logger.debug("debug message")
    logger.info("info message")
    logger.warning("warn message")
    logger.error("error message")
    logger.critical("critical message")

    logging.info("Jackdaws love my big sphinx of quartz.")
    logger1 = logging.getLogger("myapp.area1")
    logger2 = logging.getLogger("myapp.area2")
    logger1.debug("Quick zephyrs blow, vexing daft Jim.")
    logger1.info("How quickly daft jumping zebras vex.")
    logger2.warning("Jail zesty vixen who grabbed pay from quack.")
    logger2.error("The five boxing wizards jump quickly.")


if __name__ == "__main__":
    main(sys.argv[1])
