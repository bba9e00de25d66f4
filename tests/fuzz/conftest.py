"""Fixtures for the fuzz tests: the current frame layout, learnt from a real handler."""

from __future__ import annotations

import logging

import pytest
import zmq

import fabric


class FuzzWire:
    """Wraps payloads exactly as a real producer frames them (leading frames, bytes before the payload)."""

    def __init__(self, leading: list[bytes], prefix: bytes) -> None:
        self.leading = leading
        self.prefix = prefix

    def message(self, payload: bytes) -> list[bytes]:
        return [*self.leading, self.prefix + payload]


@pytest.fixture(scope="session")
def fuzz_wire() -> FuzzWire:
    """Capture one message of a real ZmqHandler and find where its payload starts."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    handler = fabric.ZmqHandler(f"tcp://127.0.0.1:{port}", service="fuzz-wire", linger=0.5)
    try:
        handler.handle(logging.LogRecord("fuzz.wire", logging.INFO, __file__, 1, "template", (), None))
        assert pull.poll(10_000), "no message from a real handler within 10 s"
        frames = pull.recv_multipart()
    finally:
        handler.close()
        pull.close(linger=0)
        ctx.term()
    last = frames[-1]
    for start in range(len(last)):
        try:
            fabric.decode(last[start:])
        except fabric.MalformedRecord:
            continue
        return FuzzWire(frames[:-1], last[:start])
    raise AssertionError(f"no payload found in a real message: {frames!r}")
