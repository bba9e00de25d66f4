"""Producer: the cookbook's LoggingContext, around a logger whose only handler is a ZmqHandler.

Usage: python producer.py ENDPOINT   (a broker's pub ingest)
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType

import fabric


class LoggingContext:
    def __init__(
        self,
        logger: logging.Logger,
        level: int | None = None,
        handler: logging.Handler | None = None,
        close: bool = True,
    ) -> None:
        self.logger = logger
        self.level = level
        self.handler = handler
        self.close = close

    def __enter__(self) -> None:
        if self.level is not None:
            self.old_level = self.logger.level
            self.logger.setLevel(self.level)
        if self.handler:
            self.logger.addHandler(self.handler)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.level is not None:
            self.logger.setLevel(self.old_level)
        if self.handler:
            self.logger.removeHandler(self.handler)
        if self.handler and self.close:
            self.handler.close()
        # implicit return of None => don't swallow exceptions


def main(endpoint: str) -> None:
    logger = logging.getLogger("foo")
    handler = fabric.install(endpoint, logger=logger, level=logging.INFO, service="logctx", mode="pub")
    handler.wait_ready()
    logger.info("1. This should appear just once, at the subscriber.")
    logger.debug("2. This should not appear.")
    with LoggingContext(logger, level=logging.DEBUG):
        logger.debug("3. This should appear once, at the subscriber.")
    logger.debug("4. This should not appear.")
    h = logging.StreamHandler(sys.stdout)
    with LoggingContext(logger, level=logging.DEBUG, handler=h, close=True):
        logger.debug("5. This should appear twice - at the subscriber and on the producer's stdout.")
    logger.info("6. This should appear just once, at the subscriber.")
    logger.debug("7. This should not appear.")
    handler.close()
    print(f"{handler.stats['sent']} records sent", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
