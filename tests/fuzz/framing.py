"""Frame hand-made payloads with the topic a real producer would give them.

A receiver rejects a record whose topic is not the one its level, logger and
service make, so a hostile *valid* payload must travel under its own topic to
reach the checks behind that one. :class:`TopicWire` is :class:`Wire` (the
frame layout learnt from a real handler) plus that topic.
"""

from __future__ import annotations

import logging

import fabric
from fabric.codec import Limits
from fabric.topic import make_topic
from tests.helpers.wire import Wire

# No caps: the topic is made from the names in full, as the producer made it.
_WHOLE = Limits(message=2**31, traceback=2**31, field=2**31, extras=2**31, extra_value=2**31)


class TopicWire(Wire):
    """A :class:`Wire` whose messages carry the topic of the record in their payload."""

    def __init__(self, leading: list[bytes], prefix: bytes, topic: bytes) -> None:
        super().__init__(leading, prefix)
        self.topic = topic
        """The learnt record's topic: ``prefix`` starts with it."""

    @classmethod
    def learn(cls, service: str = "wire", name: str = "wire") -> TopicWire:
        """Learn the layout from a real handler and check that its prefix starts with the record's topic."""
        wire = Wire.learn(service=service, name=name)
        topic = make_topic(logging.INFO, name, service)
        if not wire.prefix.startswith(topic):
            raise RuntimeError(f"the real prefix {wire.prefix!r} does not start with the topic {topic!r}")
        return cls(wire.leading, wire.prefix, topic)

    def message(self, payload: bytes) -> list[bytes]:
        """``payload`` framed as a real producer would: under its record's topic if it decodes, else the learnt one."""
        try:
            record = fabric.decode(payload, _WHOLE).record
        except fabric.MalformedRecord:
            return super().message(payload)
        return self.under(make_topic(record.levelno, record.name, record.__dict__["service"]), payload)

    def under(self, topic: bytes, payload: bytes) -> list[bytes]:
        """``payload`` framed under any ``topic`` bytes (a forged or damaged one, say)."""
        return [*self.leading, topic + self.prefix[len(self.topic) :] + payload]
