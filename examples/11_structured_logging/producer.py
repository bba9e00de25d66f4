"""Producer: the cookbook's StructuredMessage, and the same data as typed ``extra`` fields.

Usage: python producer.py ENDPOINT   (a broker's pub ingest)
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import fabric


class Encoder(json.JSONEncoder):
    """The cookbook's encoder: sets become lists."""

    def default(self, o: Any) -> Any:
        if isinstance(o, set):
            return sorted(o)
        return super().default(o)


class StructuredMessage:
    def __init__(self, message: str, /, **kwargs: Any) -> None:
        self.message = message
        self.kwargs = kwargs

    def __str__(self) -> str:
        return f"{self.message} >>> {Encoder(sort_keys=True).encode(self.kwargs)}"


_ = StructuredMessage  # optional, to improve readability


def main(endpoint: str) -> None:
    handler = fabric.install(endpoint, level="INFO", service="checkout", mode="pub")
    if not handler.wait_ready(20.0):  # the subscriber is another process, starting meanwhile
        raise SystemExit("no subscriber reached this producer")
    logger = logging.getLogger("shop")
    # 1. the cookbook's way: the structure is inside the message text
    logger.info(_("message 1", foo="bar", bar="baz", num=123, fnum=123.456))
    logger.info(_("message 2", set_value={1, 2, 3}, snowman="\u2603"))
    # 2. the fabric's way: extras travel as typed fields and come out as JSON keys
    order = {"order_id": 17, "items": ["apple", "pear"], "total": 12.5, "paid": True}
    logger.info("order placed", extra=order)


if __name__ == "__main__":
    main(sys.argv[1])
