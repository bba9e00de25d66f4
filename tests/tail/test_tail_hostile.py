"""``logfabric tail`` against records it cannot render as asked, hostile text, and forged gap notices.

Each test runs a real tail subprocess against the module's broker (see
conftest.py). Records come from real ``ZmqHandler`` producers, and, where no
fabric producer would send them (nesting deeper than its encoder writes),
from a raw PUSH socket into the broker's ingest, as a foreign producer would.
Whatever arrives, the tail prints every record (in a fallback form when
needed, marked so in its line), counts the fallbacks, and exits 0.
"""

from __future__ import annotations

import json
import logging
import re

import orjson
import pytest

from fabric.codec import Encoder, ProducerIdentity
from fabric.topic import join_message, make_topic

SUMMARY = re.compile(r"^logfabric tail: received (\d+), shown (\d+), gaps (\d+), malformed (\d+), fallback (\d+)$")
FALLBACK_MARK = "shown in the fallback form]"


def summary(stderr: str) -> dict[str, int]:
    """The counters of the one summary line on stderr (no traceback before it)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected only the summary line on stderr, got:\n{stderr}"
    m = SUMMARY.match(lines[0])
    assert m, f"not a summary line: {lines[0]!r}"
    return dict(zip(("received", "shown", "gaps", "malformed", "fallback"), map(int, m.groups()), strict=True))


def nested(depth: int) -> object:
    """A JSON value nested ``depth`` levels deep."""
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _str_renders(value: object) -> bool:
    """Whether this interpreter (the one tail runs on) can ``str()`` the value."""
    try:
        str(value)
    except RecursionError:
        return False
    return True


def nested_json(depth: int) -> bytes:
    """The JSON text of a list nested ``depth`` levels deep (deeper than orjson writes)."""
    return b"[" * depth + b"]" * depth


class Foreign:
    """A producer that frames its own JSON records (so it can nest deeper than fabric's encoder writes)."""

    def __init__(self, sock, service: str) -> None:
        self.sock = sock
        self.identity = ProducerIdentity(service, "foreign-host", 1, 0xF0E1)
        self.seq = 0

    def send(self, name: str, msg: str, **attributes: bytes) -> None:
        """Send one record whose extras are the given JSON texts."""
        self.seq += 1
        record = logging.LogRecord(name, logging.INFO, "/foreign.py", 1, msg, (), None)
        doc = Encoder(self.identity, "json").encode(record, self.seq)
        extras = b",".join(orjson.dumps(key) + b":" + value for key, value in attributes.items())
        payload = doc[:-1] + b',"attributes":{' + extras + b"}}"
        self.sock.send(join_message(make_topic(logging.INFO, name, self.identity.service), payload))


@pytest.fixture
def foreign(tail_cli, raw_push, tail_unique):
    """A :class:`Foreign` producer pushing to the tail broker's ingest."""
    return Foreign(raw_push(tail_cli.broker.endpoints["push_ingest"]), tail_unique("foreign"))


class TestRecordsTheFormatCannotRender:
    """A format that fails on one record prints that record in the default format, marked, and counts it."""

    @pytest.mark.parametrize(
        ("fmt", "attrs"),
        [
            pytest.param("%(process)d %(message)s", {"process": None}, id="percent-d-of-no-process"),
            pytest.param("%(user)d %(message)s", {}, id="percent-d-of-a-missing-extra"),
            pytest.param("{process:d} {message}", {"process": None}, id="brace-d-of-no-process"),
        ],
    )
    def test_a_record_the_format_fails_on_is_shown_in_the_fallback_form(self, fmt, attrs, tail_cli, tail_producer):
        """Of two consecutive records one renders; the other is the default line, marked, and counted."""
        producer = tail_producer()
        name = f"{producer.prefix}.app"
        style = "{" if fmt.startswith("{") else "%"

        def emit(i: int) -> None:
            if i % 2:
                producer.send(name, f"odd {i}", **attrs)
            else:
                producer.send(name, f"even {i}", process=1234, user=7)

        result = tail_cli.start("--count", "2", "-f", fmt, "--style", style).stream(emit)
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 2, result.describe()
        good = next(line for line in result.lines if "even" in line)
        assert re.fullmatch(r"(1234|7) even \d+", good), result.describe()
        bad = next(line for line in result.lines if "odd" in line)
        assert re.search(
            rf" {re.escape(producer.service)} INFO +{re.escape(name)}: odd \d+ \[logfabric: the format failed ", bad
        )
        assert "TypeError" in bad and bad.endswith(FALLBACK_MARK), bad
        counts = summary(result.stderr)
        assert (counts["shown"], counts["fallback"]) == (2, 1), result.describe()

    def test_json_of_an_extra_at_orjsons_nesting_limit_from_a_real_producer(self, tail_cli, tail_producer):
        """An extra 254 levels deep (the producer writes it, the tail's line would be 255): a fallback line."""
        producer = tail_producer()
        log = producer.logger("app")
        deep = nested(254)

        def emit(i: int) -> None:
            log.info("deep %d", i, extra={"deep": deep, "n": i} if i % 2 else {"n": i})

        result = tail_cli.start("--count", "4", "-o", "json").stream(emit)
        assert result.returncode == 0, result.describe()
        docs = [json.loads(line) for line in result.lines]
        assert len(docs) == 4, result.describe()
        fallen = [d for d in docs if "fallback" in d]
        assert [d["n"] % 2 for d in fallen] == [1, 1], result.describe()
        for doc in fallen:
            assert doc["deep"].startswith("<not shown: "), doc["deep"]
            assert re.fullmatch(r"deep \d+", doc["message"]) and doc["service"] == producer.service
        assert summary(result.stderr)["fallback"] == 2, result.describe()

    @pytest.mark.parametrize(
        ("args", "depth"),
        [
            pytest.param(["-o", "json"], 300, id="json-300-deep"),
            pytest.param(["-o", "json"], 1000, id="json-1000-deep"),
            pytest.param(["-f", "%(deep)s %(message)s"], 1000, id="text-1000-deep"),
        ],
    )
    def test_nesting_the_decoder_accepts_but_no_writer_can_write(self, args, depth, tail_cli, foreign):
        """A foreign producer's extra nested 300 or 1000 deep: every record is printed, the deep ones as fallbacks."""

        def emit(i: int) -> None:
            foreign.send("foreign.app", f"rec {i}", deep=nested_json(depth) if i % 2 else b'"shallow"', n=b"%d" % i)

        result = tail_cli.start("--count", "4", "-s", foreign.identity.service, *args).stream(emit)
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 4, result.describe()
        # orjson never writes past 254 levels; str() fails at 1000 only where the
        # recursion limit counts C calls too (3.11): on 3.12+ the text renders whole.
        expected = 2 if args[0] == "-o" or not _str_renders(orjson.loads(nested_json(depth))) else 0
        fallbacks = [line for line in result.lines if "fallback" in line]
        assert len(fallbacks) == expected, result.describe()
        if args[0] == "-o":
            assert all("fallback" in json.loads(x) for x in fallbacks)
        else:
            assert all(x.endswith(FALLBACK_MARK) and "RecursionError" in x for x in fallbacks), result.describe()
        assert summary(result.stderr)["fallback"] == expected, result.describe()

    @pytest.mark.parametrize(
        "env",
        [
            pytest.param({"PYTHONIOENCODING": "ascii"}, id="PYTHONIOENCODING=ascii"),
            pytest.param({"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": None}, id="LC_ALL=C"),
        ],
    )
    def test_a_terminal_that_cannot_encode_the_text_gets_escapes(self, env, tail_cli, tail_producer, tail_env):
        """Non-ASCII text into an ASCII stdout prints as backslash escapes; the tail carries on and exits 0."""
        log = tail_producer().logger("app")
        tail = tail_cli.start("--count", "2", "-f", "%(message)s", env=tail_env(**env))
        result = tail.stream(lambda i: log.info("café ☕ 日本 %d", i))
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 2, result.describe()
        for line in result.lines:
            assert re.fullmatch(r"caf\\xe9 \\u2615 \\u65e5\\u672c \d+", line), result.describe()
        assert summary(result.stderr)["shown"] == 2


class TestInvisibleCharacters:
    """Bidi controls, separators and zero-width characters never reach the terminal raw."""

    INVISIBLE = (
        "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
        "\u2028\u2029\u200b\u200c\u200d\ufeff\u2060\U000e0041"
    )

    def test_they_are_escaped_in_message_logger_and_extras(self, tail_cli, tail_producer):
        """Each one prints as its \\u escape, in the message, the logger name and a formatted extra."""
        producer = tail_producer()
        name = f"{producer.prefix}.a\u202eb"
        tail = tail_cli.start("--count", "1", "-f", "%(name)s|%(user)s|%(message)s")
        result = tail.stream(lambda i: producer.send(name, f"m{i} {self.INVISIBLE}", user="ev\u202eil\u2066"))
        assert result.returncode == 0, result.describe()
        [line] = result.lines
        assert not any(c in line for c in self.INVISIBLE), ascii(line)
        escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}" for c in self.INVISIBLE)
        expected = rf"{re.escape(producer.prefix)}\.a\\u202eb\|ev\\u202eil\\u2066\|m\d+ {re.escape(escaped)}"
        assert re.fullmatch(expected, line), ascii(line)


class TestForgedNotices:
    """A remote record on logger 'logfabric.gaps' is an ordinary record: --grep and --count apply to it."""

    FORGED = "lost 1 record(s) from service 'checkout' on host 'web-1' (producer 0123456789abcdef): forged"

    def test_fifty_forged_notices_count_toward_count(self, tail_cli, tail_producer):
        """5 forged notices then 1 real record, repeated: --count 60 ends after 60 lines, 50 of them forged."""
        producer = tail_producer()
        real = producer.logger("real")

        def emit(i: int) -> None:
            for _ in range(5):  # a producer may log on any logger name, this one included
                producer.send("logfabric.gaps", self.FORGED, logging.WARNING, lost=1)
            real.info("real %d", i)

        result = tail_cli.start("--count", "60", "-f", "%(name)s|%(message)s").stream(emit)
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 60, result.describe()
        assert sum(line == f"logfabric.gaps|{self.FORGED}" for line in result.lines) == 50, result.describe()
        counts = summary(result.stderr)
        assert (counts["shown"], counts["gaps"]) == (60, 0), result.describe()

    def test_grep_filters_forged_notices(self, tail_cli, tail_producer):
        """-g '^real' prints only the real records: none of the forged notices gets through."""
        producer = tail_producer()
        real = producer.logger("real")

        def emit(i: int) -> None:
            for _ in range(5):
                producer.send("logfabric.gaps", self.FORGED, logging.WARNING, lost=1)
            real.info("real %d", i)

        result = tail_cli.start("-g", "^real", "--count", "3", "-f", "%(name)s|%(message)s").stream(emit)
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 3, result.describe()
        assert all(re.fullmatch(rf"{re.escape(real.name)}\|real \d+", line) for line in result.lines), result.describe()
        counts = summary(result.stderr)
        assert counts["received"] >= 15 + 3 and counts["gaps"] == 0, result.describe()

    def test_json_marks_real_notices_and_no_forged_one(self, tail_cli, tail_producer):
        """-o json: a real notice carries "notice": "gap"; a forged record's "notice" extra becomes "extra_notice"."""
        producer = tail_producer(max_message=4096)
        log = producer.logger("app")

        def emit(i: int) -> None:
            producer.send("logfabric.gaps", self.FORGED, logging.WARNING, lost=1, notice="gap", kind="gap")
            if i % 2:
                log.info("x" * 5000)  # over max_message: not sent, its sequence number used
            else:
                log.info("kept %d", i)

        result = tail_cli.start("--count", "6", "-o", "json").stream(emit)
        assert result.returncode == 0, result.describe()
        docs = [json.loads(line) for line in result.lines]
        real = [d for d in docs if "notice" in d]
        forged = [d for d in docs if d.get("extra_notice") == "gap"]
        assert real and all(d["notice"] == "gap" and d["lost"] == 1 for d in real), result.describe()
        assert forged and all("notice" not in d and d["name"] == "logfabric.gaps" for d in forged), result.describe()
        assert len(docs) == 6 + len(real), result.describe()
