"""Producer: contextual information added three ways, all before the ZmqHandler sees the record.

Usage: python producer.py ENDPOINT   (a broker's pub ingest)
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import fabric


class ContextFilter(logging.Filter):
    """The cookbook's filter that injects ``ip`` and ``user`` (cycled here rather than random)."""

    USERS = itertools.cycle(["jim", "fred", "sheila"])
    IPS = itertools.cycle(["123.231.231.123", "127.0.0.1", "192.168.0.1"])

    def filter(self, record: logging.LogRecord) -> bool:
        record.ip = next(ContextFilter.IPS)
        record.user = next(ContextFilter.USERS)
        return True


class ConnectionAdapter(logging.LoggerAdapter[logging.Logger]):
    """The cookbook's CustomAdapter: prepends ``[connid]`` and passes the context as ``extra``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        assert self.extra is not None
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return f"[{self.extra['connid']}] {msg}", kwargs


def install_record_factory() -> None:
    """The cookbook's LogRecord factory: every record gains ``custom_attribute``."""
    old_factory = logging.getLogRecordFactory()

    def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old_factory(*args, **kwargs)
        record.custom_attribute = 0xDECAFBAD
        return record

    logging.setLogRecordFactory(record_factory)


def main(endpoint: str) -> None:
    install_record_factory()
    handler = fabric.install(endpoint, level="DEBUG", service="web", mode="pub")
    handler.wait_ready()

    # 1. a plain LoggerAdapter: its dict becomes the record's extra attributes
    adapter = logging.LoggerAdapter(logging.getLogger("web.request"), {"ip": "10.0.0.7", "user": "alice"})
    adapter.info("GET /basket 200")

    # 2. a LoggerAdapter subclass that also rewrites the message
    conn = ConnectionAdapter(logging.getLogger("web.conn"), {"connid": "c-42", "ip": "10.0.0.8", "user": "bob"})
    conn.warning("slow client, %d ms", 750)

    # 3. a Filter on the loggers that injects ip and user
    context = ContextFilter()
    a1 = logging.getLogger("a.b.c")
    a2 = logging.getLogger("d.e.f")
    a1.addFilter(context)
    a2.addFilter(context)
    a1.debug("A debug message")
    a1.info("An info message with %s", "some parameters")
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        a2.log(level, "A message at %s level with %d %s", logging.getLevelName(level), 2, "parameters")


if __name__ == "__main__":
    main(sys.argv[1])
