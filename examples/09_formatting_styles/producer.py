"""Producer: {}- and $-formatted messages with the cookbook's message classes and StyleAdapter.

Usage: python producer.py ENDPOINT   (a broker's pub ingest)

The message is built (``str(msg)``) when the ZmqHandler encodes the record, so
it travels as finished text; the classes never need to exist at the subscriber.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from string import Template
from typing import Any

import fabric


class BraceMessage:
    def __init__(self, fmt: str, /, *args: Any, **kwargs: Any) -> None:
        self.fmt = fmt
        self.args = args
        self.kwargs = kwargs

    def __str__(self) -> str:
        return self.fmt.format(*self.args, **self.kwargs)


class DollarMessage:
    def __init__(self, fmt: str, /, **kwargs: Any) -> None:
        self.fmt = fmt
        self.kwargs = kwargs

    def __str__(self) -> str:
        return Template(self.fmt).substitute(**self.kwargs)


class StyleAdapter(logging.LoggerAdapter[logging.Logger]):
    """Lets callers write ``logger.info("Hello, {}", name)``."""

    def __init__(self, logger: logging.Logger, extra: MutableMapping[str, Any] | None = None) -> None:
        super().__init__(logger, extra or {})

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            msg, options = self.process(msg, kwargs)
            self.logger._log(level, BraceMessage(str(msg), *args), (), **options)


class Point:
    def __init__(self, x: float, y: float) -> None:
        self.x = x
        self.y = y


def main(endpoint: str) -> None:
    handler = fabric.install(endpoint, level="DEBUG", service="styles", mode="pub")
    handler.wait_ready()
    logger = logging.getLogger("foo.bar")

    __ = BraceMessage
    logger.info(__("Message with {0} {name}", 2, name="placeholders"))
    logger.info(__("Message with coordinates: ({point.x:.2f}, {point.y:.2f})", point=Point(0.5, 0.5)))
    _d = DollarMessage
    logger.info(_d("Message with $num $what", num=2, what="placeholders"))
    logger.error("This is an%s %s %s", "other,", "ERROR,", "message")  # plain %-style still works
    StyleAdapter(logging.getLogger("foo.adapter")).debug("Hello, {}", "world!")


if __name__ == "__main__":
    main(sys.argv[1])
