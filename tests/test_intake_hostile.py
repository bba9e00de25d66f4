"""What a hostile peer can do to a receiver's framing, topics, gap table, sequence tracking and notices.

Real sockets over 127.0.0.1: a pull ``ZmqListener`` that binds, real
``ZmqHandler`` producers, and raw PUSH sockets for the forged messages. A
forged message travels on its own connection, so each step waits (bounded)
until the listener has handled the previous one: the order of arrival is then
the order of the steps.
"""

from __future__ import annotations

import gc
import logging
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import pytest

import fabric
from fabric._intake import REORDER_WINDOW, GapNotice, Intake
from fabric._record import ReceivedRecord
from fabric.codec import Encoder, ProducerIdentity
from fabric.topic import MAX_TOPIC, join_message, lead, make_topic

pytestmark = pytest.mark.timeout(180)


class Notices(logging.Handler):
    """Keeps gap notices and the records of chosen loggers; only counts the rest (a flood stays cheap)."""

    def __init__(self, *keep: str) -> None:
        super().__init__()
        self.keep = set(keep)
        self.notices: list[GapNotice] = []
        self.kept: list[logging.LogRecord] = []
        self.others = 0
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            if isinstance(record, GapNotice):
                self.notices.append(record)
            elif record.name in self.keep:
                self.kept.append(record)
            else:
                self.others += 1

    def about(self, producer_id: int, kind: str = "gap") -> list[GapNotice]:
        """The notices of ``kind`` about one producer."""
        with self.guard:
            return [n for n in self.notices if n.producer_id == f"{producer_id:016x}" and n.kind == kind]


def forged(identity: ProducerIdentity, name: str, seq: int, levelno: int = logging.INFO, msg: str = "x") -> bytes:
    """One valid message of ``identity`` under the topic its record makes."""
    record = logging.LogRecord(name, levelno, "/forged.py", 1, msg, (), None)
    return join_message(make_topic(levelno, name, identity.service), Encoder(identity).encode(record, seq))


@pytest.fixture
def pull(endpoint: str, make_listener: Callable[..., fabric.ZmqListener]) -> Callable[..., Any]:
    """``pull(*keep, **options)``: a started pull listener binding ``endpoint`` and its :class:`Notices`."""

    def make(*keep: str, **options: Any) -> tuple[fabric.ZmqListener, Notices]:
        notices = Notices(*keep)
        return make_listener(endpoint, notices, mode="pull", bind=True, **options), notices

    return make


def handled(listener: fabric.ZmqListener) -> int:
    s = listener.stats
    return s["received"] + s["malformed"] + s["filtered"]


def hostile_frames() -> dict[str, list[bytes]]:
    """Messages that are not ``topic NUL payload`` in one frame, by what is wrong with them."""
    valid = forged(ProducerIdentity("hostile", "h", 1, 10), "app", 1)
    topic, payload = valid.split(b"\x00", 1)[0], valid.split(b"\x00", 2)[2]
    return {
        "no frame": [],
        "an empty frame": [b""],
        "no NUL": [b"2app svc " + payload.replace(b"\x00", b"?")],
        "one NUL": [b"2app\x00svc"],
        "a topic one byte over the bound": [lead(make_topic(logging.INFO, "n" * (MAX_TOPIC - 4), "svc")) + payload],
        "a lone NUL at the bound": [b"2" + b"n" * (MAX_TOPIC - 1) + b"\x00" + payload],
        "a megabyte without NUL": [b"x" * 1_000_000],
        "two frames": [topic, payload],
        "two empty frames": [b"", b""],
    }


class TestFrames:
    """A message that is not one frame of ``topic NUL payload`` is counted malformed and skipped, never fatal."""

    def test_every_shape_is_counted_and_the_next_record_still_arrives(self, caplog: pytest.LogCaptureFixture):
        """Each hostile shape counts once in malformed, yields nothing and raises nothing; then a record decodes."""
        caplog.set_level(logging.WARNING, logger="logfabric.listener")
        intake = Intake()
        shapes = hostile_frames()
        for name, frames in shapes.items():
            assert intake.receive(frames) == [], name
        [record] = intake.receive([forged(ProducerIdentity("ok", "h", 1, 13), "app", 1, msg="after")])
        assert record.msg == "after"
        assert intake.stats["malformed"] == len(shapes) and intake.stats["received"] == 1, intake.stats
        said = [r.getMessage() for r in caplog.records if r.name == "logfabric.listener"]
        assert len(said) == 1 and "expected 1 frame (topic NUL payload), got 0" in said[0], said

    @pytest.mark.parametrize(
        ("shape", "reason"),
        [
            ("an empty frame", "no topic delimiter: an empty frame"),
            ("no NUL", "no topic delimiter: no NUL in the frame"),
            ("a topic one byte over the bound", f"a topic over {MAX_TOPIC} bytes"),
            ("a megabyte without NUL", f"no topic delimiter in the first {MAX_TOPIC + 1} bytes"),
            ("two frames", "expected 1 frame (topic NUL payload), got 2"),
        ],
    )
    def test_the_warning_says_what_was_wrong(self, shape: str, reason: str, caplog: pytest.LogCaptureFixture):
        """The (rate-limited) warning about a malformed message names its fault."""
        caplog.set_level(logging.WARNING, logger="logfabric.listener")
        Intake().receive(hostile_frames()[shape])
        [said] = [r.getMessage() for r in caplog.records if r.name == "logfabric.listener"]
        assert reason in said, said

    def test_a_listener_and_a_subscription_count_the_same(
        self, make_listener, make_subscription, raw_push, free_port, wait_until
    ):
        """The same hostile messages over real sockets, then a valid one: both receivers end with equal counts."""
        shapes = [frames for frames in hostile_frames().values() if frames]  # zmq sends no message of no frame
        sentinel = [forged(ProducerIdentity("ok", "h", 1, 14), "app", 1, msg="sentinel")]
        listening, subscribing = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
        notices = Notices("app")
        listener = make_listener(listening, notices, mode="pull", bind=True)
        records = make_subscription(subscribing, mode="pull", bind=True, timeout=10.0)
        for endpoint in (listening, subscribing):
            sock = raw_push(endpoint)
            for frames in [*shapes, sentinel]:
                sock.send_multipart(frames)
        assert next(records).msg == "sentinel"  # what came before it yielded nothing
        assert wait_until(lambda: handled(listener) == len(shapes) + 1, timeout=10), listener.stats
        assert [r.msg for r in notices.kept] == ["sentinel"]
        assert listener._thread is not None and listener._thread.is_alive()
        counted = {key: value for key, value in listener.stats.items() if key != "discarded"}
        assert counted == records.stats and records.stats["malformed"] == len(shapes), (counted, records.stats)


class TestTopics:
    """A topic is input: it must be the one the record makes, and at most MAX_TOPIC bytes."""

    def test_a_topic_over_the_cap_is_malformed_even_when_it_matches(self, pull, raw_push, endpoint, wait_until):
        """A record whose logger name makes a 10,009-byte topic is rejected; one of exactly 4096 bytes is not."""
        listener, notices = pull("n" * 10_000, "n" * (MAX_TOPIC - 9))
        sock = raw_push(endpoint)
        identity = ProducerIdentity("hostile", "h", 1, 11)
        sock.send(forged(identity, "n" * 10_000, 1, logging.WARNING))
        sock.send(forged(identity, "n" * (MAX_TOPIC - 9), 1, logging.WARNING))
        assert wait_until(lambda: handled(listener) == 2, timeout=10), listener.stats
        assert listener.stats["malformed"] == 1 and listener.stats["received"] == 1, listener.stats
        assert [len(r.name) for r in notices.kept] == [MAX_TOPIC - 9]

    @pytest.mark.parametrize(
        "topic",
        [
            pytest.param(b"5app.db\x00checkout", id="another-level-bucket"),
            pytest.param(b"2app.dbx\x00checkout", id="another-logger"),
            pytest.param(b"2app\x00checkout", id="a-logger-prefix"),
            pytest.param(b"2app.db\x00billing", id="another-service"),
            pytest.param(b"2app.db\x00check", id="a-service-prefix"),
            pytest.param(b"2app.db\x00checkout?", id="a-trailing-byte"),
            pytest.param(b"app.db\x00checkout", id="no-bucket"),
        ],
    )
    def test_a_topic_the_record_does_not_make_is_malformed(self, topic, pull, raw_push, endpoint, wait_until):
        """An INFO record of app.db from checkout under any other topic is counted malformed, never delivered."""
        listener, notices = pull("app.db")
        sock = raw_push(endpoint)
        identity = ProducerIdentity("checkout", "h", 1, 12)
        record = logging.LogRecord("app.db", logging.INFO, "/f.py", 1, "forged topic", (), None)
        for codec in ("protobuf", "json"):
            payload = Encoder(identity, codec).encode(record, 1)  # type: ignore[arg-type]
            sock.send(join_message(topic, payload))
        sock.send(forged(identity, "app.db", 2, msg="its own topic"))
        assert wait_until(lambda: handled(listener) == 3, timeout=10), listener.stats
        assert listener.stats["malformed"] == 2, listener.stats
        assert [r.msg for r in notices.kept] == ["its own topic"]


class TestGapTable:
    """The gap table is bounded, and a flood of new producer ids cannot push an active producer out of it."""

    FLOOD = 200_000

    def test_a_flood_of_forged_producer_ids_does_not_hide_a_real_producers_loss(
        self, pull, raw_push, endpoint, make_handler, make_logger, wait_until, capsys
    ):
        """200k forged ids (half while the producer logs, half in one burst); the producer's next loss is reported."""
        listener, notices = pull()
        handler = make_handler(endpoint, max_message=4096)
        log = make_logger(None, handler)
        flood = raw_push(endpoint)
        record = logging.LogRecord("flood", logging.INFO, "/flood.py", 1, "flood", (), None)
        doc = orjson.loads(Encoder(ProducerIdentity("flood", "h", 1, 0), "json").encode(record, 1))
        lead = make_topic(logging.INFO, "flood", "flood") + b"\x00"
        expected = 0

        def send(n: int, start: int) -> None:
            for pid in range(start, start + n):
                doc["producer"]["producer_id"] = pid + 1_000_000
                flood.send(lead + orjson.dumps(doc))

        def settle(count: int) -> None:
            assert wait_until(lambda: listener.stats["received"] == count, timeout=60), (count, listener.stats)

        for i in range(5):  # the producer is known, and seen more than once
            log.info("before %d", i)
        settle(expected := expected + 5)
        for chunk in range(5):  # it keeps logging while the first half of the flood arrives
            send(self.FLOOD // 10, chunk * self.FLOOD // 10)
            log.info("during %d", chunk)
            settle(expected := expected + self.FLOOD // 10 + 1)
        send(self.FLOOD // 2, self.FLOOD // 2)  # then half the flood at once, more than the table holds
        settle(expected := expected + self.FLOOD // 2)
        log.info("x" * 5000)  # over max_message: not sent, its sequence number used: a loss of 1
        log.info("after the loss")
        settle(expected + 1)
        assert handler.stats["oversize"] == 1, handler.stats
        [gap] = notices.about(handler.identity.producer_id)
        assert gap.lost == 1 and listener.stats["gaps"] == 1, (gap.getMessage(), listener.stats)
        with capsys.disabled():
            print(f"\nFIGURE gap table: {self.FLOOD} forged ids, the real producer's loss reported: {gap.getMessage()}")

    def test_entries_cost_the_same_whatever_the_topic_length(self, craft):
        """2,000 streams with 4,000-byte topics hold no more memory than 2,000 with 10-byte topics."""
        identity = craft.identity

        def retained(name: str) -> int:
            intake = Intake()
            frames = [[forged(ProducerIdentity(identity.service, "h", 1, pid), name, 1)] for pid in range(2000)]
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.take_snapshot()
                for frame in frames:
                    intake.receive(frame)
                del frame
                gc.collect()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            assert intake.stats["received"] == 2000, intake.stats
            kept = [s for s in after.compare_to(before, "filename") if "_intake" in str(s.traceback)]
            return sum(s.size_diff for s in kept)

        short, long = retained("a" * 10), retained("a" * 4000)
        assert long < short + 2000 * 200, f"short topics {short} B, long topics {long} B"


class TestSequence:
    """A forged sequence number cannot freeze tracking; normal late arrivals raise no alarm."""

    def test_a_forged_huge_seq_does_not_hide_the_producers_later_losses(
        self, pull, raw_push, endpoint, make_handler, make_logger, wait_until
    ):
        """After a forged record with the producer's id at seq 2**63, the producer's loss of 3 is still reported."""
        listener, notices = pull()
        handler = make_handler(endpoint, max_message=4096)
        log = make_logger(None, handler)
        for i in range(3):
            log.info("before %d", i)
        assert wait_until(lambda: listener.stats["received"] == 3, timeout=10), listener.stats
        victim = handler.identity
        spoof = ProducerIdentity(victim.service, victim.host, victim.pid, victim.producer_id)
        raw_push(endpoint).send(forged(spoof, log.name, 2**63, msg="forged"))
        assert wait_until(lambda: listener.stats["received"] == 4, timeout=10), listener.stats
        log.info("after the forgery")
        for _ in range(3):
            log.info("x" * 5000)  # over max_message: three sequence numbers used, nothing sent
        log.info("after the loss")
        assert wait_until(lambda: listener.stats["received"] == 6, timeout=10), listener.stats
        [resync] = notices.about(victim.producer_id, "resync")
        assert f"went back from {2**63} to 4" in resync.getMessage(), resync.getMessage()
        gaps = notices.about(victim.producer_id)
        assert [n.lost for n in gaps][-1] == 3, [n.getMessage() for n in gaps]
        assert "seq 5 to 7 never arrived" in gaps[-1].getMessage()
        assert listener.stats["resyncs"] == 1, listener.stats

    def test_late_arrivals_within_the_window_are_delivered_without_alarm(
        self, pull, raw_push, endpoint, craft, wait_until
    ):
        """seq 1, 2, 10, then 3 to 9 late: one gap of 7, the late ones delivered, no resync, nothing else."""
        listener, notices = pull("raw.late")
        sock = raw_push(endpoint)
        order = [1, 2, 10, *range(3, 10), 11]
        for seq in order:
            sock.send_multipart(craft.frames(craft.record("raw.late", f"seq {seq}"), seq))
        assert wait_until(lambda: listener.stats["received"] == len(order), timeout=10), listener.stats
        assert [n.lost for n in notices.notices] == [7]
        assert [r.seq for r in notices.kept] == order
        assert listener.stats["gaps"] == 7 and listener.stats["resyncs"] == 0, listener.stats

    def test_a_sequence_further_back_than_the_window_resyncs_and_says_so(
        self, pull, raw_push, endpoint, craft, wait_until
    ):
        """A seq more than REORDER_WINDOW below the highest restarts tracking with a notice; later gaps still count."""
        listener, notices = pull("raw.back")
        sock = raw_push(endpoint)
        high = REORDER_WINDOW + 50
        order = [high - 1, high, 49, 50, 52]  # 49 is REORDER_WINDOW + 1 back; then 51 is lost
        for seq in order:
            sock.send_multipart(craft.frames(craft.record("raw.back", f"seq {seq}"), seq))
        assert wait_until(lambda: listener.stats["received"] == len(order), timeout=10), listener.stats
        assert [n.kind for n in notices.notices] == ["resync", "gap"], [n.getMessage() for n in notices.notices]
        assert notices.notices[1].lost == 1 and "seq 51 to 51" in notices.notices[1].getMessage()
        assert listener.stats["resyncs"] == 1 and listener.stats["gaps"] == 1, listener.stats


class TestNotices:
    """Notices are made here, obey the filter, and no remote record can pass for one."""

    @pytest.mark.parametrize(
        ("options", "wanted", "unwanted"),
        [
            pytest.param({"level": "ERROR"}, ("app", logging.ERROR), ("app", logging.INFO), id="level"),
            pytest.param({"level": 25}, ("app", logging.INFO), ("app", logging.DEBUG), id="level-inside-a-bucket"),
            pytest.param({"loggers": ["app"]}, ("app.db", logging.INFO), ("lib", logging.INFO), id="logger"),
        ],
    )
    def test_a_notice_is_delivered_only_for_a_stream_the_filter_wants(
        self, options, wanted, unwanted, pull, raw_push, endpoint, craft, wait_until
    ):
        """A gap in a stream the filter excludes is counted but yields no notice; one in a wanted stream does."""
        listener, notices = pull(**options)
        sock = raw_push(endpoint)
        for name, levelno in (unwanted, wanted):
            for seq in (1, 3):
                sock.send_multipart(craft.frames(craft.record(name, f"{name} {seq}", levelno), seq))
        assert wait_until(lambda: handled(listener) == 4, timeout=10), listener.stats
        assert [(n.lost, n.levelno) for n in notices.notices] == [(1, logging.WARNING)], listener.stats
        assert f"logger {wanted[0]!r}" in notices.notices[0].getMessage()
        assert listener.stats["gaps"] == 2, listener.stats

    def test_a_service_filter_applies_to_notices(self, pull, raw_push, endpoint, wait_until):
        """services=['api']: a gap in service 'web' yields no notice, one in 'api' does."""
        listener, notices = pull(services=["api"])
        sock = raw_push(endpoint)
        for service in ("web", "api"):
            identity = ProducerIdentity(service, "h", 1, 77)
            for seq in (1, 3):
                sock.send(forged(identity, "app", seq))
        assert wait_until(lambda: handled(listener) == 4, timeout=10), listener.stats
        assert [n.service for n in notices.notices] == ["api"]

    def test_a_remote_record_on_logfabric_gaps_is_an_ordinary_record(
        self, pull, endpoint, make_handler, make_logger, wait_until
    ):
        """A producer logging to 'logfabric.gaps' (with lost and kind extras) arrives as a plain record."""
        listener, notices = pull("logfabric.gaps")
        log = make_logger("logfabric.gaps", make_handler(endpoint))
        for i in range(5):
            log.warning("lost %d record(s) from service 'x'", 100 + i, extra={"lost": 100 + i, "kind": "gap"})
        assert wait_until(lambda: listener.stats["received"] == 5, timeout=10), listener.stats
        assert notices.notices == []
        assert len(notices.kept) == 5 and all(type(r) is ReceivedRecord for r in notices.kept)
        assert listener.stats["gaps"] == 0
