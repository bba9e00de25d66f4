"""P5: bytes on the wire for one typical record, per codec, next to JSON of ``record.__dict__``.

The typical record is what ``logger.info('msg %s %d', 'x', i)`` makes inside a
function of an application module. Ours is measured as the whole message a
producer sends (topic, NUL and payload); the anchor is
``orjson.dumps(record.__dict__, default=str)``, the cookbook recipe's payload.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from fabric.codec import Encoder, ProducerIdentity
from fabric.topic import join_message, make_topic

IDENTITY = ProducerIdentity("checkout", "web-1.example.internal", 4242, 0x5F0C2A9E81D34B77)


def typical_record(i: int = 12345) -> logging.LogRecord:
    """A record as ``logging.getLogger('app.orders').info('msg %s %d', 'x', i)`` makes it."""
    logger = logging.getLogger("app.orders")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 42, "msg %s %d", ("x", i), None, "place_order")


def run() -> dict[str, Any]:
    """Bytes per record for each codec and for the anchor, and the ratios."""
    record = typical_record()
    naive = len(orjson.dumps(record.__dict__, default=str))
    topic = make_topic(record.levelno, record.name, IDENTITY.service)
    out: dict[str, Any] = {"json __dict__ (anchor)": {"bytes": naive, "ratio": 1.0}}
    for codec in ("protobuf", "json"):
        payload = Encoder(IDENTITY, codec).encode(record, 12345)  # type: ignore[arg-type]
        size = len(join_message(topic, payload))
        out[codec] = {"bytes": size, "payload_bytes": len(payload), "ratio": round(size / naive, 3)}
    return out


def table(result: dict[str, Any]) -> str:
    """The P5 table as text."""
    lines = [f"{'encoding':<24} {'bytes':>6} {'vs __dict__':>12}"]
    for name, r in result.items():
        lines.append(f"{name:<24} {r['bytes']:>6} {r['ratio']:>11.2f}x")
    return "\n".join(lines)
