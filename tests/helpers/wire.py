"""Messages made by hand: the frame layout of real producers (:class:`Wire`), records and frames (:class:`Craft`)."""

from __future__ import annotations

import logging

import zmq

import fabric
from fabric.codec import Encoder, ProducerIdentity
from fabric.topic import join_message, make_topic


class Wire:
    """Builds raw messages in whatever frame layout real producers use right now.

    It captures one real message from a real ``ZmqHandler`` and finds where its
    payload starts (the first offset of the last frame that ``fabric.decode``
    accepts). :meth:`message` then wraps any payload, valid or not, exactly as
    that producer would have: the same leading frames and the same bytes
    before the payload. Tests of hostile input therefore follow a change of
    framing without being rewritten.
    """

    def __init__(self, leading: list[bytes], prefix: bytes) -> None:
        self.leading = leading
        self.prefix = prefix

    @classmethod
    def learn(cls, service: str = "wire", name: str = "wire") -> Wire:
        """Capture one record of logger ``name`` sent by a handler of ``service`` and find its payload."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        pull = ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        handler = fabric.ZmqHandler(f"tcp://127.0.0.1:{port}", service=service, linger=0.5)
        try:
            handler.handle(logging.LogRecord(name, logging.INFO, __file__, 1, "template", (), None))
            if not pull.poll(10_000):
                raise RuntimeError("no message from a real handler within 10 s")
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
            return cls(frames[:-1], last[:start])
        raise RuntimeError(f"no payload found in a real message: {frames!r}")

    def message(self, payload: bytes) -> list[bytes]:
        """``payload`` framed as a real producer frames its payloads."""
        return [*self.leading, self.prefix + payload]


class Craft:
    """Builds records and wire messages by hand, as a foreign or hostile producer would."""

    identity = ProducerIdentity("raw-svc", "raw-host", 4242, 0xFEEDFACE)

    @staticmethod
    def record(name: str, msg: str, levelno: int = logging.INFO, **extra: object) -> logging.LogRecord:
        """A LogRecord built without logging.getLogger (so no local logger is created)."""
        fields = {"name": name, "msg": msg, "levelno": levelno, "levelname": logging.getLevelName(levelno)}
        return logging.makeLogRecord({**fields, **extra})

    @classmethod
    def frames(cls, record: logging.LogRecord, seq: int, codec: str = "protobuf") -> list[bytes]:
        """The one-frame message (topic NUL payload) this identity sends as its ``seq``-th record on its topic."""
        return [
            join_message(
                make_topic(record.levelno, record.name, cls.identity.service),
                Encoder(cls.identity, codec).encode(record, seq),  # type: ignore[arg-type]
            )
        ]
