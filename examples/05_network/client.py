"""The sending end: the cookbook's SocketHandler client, with fabric.install() instead.

Usage: python client.py [ENDPOINT]   (default tcp://127.0.0.1:9020)
"""

from __future__ import annotations

import logging
import sys

import fabric


def main(endpoint: str) -> None:
    root_logger = logging.getLogger("")
    root_logger.setLevel(logging.DEBUG)
    # Records travel as protobuf: no pickle, no formatting on this side.
    fabric.install(endpoint, service="client")

    # Now, we can log to the root logger, or any other logger. First the root...
    logging.info("Jackdaws love my big sphinx of quartz.")

    # Now, define a couple of other loggers which might represent areas in your application:
    logger1 = logging.getLogger("myapp.area1")
    logger2 = logging.getLogger("myapp.area2")

    logger1.debug("Quick zephyrs blow, vexing daft Jim.")
    logger1.info("How quickly daft jumping zebras vex.")
    logger2.warning("Jail zesty vixen who grabbed pay from quack.")
    logger2.error("The five boxing wizards jump quickly.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:9020")
