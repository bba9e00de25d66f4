"""Scenario 9: poisoned records, forged topics, format bombs and CR/LF forging, as raw frames over a real socket.

Every message is framed the way real producers frame theirs right now (see
``TopicWire`` in tests/fuzz/framing.py: the layout learnt from a real handler,
and the topic each record makes), so these tests follow a change of frame
layout. Topics are input too: a valid payload under a topic it does not make,
or under one longer than a topic can be, is poison like any other.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import zmq

import fabric
from fabric.codec import ProducerIdentity
from fabric.tail import SafeFormatter
from fabric.topic import MAX_TOPIC
from tests.fuzz.framing import TopicWire

pytestmark = pytest.mark.timeout(120)

Factory = Callable[..., Any]
IDENTITY = ProducerIdentity("hostile", "evil-host", 666, 0xBADC0FFEE)
BOMB = "%100000000s"


@pytest.fixture(scope="module")
def rel_wire() -> TopicWire:
    """The current frame layout, learnt from a real handler, with each payload's own topic."""
    return TopicWire.learn(service="wire", name="rel.wire")


class Crafter:
    """Valid payloads from a hostile producer, with sequence numbers counted per logger (per topic)."""

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}

    def payload(self, msg: str, *, name: str = "rel.hostile", codec: str = "protobuf", **attrs: object) -> bytes:
        seq = self.seqs[name] = self.seqs.get(name, 0) + 1
        record = logging.LogRecord(name, logging.WARNING, "/evil.py", 1, msg, (), None)
        record.__dict__.update(attrs)
        return fabric.encode(record, IDENTITY, seq, codec)  # type: ignore[arg-type]

    def json_doc(self, **changes: object) -> bytes:
        doc = orjson.loads(self.payload("valid json", codec="json"))
        doc.update(changes)
        return orjson.dumps(doc)


def poisoned_payloads(craft: Crafter) -> dict[str, bytes]:
    """Payloads every subscriber must reject (and count)."""
    valid = craft.payload("a template")
    deep = b"[" * 5000 + b"]" * 5000
    return {
        "empty payload": b"",
        "unknown tag 0x02": b"\x02" + valid[1:],
        "random bytes": b"\xff" + os.urandom(512),
        "truncated protobuf": valid[: len(valid) // 2],
        "protobuf length beyond the end": b"\x01\x22\xff\xff\xff\xff\x0f",
        "protobuf nested 5000 groups deep": b"\x01" + b"\x0b" * 5000,
        "protobuf invalid UTF-8": b"\x01\x32\x02\xff\xfe",
        "JSON levelno as a string": craft.json_doc(levelno="50"),
        "JSON levelno as true": craft.json_doc(levelno=True),
        "JSON seq negative": craft.json_doc(producer={"service": "s", "producer_id": 1, "seq": -1}),
        "JSON producer not an object": craft.json_doc(producer=[1]),
        "JSON forbidden key msg": craft.json_doc(msg="shadow"),
        "JSON forbidden key args (a format bomb's vehicle)": craft.json_doc(args=[1], body=BOMB),
        "JSON extra shadowing getMessage": craft.json_doc(attributes={"getMessage": "x"}),
        "JSON extra shadowing __dict__": craft.json_doc(attributes={"__dict__": {}}),
        "JSON extra named args": craft.json_doc(attributes={"args": [1]}),
        "JSON extra name of 300 chars": craft.json_doc(attributes={"x" * 300: 1}),
        "JSON nested 5000 deep": b'{"v":1,"attributes":{"a":' + deep + b"}}",
        "JSON not an object": b"[1, 2, 3]",
        "JSON version 2": craft.json_doc(v=2),
        "JSON without required keys": b'{"v": 1}',
        "JSON cut short": craft.json_doc()[:40],
        "logger name of 10,000 chars (a 10,009-byte topic)": craft.payload("long name", name="n" * 10_000),
    }


def forged_topics(wire: TopicWire) -> dict[str, list[bytes]]:
    """Valid records (logger rel.hostile, WARNING, service hostile) under topics they do not make."""
    valid = Crafter().payload("under a forged topic")  # its own seq: rejected records must not open a gap
    return {
        "topic of another level bucket": wire.under(b"5rel.hostile\x00hostile", valid),
        "topic of another logger": wire.under(b"3rel.victim\x00hostile", valid),
        "topic of a logger prefix": wire.under(b"3rel\x00hostile", valid),
        "topic of another service": wire.under(b"3rel.hostile\x00victim", valid),
        "topic of a service prefix": wire.under(b"3rel.hostile\x00host", valid),
        "topic with a trailing byte": wire.under(b"3rel.hostile\x00hostile?", valid),
        "topic without a bucket": wire.under(b"rel.hostile\x00hostile", valid),
        "topic padded past the cap": wire.under(b"3rel.hostile\x00hostile" + b" " * MAX_TOPIC, valid),
    }


def test_poisoned_records_are_counted_capped_and_survived(
    rel_tcp_endpoint: str,
    rel_listener: Factory,
    rel_zmq: zmq.Context[zmq.Socket[bytes]],
    rel_wire: Any,
    rel: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """Every poisoned message is counted malformed, hostile valid records arrive capped and inert, nothing escapes."""
    diag = rel.Ledger()
    logging.getLogger("logfabric.listener").addHandler(diag)
    listener, ledger = rel_listener(rel_tcp_endpoint, mode="pull", bind=True)
    seen: list[logging.LogRecord] = []
    listener.handlers = (*listener.handlers, _Keep(seen))
    push = rel_zmq.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDTIMEO, 5000)
    push.connect(rel_tcp_endpoint)
    craft = Crafter()
    try:
        poison = {k: rel_wire.message(v) for k, v in poisoned_payloads(craft).items()}
        poison.update(forged_topics(rel_wire))
        good = rel_wire.message(craft.payload("good"))
        poison["three frames"] = [*good, b"extra"]
        poison["four frames of garbage"] = [b"a", b"b", b"c", b"d"]
        poison["one frame without a delimiter"] = [b"no delimiter here"]
        poison["one empty frame"] = [b""]
        forged = "ok\r\n2026-01-01 00:00:00 CRITICAL root: forged line\x1b[2J"
        hostile = {
            "huge message": craft.payload("m" * 600_000),
            "100 extras": craft.payload("extras", **{f"x{i}": i for i in range(100)}),
            "longest logger name a topic holds": craft.payload("long name", name="n" * (MAX_TOPIC - 9)),
            "huge exc_text (json)": craft.payload("tb", codec="json", exc_text="T" * 300_000),
            "CR/LF forging": craft.payload(forged, exc_text="Traceback\nCRITICAL root: forged too"),
            "format bomb message": craft.payload(BOMB),
            "format directives": craft.payload("%(message)s %(asctime)s {0} {message} %d"),
            "format bomb extra": craft.payload("bomb extra", fmt=BOMB),
        }
        for message in poison.values():
            push.send_multipart(message)
        for payload in hostile.values():
            push.send_multipart(rel_wire.message(payload))
        push.send_multipart(rel_wire.message(craft.payload("done", name="rel.done")))
        assert rel.wait_until(lambda: ledger.count("rel.done") == 1, timeout=10), listener.stats
    finally:
        logging.getLogger("logfabric.listener").removeHandler(diag)

    stats = listener.stats
    sent = len(poison) + len(hostile) + 1
    rel_figure(
        f"{sent} messages: {len(poison)} poisoned -> malformed {stats['malformed']}; {len(hostile) + 1} hostile but "
        f"valid -> received {stats['received']}, truncated {stats['truncated']}; errors {stats['errors']}; "
        f"diagnostics logged {diag.count('logfabric.listener')} (rate-limited)"
    )
    assert stats["malformed"] == len(poison), stats
    assert stats["received"] == len(hostile) + 1 and stats["filtered"] == 0, stats
    assert stats["received"] + stats["malformed"] + stats["filtered"] == sent
    assert stats["errors"] == 0 and stats["gaps"] == 0, stats
    assert listener._thread is not None and listener._thread.is_alive()
    assert diag.count("logfabric.listener") == 1, "malformed diagnostics must be rate-limited"
    # caps: 1 message, 36 extras, 1 exc_text
    assert stats["truncated"] == 1 + 36 + 1, stats
    huge = next(r for r in seen if r.msg.startswith("mmm"))
    assert len(huge.msg) < 131_072 + 100 and huge.msg.endswith("[logfabric: truncated 468928 chars]")
    extras = next(r for r in seen if r.msg == "extras")
    assert sum(1 for k in extras.__dict__ if k.startswith("x") and k[1:].isdigit()) == 64
    assert next(r for r in seen if r.msg == "long name").name == "n" * (MAX_TOPIC - 9)
    # format bombs are inert text: nothing is interpolated, nothing grows
    bomb = next(r for r in seen if r.msg == BOMB)
    assert bomb.args == () and bomb.getMessage() == BOMB
    assert logging.Formatter("%(message)s").format(bomb) == BOMB
    assert next(r for r in seen if r.msg == "bomb extra").fmt == BOMB
    # CR/LF and escapes arrive verbatim (documented) and a safe formatter keeps each record on its own line
    forged_record = next(r for r in seen if r.msg.startswith("ok\r\n"))
    assert forged_record.getMessage() == forged
    line = SafeFormatter("%(levelname)s %(name)s: %(message)s").format(forged_record)
    head, *continuation = line.split("\n")
    assert "\r" not in line and "\x1b" not in line and "\\r\\n" in head
    assert continuation and all(c.startswith("  | ") for c in continuation), line


class _Keep(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__()
        self.into = into
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock_:
            self.into.append(record)


@pytest.mark.parametrize("codec", ["protobuf", "json"])
def test_a_100000000s_format_bomb_costs_the_listener_less_than_10_mb(
    codec: str,
    rel_tcp_endpoint: str,
    rel_producer: Factory,
    rel_zmq: zmq.Context[zmq.Socket[bytes]],
    rel_wire: Any,
    rel_figure: Callable[[str], None],
) -> None:
    """A listener process formatting '%100000000s' bombs (as message, extra, JSON args) grows its peak RSS < 10 MB."""
    warmup = 200
    proc = rel_producer(rel_tcp_endpoint, warmup, script="listener_rss.py")
    proc.next_event("ready")
    push = rel_zmq.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDTIMEO, 5000)
    push.connect(rel_tcp_endpoint)
    craft = Crafter()
    for i in range(warmup):
        push.send_multipart(rel_wire.message(craft.payload(f"warm-up {i}", name="rel.warmup", codec=codec)))
    warm = proc.next_event("warm", timeout=30)
    bombs = [
        craft.payload(BOMB, codec=codec),
        craft.payload(BOMB * 1000, codec=codec),
        craft.payload("%(message)s" * 1000, codec=codec),
        craft.payload("bomb in an extra", codec=codec, fmt=BOMB, other="%(message)100000000s"),
        craft.json_doc(args=[1], body=BOMB),
        craft.json_doc(attributes={"args": ["x"]}, body=BOMB),
    ]
    for _ in range(20):
        for payload in bombs:
            push.send_multipart(rel_wire.message(payload))
    push.send_multipart(rel_wire.message(craft.payload("done", name="rel.done", codec=codec)))
    report = proc.finish(timeout=30)
    growth_kb = report["hwm_kb"] - warm["hwm_kb"]
    rel_figure(
        f"{codec}: {20 * len(bombs)} format bombs: peak RSS {warm['hwm_kb'] / 1024:.1f} -> "
        f"{report['hwm_kb'] / 1024:.1f} MiB (growth {growth_kb / 1024:.2f} MiB), longest formatted line "
        f"{report['longest_line']} chars, stats {report['stats']}"
    )
    assert growth_kb < 10 * 1024, f"peak RSS grew {growth_kb} KiB"
    assert report["alive"], "the listener thread died"
    assert report["stats"]["malformed"] == 40, report["stats"]  # the two JSON carriers of args, 20 times each
    assert report["stats"]["received"] == warmup + 80 + 1, report["stats"]
    assert report["longest_line"] < 100_000, "a bomb was expanded while formatting"
