"""Helpers for the history endpoint's tests: DEALER clients, one request, a paged query, stored records."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import zmq

import fabric
from broker import Broker
from fabric._history_wire import unpack_times
from fabric.codec import decode
from fabric.topic import split_message
from tests.helpers.waiting import poll_until


@contextlib.contextmanager
def dealers() -> Iterator[Callable[[str], zmq.Socket[bytes]]]:
    """``make(endpoint)``: a connected DEALER; all closed with linger 0 at the end."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    made: list[zmq.Socket[bytes]] = []

    def make(endpoint: str) -> zmq.Socket[bytes]:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        made.append(sock)
        return sock

    try:
        yield make
    finally:
        for sock in made:
            sock.close(linger=0)
        ctx.term()


def ask(sock: zmq.Socket[bytes], doc: dict[str, Any] | bytes, timeout: float = 10.0) -> list[bytes]:
    """Send one request; return the reply's frames (fails after ``timeout``)."""
    sock.send(doc if isinstance(doc, bytes) else orjson.dumps(doc))
    assert sock.poll(int(timeout * 1000)), "no reply from the history endpoint"
    return sock.recv_multipart()


def query(sock: zmq.Socket[bytes], **fields: Any) -> tuple[list[tuple[int, bytes]], int]:
    """Page through one query; return (stored time, frame) of every record and the number of pages."""
    out: list[tuple[int, bytes]] = []
    cursor = None
    pages = 0
    while True:
        request = {"v": 1, **fields}
        if cursor is not None:
            request["cursor"] = cursor
        reply = ask(sock, request)
        header = orjson.loads(reply[0])
        assert header["ok"] is True, header
        pages += 1
        out.extend(zip(unpack_times(reply[1], header["count"]), reply[2:], strict=True))
        if header["end"]:
            return out, pages
        cursor = header["cursor"]
        assert pages < 10_000


def produce(broker: Broker, plan: list[tuple[str, str, int, int]]) -> int:
    """Log ``count`` records per (service, logger, level, count) through push handlers; wait until stored."""
    total = 0
    handlers = []
    for service, name, level, count in plan:
        handler = fabric.ZmqHandler(broker.endpoints["push_ingest"], service=service)
        handlers.append(handler)
        for i in range(count):
            handler.handle(logging.makeLogRecord({"name": name, "levelno": level, "msg": f"{service} {name} {i}"}))
        total += count
        handler.flush()
    for handler in handlers:
        handler.close()
    store = broker.store
    assert store is not None
    assert poll_until(lambda: store.store.records >= total, timeout=30), (store.store.records, total)
    return total


def messages(frames: list[tuple[int, bytes]]) -> list[str]:
    """The messages of stored frames, in order."""
    out = []
    for _, frame in frames:
        topic, payload = split_message(frame)
        out.append(decode(payload, None, topic).record.getMessage())
    return out
