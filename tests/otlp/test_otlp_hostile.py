"""Hostile input never kills the exporter: odd records and misbehaving receivers are counted, skipped, said once.

The exporter handles remote records: whatever a producer puts in a record, and
whatever the receiver answers, the handler keeps exporting the next record.
Forged frames come from raw PUSH sockets into a real listener.
"""

from __future__ import annotations

import enum
import logging
import math
import time

import pytest

from fabric._proto.logfabric.v1 import record_pb2
from fabric.codec import Encoder, ProducerIdentity
from fabric.topic import join_message, make_topic
from tests.helpers.waiting import wait_until
from tests.otlp.receivers import BAD_BODY, GARBAGE, HANG, SilentServer
from tests.otlp.test_otlp_delivery import settled

pytestmark = pytest.mark.timeout(90)

IDENTITY = ProducerIdentity("hostile", "evil-host", 666, 0xBAD)


def forged_frame(name: str, seq: int, extras: dict[str, str]) -> bytes:
    """A valid protobuf record whose extras are given as raw ``json_value`` texts (no encoder would write some)."""
    record = logging.LogRecord(name, logging.WARNING, "/forged.py", 1, "forged", (), None)
    payload = Encoder(IDENTITY).encode(record, seq)
    message = record_pb2.LogRecord.FromString(payload[1:])
    for key, text in extras.items():
        message.attributes[key].json_value = text
    return join_message(make_topic(logging.WARNING, name, IDENTITY.service), b"\x01" + message.SerializeToString())


def said(caplog, text: str) -> list[str]:
    """The logfabric.otlp diagnostics that contain ``text``."""
    return [r.getMessage() for r in caplog.records if r.name == "logfabric.otlp" and text in r.getMessage()]


class TestHostileRecords:
    """Records a producer (or local code) can make: each is exported bounded, or counted; the next one goes out."""

    def test_deep_nesting_from_the_wire(self, http_receiver, make_otlp, pipeline, raw_push):
        """A 1,000-deep list in an extra is cut at the depth limit and marked; the record and the next go out."""
        pipe = pipeline(make_otlp(http_receiver.url))
        deep = "[" * 1000 + "]" * 1000
        sock = raw_push(pipe.endpoint)
        sock.send(forged_frame("evil.deep", 1, {"deep": deep, "wide": "[" + ",".join(["1"] * 5000) + "]"}))
        sock.send(forged_frame("evil.deep", 2, {}))
        assert http_receiver.wait_records(2), (pipe.otlp.stats, pipe.listener.stats)
        first, second = http_receiver.exported()
        level, depth = first.attributes["deep"], 0
        while isinstance(level, list):
            [level] = level
            depth += 1
        assert depth == 8 and "nested deeper than 8 levels" in level
        assert len(first.attributes["wide"]) == 256
        assert second.body == "forged"
        assert pipe.otlp.stats["truncated"] == 2

    def test_huge_extras(self, http_receiver, make_otlp, pipeline):
        """Extras near the message size limit export within the mapping limits, counted as truncated."""
        pipe = pipeline(make_otlp(http_receiver.url))
        pipe.logger.info(
            "huge",
            extra={"blob": "x" * 200_000, "many": ["y" * 40] * 10_000, "map": {f"k{i}": i for i in range(5000)}},
        )
        pipe.logger.info("next")
        assert http_receiver.wait_records(2), pipe.otlp.stats
        huge, after = http_receiver.exported()
        assert huge.attributes["blob"].startswith("x" * 16384 + "... [logfabric: truncated")
        assert len(huge.attributes["many"]) == 256
        assert len(huge.attributes["map"]) == 256
        assert after.body == "next"
        assert pipe.otlp.stats["truncated"] >= 3

    def test_lone_surrogates_and_odd_local_values(self, http_receiver, make_otlp, make_logger):
        """Lone surrogates (names, message, keys, values), non-string keys, odd types and cycles all export."""

        class Colour(enum.IntEnum):
            RED = 1

        class Broken:
            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        cycle: list[object] = []
        cycle.append(cycle)
        otlp = make_otlp(http_receiver.url)
        log = make_logger("odd.\udcff.name", otlp)
        extra = {
            "text": "bad \udcff byte",
            "keys": {1: "int key", (2, 3): "tuple key", None: "none key", "\ud800": "surrogate key"},
            "colour": Colour.RED,
            "broken": Broken(),
            "cycle": cycle,
            "floats": [math.nan, math.inf],
            "raw": b"\x00\xff",
            "set": {1},
        }
        log.info("message \udcff", extra=extra)
        log.info("plain")
        assert http_receiver.wait_records(2), otlp.stats
        odd, plain = http_receiver.exported()
        assert odd.scope == "odd.\\udcff.name"
        assert odd.body == "message \\udcff"
        a = odd.attributes
        assert a["text"] == "bad \\udcff byte"
        assert a["keys"] == {"1": "int key", "(2, 3)": "tuple key", "None": "none key", "\\ud800": "surrogate key"}
        assert a["colour"] == 1
        assert a["broken"] == "<unrepresentable Broken: RuntimeError>"
        assert math.isnan(a["floats"][0]) and a["floats"][1] == math.inf
        assert a["raw"] == b"\x00\xff"
        assert a["set"] == [1]
        assert "nested deeper" in str(a["cycle"])
        assert plain.body == "plain"
        assert otlp.stats["errors"] == 0

    def test_a_record_that_cannot_be_mapped_is_counted_and_said_once(self, http_receiver, make_otlp, caplog):
        """A record whose message cannot be formatted is skipped, counted in errors, said once."""
        otlp = make_otlp(http_receiver.url)
        info = {"levelno": logging.INFO, "levelname": "INFO"}
        for _ in range(3):
            otlp.handle(logging.makeLogRecord({**info, "msg": "%d items", "args": ("many",)}))
        otlp.handle(logging.makeLogRecord({**info, "msg": "fine"}))
        assert http_receiver.wait_records(1)
        assert settled(otlp, 4)
        assert otlp.stats["errors"] == 3
        assert http_receiver.bodies() == ["fine"]
        assert wait_until(lambda: len(said(caplog, "could not be mapped")) == 1, 5)


class TestHostileReceivers:
    """Receivers that answer garbage, never answer, or answer nonsense: the exporter survives and says so once."""

    def test_garbage_answer_is_retried(self, http_receiver, make_otlp, make_logger, caplog):
        """Bytes that are not HTTP count as a failed attempt; the batch is sent again and arrives."""
        http_receiver.script.extend([GARBAGE, GARBAGE])
        otlp = make_otlp(http_receiver.url)
        make_logger(None, otlp).info("through garbage")
        assert http_receiver.wait_records(1, timeout=15)
        assert settled(otlp, 1)
        assert (otlp.stats["exported"], otlp.stats["retried"]) == (1, 2)
        assert len([m for m in said(caplog, "retrying") if "BadStatusLine" in m or "connection" in m]) >= 1

    def test_2xx_with_a_garbage_body_counts_as_taken(self, http_receiver, make_otlp, make_logger, caplog):
        """A 200 whose body is not an ExportLogsServiceResponse still took the records; it is said once."""
        http_receiver.script.extend([BAD_BODY, BAD_BODY])
        otlp = make_otlp(http_receiver.url)
        log = make_logger(None, otlp)
        log.info("one")
        assert settled(otlp, 1)
        log.info("two")
        assert settled(otlp, 2)
        assert otlp.stats["exported"] == 2
        assert wait_until(lambda: len(said(caplog, "not an ExportLogsServiceResponse")) == 1, 5)

    def test_receiver_that_never_answers(self, make_otlp, make_logger, caplog):
        """A receiver that accepts and never answers times out each attempt; close() still ends in time."""
        silent = SilentServer()
        try:
            otlp = make_otlp(silent.url, timeout=0.5, flush_timeout=1.5)
            log = make_logger(None, otlp)
            for i in range(10):
                log.info("unanswered %d", i)
            assert wait_until(lambda: otlp.stats["retried"] >= 2, 10), otlp.stats
            start = time.monotonic()
            otlp.close()
            assert time.monotonic() - start < 3.0
            stats = otlp.stats
            assert (stats["exported"], stats["dropped"], stats["queued"]) == (0, 10, 0)
            assert len(said(caplog, "no answer within the timeout")) == 1
        finally:
            silent.close()

    def test_hanging_request_does_not_block_logging(self, http_receiver, make_otlp, make_logger):
        """While a request hangs, logging calls return at once (the queue takes them)."""
        http_receiver.script.append(HANG)
        otlp = make_otlp(http_receiver.url, timeout=2.0)
        log = make_logger(None, otlp)
        log.info("first")
        assert http_receiver.wait_requests(1)
        start = time.monotonic()
        for i in range(1000):
            log.info("meanwhile %d", i)
        assert time.monotonic() - start < 2.0
        assert http_receiver.wait_records(1001, timeout=20), otlp.stats
        assert otlp.stats["retried"] >= 1
