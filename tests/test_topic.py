"""Unit tests for fabric.topic: topic bytes, the message framing, SUB prefixes and the exact filter."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric import codec
from fabric.topic import (
    MAX_TOPIC,
    bucket,
    join_message,
    lead,
    level_buckets,
    make_topic,
    matches,
    split_message,
    subscriptions,
)

ALL_BUCKETS = [str(d).encode() for d in range(10)]
IDENTITY = codec.ProducerIdentity("svc", "host", 1, 7)


def covered(topic: bytes, prefixes: list[bytes]) -> bool:
    """What libzmq does with SUB prefixes: does any prefix start the topic?"""
    return any(topic.startswith(prefix) for prefix in prefixes)


class TestBucket:
    @pytest.mark.parametrize(
        ("levelno", "expected"),
        [
            (-(2**31), b"0"),
            (-1, b"0"),
            (0, b"0"),
            (5, b"0"),
            (9, b"0"),
            (10, b"1"),
            (25, b"2"),
            (30, b"3"),
            (50, b"5"),
            (99, b"9"),
            (1000, b"9"),
            (2**31 - 1, b"9"),
        ],
    )
    def test_bucket(self, levelno: int, expected: bytes) -> None:
        """The bucket is min(levelno // 10, 9) as one ASCII digit, 0 for negative levels."""
        assert bucket(levelno) == expected

    @given(st.integers(-(2**40), 2**40))
    @settings(max_examples=200, deadline=None)
    def test_bucket_is_one_digit_and_monotonic(self, levelno: int) -> None:
        """Every level gets exactly one digit, and a higher level never gets a lower bucket."""
        assert len(bucket(levelno)) == 1
        assert bucket(levelno).isdigit()
        assert bucket(levelno) <= bucket(levelno + 1)


class TestMakeTopic:
    def test_layout(self) -> None:
        """A topic is BUCKET LOGGER NUL SERVICE."""
        assert make_topic(30, "app.db", "billing") == b"3app.db\x00billing"

    def test_nul_replaced(self) -> None:
        """NUL inside a logger or service name becomes '?', keeping one unambiguous terminator."""
        topic = make_topic(20, "a\x00b", "s\x00t")
        assert topic == b"2a?b\x00s?t"
        assert topic.count(b"\x00") == 1

    def test_utf8(self) -> None:
        """Names are UTF-8 encoded."""
        assert make_topic(40, "café", "服务") == b"4caf\xc3\xa9\x00" + "服务".encode()

    @pytest.mark.parametrize("name", [b"mod\xff".decode("utf-8", "surrogateescape"), "mod\ud800", "\udfff"])
    def test_lone_surrogates_are_written_as_the_payload_writes_them(self, name: str) -> None:
        """A lone surrogate becomes its backslash escape, as in the payload, so the topic follows from the record."""
        topic = make_topic(10, name, "s\udc80")
        assert topic == b"1" + name.encode("utf-8", "backslashreplace") + b"\x00s\\udc80"
        payload = codec.encode(logging.makeLogRecord({"name": name, "levelno": 10, "msg": "m"}), IDENTITY, 1)
        decoded = codec.decode(payload).record
        assert make_topic(decoded.levelno, decoded.name, decoded.service) == make_topic(10, name, IDENTITY.service)

    def test_custom_level(self) -> None:
        """Custom levels land in the bucket of their decade."""
        assert make_topic(25, "x", "s")[:1] == b"2"
        assert make_topic(5, "x", "s")[:1] == b"0"

    @given(levelno=st.integers(-1000, 1000), name=st.text(max_size=30), service=st.text(max_size=30))
    @settings(max_examples=200, deadline=None)
    def test_single_terminator(self, levelno: int, name: str, service: str) -> None:
        """Whatever the names, the topic has exactly one NUL, between logger and service."""
        topic = make_topic(levelno, name, service)
        assert topic.count(b"\x00") == 1
        head, tail = topic.split(b"\x00")
        assert head == bucket(levelno) + name.replace("\x00", "?").encode()
        assert tail == service.replace("\x00", "?").encode()


class TestLevelBuckets:
    @pytest.mark.parametrize("level", [None, 0, -5])
    def test_no_level_means_every_bucket(self, level: int | None) -> None:
        """No level (or one at or below 0) selects all ten buckets."""
        assert level_buckets(level) == ALL_BUCKETS

    @pytest.mark.parametrize(
        ("level", "first"),
        [(1, 0), (10, 1), (25, 2), (30, 3), (99, 9), (1000, 9)],
    )
    def test_from_level_up(self, level: int, first: int) -> None:
        """A level selects its own bucket and every higher one."""
        assert level_buckets(level) == ALL_BUCKETS[first:]


class TestSubscriptions:
    @pytest.mark.parametrize(
        "kwargs",
        [{}, {"level": None}, {"level": 0}, {"loggers": [""]}, {"services": ["api"]}, {"loggers": ["", "app"]}],
    )
    def test_no_filter_subscribes_to_everything(self, kwargs: dict[str, object]) -> None:
        """With no level and no logger filter the only prefix is b"" (everything)."""
        assert subscriptions(**kwargs) == [b""]  # type: ignore[arg-type]

    def test_logger_prefix_is_dot_bounded(self) -> None:
        """`app.db` selects app.db and its descendants, but not app.dbx or app."""
        subs = subscriptions(loggers=["app.db"])
        assert covered(make_topic(20, "app.db", "svc"), subs)
        assert covered(make_topic(20, "app.db.pool", "svc"), subs)
        assert covered(make_topic(50, "app.db.pool.conn", "other"), subs)
        assert not covered(make_topic(20, "app.dbx", "svc"), subs)
        assert not covered(make_topic(20, "app", "svc"), subs)
        assert not covered(make_topic(20, "other.app.db", "svc"), subs)

    def test_level_only(self) -> None:
        """level=WARNING subscribes to buckets 3-9: 30, 31, 35, 40, 50 pass, 20 and 25 do not."""
        subs = subscriptions(level=30)
        assert subs == ALL_BUCKETS[3:]
        for levelno in (30, 31, 35, 40, 50, 1000):
            assert covered(make_topic(levelno, "any", "svc"), subs), levelno
        for levelno in (0, 10, 20, 25, 29):
            assert not covered(make_topic(levelno, "any", "svc"), subs), levelno

    def test_level_inside_bucket(self) -> None:
        """level=25 subscribes to bucket 2 (so 25 arrives); matches() then drops the 20s."""
        subs = subscriptions(level=25)
        assert subs[0] == b"2"
        assert covered(make_topic(25, "a", "s"), subs)
        assert covered(make_topic(20, "a", "s"), subs)  # superset: same bucket
        assert not covered(make_topic(19, "a", "s"), subs)
        assert matches(25, "a", "s", level=25)
        assert matches(29, "a", "s", level=25)
        assert not matches(20, "a", "s", level=25)
        assert not matches(24, "a", "s", level=25)

    def test_level_and_logger(self) -> None:
        """Level and logger combine: every selected bucket times every logger prefix."""
        subs = subscriptions(level=40, loggers=["app"])
        assert covered(make_topic(40, "app", "s"), subs)
        assert covered(make_topic(50, "app.web", "s"), subs)
        assert not covered(make_topic(30, "app", "s"), subs)
        assert not covered(make_topic(40, "lib", "s"), subs)
        assert len(subs) == 6 * 2  # buckets 4-9, each with "app\0" and "app."

    def test_several_loggers(self) -> None:
        """Several logger prefixes select the union of their subtrees."""
        subs = subscriptions(loggers=["app", "lib.io"])
        assert covered(make_topic(20, "app.x", "s"), subs)
        assert covered(make_topic(20, "lib.io", "s"), subs)
        assert not covered(make_topic(20, "lib", "s"), subs)
        assert not covered(make_topic(20, "lib.iox", "s"), subs)

    def test_services_narrow_exact_logger(self) -> None:
        """With services, the logger itself is selected only for those services (by prefix)."""
        subs = subscriptions(loggers=["app"], services=["api"])
        assert covered(make_topic(20, "app", "api"), subs)
        assert not covered(make_topic(20, "app", "worker"), subs)
        # Descendants are selected for any service; matches() finishes the job.
        assert covered(make_topic(20, "app.web", "worker"), subs)
        assert not matches(20, "app.web", "worker", services=["api"])
        # A service that merely starts with "api" passes the prefix but not matches().
        assert covered(make_topic(20, "app", "api-v2"), subs)
        assert not matches(20, "app", "api-v2", loggers=["app"], services=["api"])
        assert matches(20, "app", "api", loggers=["app"], services=["api"])

    def test_nul_in_logger_filter(self) -> None:
        """A NUL in a logger filter is cleaned the same way as in topics, so the prefix still selects."""
        subs = subscriptions(loggers=["a\x00b"])
        assert covered(make_topic(20, "a\x00b", "s"), subs)
        assert all(prefix.count(b"\x00") <= 1 for prefix in subs)

    def test_accepts_iterables(self) -> None:
        """loggers and services may be any iterable, generators included."""
        subs = subscriptions(level=50, loggers=(n for n in ["app"]), services=iter(["api"]))
        assert subs == [b"5app\x00api", b"5app.", b"6app\x00api", b"6app."] + [
            p for d in b"789" for p in (bytes([d]) + b"app\x00api", bytes([d]) + b"app.")
        ]


class TestTopicLength:
    def test_cap_is_the_grammar_with_4094_bytes_of_names(self) -> None:
        """MAX_TOPIC is 4096: a bucket byte, a NUL and 4,094 bytes of logger and service names."""
        assert MAX_TOPIC == 4096
        assert len(make_topic(20, "a" * 4000, "s" * 94)) == MAX_TOPIC

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"loggers": ["a" * 4095]},
            {"loggers": ["app"], "services": ["s" * 4092]},
            {"level": 40, "loggers": ["é" * 2048]},
        ],
    )
    def test_a_filter_longer_than_a_topic_is_refused(self, kwargs: dict[str, object]) -> None:
        """A subscription that no topic could match (and a broker would refuse) is a clear ValueError."""
        with pytest.raises(ValueError, match=r"at most 4096 bytes"):
            subscriptions(**kwargs)  # type: ignore[arg-type]

    def test_the_longest_filter_that_fits_is_accepted(self) -> None:
        """A prefix of exactly MAX_TOPIC bytes is still a valid subscription."""
        subs = subscriptions(level=50, loggers=["a" * 4093], services=["s"])
        assert max(len(p) for p in subs) == MAX_TOPIC


class TestFraming:
    """A message is one frame, ``topic NUL payload``; lead() and split_message() are its two ends."""

    def test_lead_is_the_topic_and_its_delimiter(self) -> None:
        """lead(topic) + payload is the message join_message builds, and split_message takes it apart again."""
        topic = make_topic(logging.WARNING, "app.db", "checkout")
        assert lead(topic) == b"3app.db\x00checkout\x00"
        for payload in (b"", b"\x01body", b"\x00\x00nuls inside"):
            assert lead(topic) + payload == join_message(topic, payload)
            assert split_message(lead(topic) + payload) == (topic, payload)

    def test_a_topic_of_exactly_max_topic_bytes_splits(self) -> None:
        """The longest topic a producer can make is split back whole, its NUL at offset MAX_TOPIC."""
        topic = make_topic(20, "a" * 4000, "s" * 94)
        assert len(topic) == MAX_TOPIC
        assert split_message(lead(topic) + b"payload") == (topic, b"payload")

    @pytest.mark.parametrize(
        ("frame", "why"),
        [
            pytest.param(b"", "no topic delimiter: an empty frame", id="empty"),
            pytest.param(b"no delimiter", "no topic delimiter: no NUL in the frame", id="no-nul"),
            pytest.param(b"2app\x00svc", "no topic delimiter: one NUL (the topic's own)", id="one-nul"),
            pytest.param(
                b"2" + b"a" * MAX_TOPIC + b"\x00svc\x00payload",
                f"no topic delimiter in the first {MAX_TOPIC + 1} bytes: a topic over {MAX_TOPIC} bytes",
                id="topic-over-the-bound",
            ),
            pytest.param(
                b"a" * MAX_TOPIC + b"\x00payload",
                f"in the first {MAX_TOPIC + 1} bytes",
                id="lone-nul-at-the-bound",
            ),
            pytest.param(b"x" * 1_000_000, f"in the first {MAX_TOPIC + 1} bytes", id="a-megabyte-without-nul"),
        ],
    )
    def test_a_frame_that_is_not_a_message_is_refused_with_its_reason(self, frame: bytes, why: str) -> None:
        """Empty, no NUL, one NUL, or the topic's end past MAX_TOPIC bytes: a ValueError saying which."""
        with pytest.raises(ValueError) as caught:
            split_message(frame)
        assert why in str(caught.value)
        assert f"with a topic of at most {MAX_TOPIC} bytes" in str(caught.value)

    @given(
        logger=st.sampled_from([0, 1, MAX_TOPIC - 2, MAX_TOPIC - 1, MAX_TOPIC, MAX_TOPIC + 1])
        | st.integers(0, MAX_TOPIC + 2),
        service=st.sampled_from([0, 1, 2]) | st.integers(0, MAX_TOPIC + 2),
        nuls=st.integers(0, 2),
        payload=st.binary(max_size=20),
    )
    @settings(max_examples=300, deadline=None)
    def test_split_agrees_with_the_grammar_around_the_bound(
        self, logger: int, service: int, nuls: int, payload: bytes
    ) -> None:
        """A frame splits exactly when its second NUL ends a topic of at most MAX_TOPIC bytes."""
        frame = b"l" * logger + b"\x00" * (nuls >= 1) + b"s" * service + b"\x00" * (nuls >= 2) + payload
        pieces = frame.split(b"\x00", 2)
        fits = len(pieces) == 3 and len(pieces[0]) + 1 + len(pieces[1]) <= MAX_TOPIC
        if not fits:
            with pytest.raises(ValueError, match="no topic delimiter"):
                split_message(frame)
            return
        topic, rest = split_message(frame)
        assert (topic, rest) == (pieces[0] + b"\x00" + pieces[1], pieces[2])
        assert lead(topic) + rest == frame


class TestMatches:
    def test_no_filter(self) -> None:
        """No filter passes every record."""
        assert matches(-5, "", "")
        assert matches(50, "anything", "svc")

    def test_level(self) -> None:
        """A record passes at or above the level."""
        assert matches(30, "a", "s", level=30)
        assert matches(31, "a", "s", level=30)
        assert not matches(29, "a", "s", level=30)

    def test_logger(self) -> None:
        """A logger prefix matches the logger itself and dotted descendants only."""
        assert matches(20, "app.db", "s", loggers=["app.db"])
        assert matches(20, "app.db.pool", "s", loggers=["app.db"])
        assert not matches(20, "app.dbx", "s", loggers=["app.db"])
        assert not matches(20, "app", "s", loggers=["app.db"])
        assert matches(20, "whatever", "s", loggers=["app.db", ""])

    def test_services(self) -> None:
        """A service filter matches service names exactly."""
        assert matches(20, "a", "api", services=["api", "web"])
        assert matches(20, "a", "web", services=["api", "web"])
        assert not matches(20, "a", "api2", services=["api", "web"])
        assert not matches(20, "a", "ap", services=["api"])

    def test_all_filters_combine(self) -> None:
        """Level, logger and service must all pass."""
        args = {"level": 30, "loggers": ["app"], "services": ["api"]}
        assert matches(40, "app.x", "api", **args)  # type: ignore[arg-type]
        assert not matches(20, "app.x", "api", **args)  # type: ignore[arg-type]
        assert not matches(40, "lib", "api", **args)  # type: ignore[arg-type]
        assert not matches(40, "app.x", "web", **args)  # type: ignore[arg-type]


_NAMES = st.text(alphabet="ab.\x00é", max_size=6)
_LEVELS = st.integers(-30, 130)


class TestSubscriptionsAreASuperset:
    @given(
        levelno=_LEVELS,
        name=_NAMES,
        service=_NAMES,
        level=st.none() | _LEVELS,
        loggers=st.lists(_NAMES, max_size=3),
        services=st.lists(_NAMES, max_size=3),
    )
    @settings(max_examples=1000, deadline=None)
    def test_every_match_is_subscribed(
        self,
        levelno: int,
        name: str,
        service: str,
        level: int | None,
        loggers: list[str],
        services: list[str],
    ) -> None:
        """Whatever matches() accepts, the SUB prefixes let through: libzmq never drops a wanted record."""
        if matches(levelno, name, service, level, loggers, services):
            assert covered(make_topic(levelno, name, service), subscriptions(level, loggers, services))

    @given(levelno=_LEVELS, name=_NAMES, service=_NAMES, level=st.none() | _LEVELS)
    @settings(max_examples=300, deadline=None)
    def test_level_only_prefixes_are_exact_per_bucket(
        self, levelno: int, name: str, service: str, level: int | None
    ) -> None:
        """With only a level, a topic is subscribed exactly when its bucket holds levels >= level."""
        topic = make_topic(levelno, name, service)
        expected = level is None or level <= 0 or bucket(levelno) >= bucket(level)
        assert covered(topic, subscriptions(level)) == expected
