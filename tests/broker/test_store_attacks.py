"""Attacks on the broker's record store (broker/_store.py, _segment.py, _store_feed.py): files and processes.

Tests that fail here show a defect in the current code; those that pass are
attacks the store withstood, kept as regressions. Brokers are real
``python -m broker --store DIR`` processes on 127.0.0.1, killed at teardown;
the store's files are real files.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

import broker._store
import fabric
from broker._errors import ConfigError
from broker._segment import INDEX, MAGIC, MAX_RECORD, TRAILER
from broker._store import Store
from broker._store_feed import StoreFeed
from broker.config import BrokerConfig
from tests.helpers.broker import BrokerProc
from tests.helpers.capture import Capture
from tests.helpers.waiting import poll_until, wait_until

pytestmark = pytest.mark.timeout(90)

MIB = 1024 * 1024
UP = "logfabric_broker_store_up"
RECORDS = "logfabric_broker_store_records"
APPENDS = "logfabric_broker_store_appends_total"


def frame(i: int, pad: bytes = b"", logger: bytes = b"app.db", level: int = 2) -> bytes:
    """One record as the wire carries it: ``BUCKET LOGGER NUL SERVICE NUL payload``."""
    return str(level).encode() + logger + b"\x00svc\x00\x01payload %d " % i + pad


def metric(broker: BrokerProc, name: str, **labels: str) -> float:
    return broker.metrics().get(name, **labels) or 0.0


def sealed_store(where: Path, records: int = 100) -> Path:
    """A store with one sealed segment of ``records`` records and an open one after it; return the sealed one."""
    store = Store(where)
    store.open()
    store.append([frame(i) for i in range(records)])
    store._roll()
    store.append([frame(records)])
    store.close()
    return sorted(where.glob("*.seg"))[0]


def flip_count(segment: Path, value: int) -> None:
    """Overwrite the record count in a sealed segment's trailer (the footer's CRC covers it since the fix)."""
    data = bytearray(segment.read_bytes())
    struct.pack_into("<I", data, len(data) - TRAILER.size + 8, value)
    segment.write_bytes(bytes(data))


def forge_count(segment: Path, value: int) -> None:
    """Overwrite the record count and recompute the trailer's CRC: the footer checks but does not fit the file."""
    data = bytearray(segment.read_bytes())
    tail = len(data) - TRAILER.size
    struct.pack_into("<I", data, tail + 8, value)
    at = struct.unpack_from("<Q", data, tail + 16)[0]
    crc = zlib.crc32(bytes(data[tail : tail + 24]), zlib.crc32(bytes(data[at:tail])))
    struct.pack_into("<I", data, tail + 24, crc)
    segment.write_bytes(bytes(data))


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Callable[..., BrokerProc]]:
    """Start ``python -m broker`` processes (``wait``: until ready); all killed at teardown."""
    started: list[BrokerProc] = []

    def start(*extra: str, wait: bool = True) -> BrokerProc:
        proc = BrokerProc(tmp_path, *extra)
        started.append(proc)
        proc.start()
        return proc.wait_ready() if wait else proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def zmq_ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A context whose sockets are all closed with linger 0 at teardown."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def raw_push(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    sock.connect(endpoint)
    return sock


# --------------------------------------------------------------------------- the files


class TestDamagedFiles:
    """Damage in the store's directory, found when the store opens."""

    def test_a_bit_flip_in_a_sealed_trailer_count_does_not_stop_the_store(self, tmp_path: Path) -> None:
        """A sealed segment whose trailer count has one bit flipped: the store opens, rebuilds, reads all records."""
        where = tmp_path / "s"
        flip_count(sealed_store(where), 100 ^ (1 << 20))
        store = Store(where)
        try:
            found = store.open()  # was struct.error: the trailer's fields were outside the footer's CRC
            assert store.records == 101, found
            assert len(store.read()) == 101
        finally:
            store.close()

    def test_a_smaller_trailer_count_is_not_trusted(self, tmp_path: Path) -> None:
        """A sealed segment whose trailer count went from 100 to 96: the store still reads the 101 records."""
        where = tmp_path / "s"
        flip_count(sealed_store(where), 100 ^ 4)
        store = Store(where)
        try:
            store.open()
            assert store.records == 101, "the damaged count was believed"
            assert len(store.read()) == 101  # was OSError EINVAL: offsets read from the wrong place
        finally:
            store.close()

    @pytest.mark.parametrize("count", [96, 104, 0])
    def test_a_count_under_a_good_crc_is_verified(self, tmp_path: Path, count: int) -> None:
        """A trailer whose count was changed and its CRC recomputed: the footer does not fit, the index is rebuilt."""
        where = tmp_path / "s"
        sealed = sealed_store(where)
        forge_count(sealed, count)
        store = Store(where)
        try:
            found = store.open()
            assert found.rebuilt == [sealed.name] and found.torn == [], found
            assert store.records == 101 and len(store.read()) == 101
        finally:
            store.close()

    def test_any_flipped_bit_in_a_footer_is_rebuilt(self, tmp_path: Path) -> None:
        """One bit flipped in each byte of the trailer and of the footer's start: every open keeps all 101 records."""
        where = tmp_path / "s"
        pristine = sealed_store(where).read_bytes()
        sealed = sorted(where.glob("*.seg"))[0]
        at = struct.unpack_from("<Q", pristine, len(pristine) - TRAILER.size + 16)[0]
        spots = [*range(len(pristine) - TRAILER.size, len(pristine)), *range(at, at + 64)]
        for spot in spots:
            data = bytearray(pristine)
            data[spot] ^= 1 << (spot % 8)
            sealed.write_bytes(bytes(data))
            store = Store(where)
            try:
                found = store.open()
                assert (store.records, len(store.read())) == (101, 101), (spot, found)
            finally:
                store.close()

    def test_a_rebuilt_index_checks_at_the_next_open(self, tmp_path: Path) -> None:
        """A footer of an earlier format (another INDEX magic) is rebuilt once; the next open takes the new one."""
        where = tmp_path / "s"
        sealed = sealed_store(where)
        data = sealed.read_bytes()
        sealed.write_bytes(data[: -len(INDEX)] + b"LFIDX\x00\x01\n")
        for expected in ([sealed.name], []):
            store = Store(where)
            try:
                found = store.open()
                assert found.rebuilt == expected and found.torn == [], found
                assert [r.position for r in store.read()] == list(range(101))
            finally:
                store.close()

    def test_a_record_over_max_record_is_skipped_not_stored(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A frame over the store's bound (made small here) is skipped and logged; positions go on without a hole."""
        monkeypatch.setattr(broker._store, "MAX_RECORD", 1000)
        store = Store(tmp_path / "s")
        store.open()
        try:
            with caplog.at_level(logging.WARNING, "logfabric.broker"):
                assert store.append([frame(0), frame(1, b"z" * 2000), frame(2)]) == (2, 1)
            assert any("over 1000 bytes" in r.message for r in caplog.records)
            assert [r.position for r in store.read()] == [0, 1]
        finally:
            store.close()

    def test_max_message_is_bounded_by_what_the_store_keeps(self) -> None:
        """--max-message above MAX_RECORD is a clear ConfigError; MAX_RECORD itself is accepted."""
        assert BrokerConfig(max_message=MAX_RECORD).max_message == MAX_RECORD
        with pytest.raises(ConfigError, match=r"^max_message must be at most"):
            BrokerConfig(max_message=MAX_RECORD + 1)

    def test_a_directory_named_like_the_next_segment_is_set_aside(self, tmp_path: Path) -> None:
        """A directory sits where the next segment must be created: it is renamed aside and the store opens."""
        where = tmp_path / "s"
        sealed_store(where)
        for seg in sorted(where.glob("*.seg"))[1:]:
            seg.unlink()  # the sealed segment of 100 records alone: the next one is 100.seg
        (where / f"{100:020d}.seg").mkdir()
        store = Store(where)
        try:
            found = store.open()
            assert found.quarantined == [f"{100:020d}.seg.corrupt"], found
            store.append([frame(100)])
            assert store.records == 101
        finally:
            store.close()

    def test_a_record_over_64_mib_survives_a_reopen(self, tmp_path: Path) -> None:
        """A 65 MiB record (the broker accepts it with --max-message 100000000) is still there after a restart."""
        where = tmp_path / "s"
        store = Store(where)
        store.open()
        store.append([frame(0, b"y" * (65 * MIB))])
        assert store.records == 1
        store.close()
        store = Store(where)
        try:
            found = store.open()
            assert found.torn == [], f"the stored record was cut as torn on reopen: {found.torn} (MAX_RECORD)"
            assert store.records == 1
        finally:
            store.close()

    def test_retention_bytes_hold_after_every_append(self, tmp_path: Path) -> None:
        """retention_bytes=1 MiB, 3,000 records of 1 KB one by one: the segment files never exceed 1 MiB."""
        where = tmp_path / "s"
        store = Store(where, retention_bytes=MIB)
        store.open()
        peak = 0
        try:
            for i in range(3_000):
                store.append([frame(i, b"x" * 1000)])
                peak = max(peak, sum(p.stat().st_size for p in where.glob("*.seg")))
        finally:
            store.close()
        assert peak <= MIB, f"the store held {peak} bytes on disk with retention_bytes={MIB} (docs: at most)"

    def test_junk_named_like_a_later_segment_after_an_empty_open_one(self, tmp_path: Path) -> None:
        """The newest segment is empty (just rolled) and junk named like a later segment sits after it: the junk is
        set aside and the store opens (was: FileExistsError, at every retry and every restart)."""
        where = tmp_path / "s"
        store = Store(where)
        store.open()
        store.append([frame(i) for i in range(10)])
        store._roll()  # 10.seg: empty, open
        store.close()
        (where / f"{500:020d}.seg").write_bytes(b"not a segment")
        store = Store(where)
        try:
            found = store.open()
            assert found.quarantined == [f"{500:020d}.seg.corrupt"], found
            store.append([frame(10)])
            assert store.records == 11
        finally:
            store.close()

    def test_assorted_damage_opens_cleanly(self, tmp_path: Path) -> None:
        """Garbage named like a segment, a truncated sealed segment, garbage after a footer, an empty newest
        segment and stray files: the store opens, keeps what checks, and goes on appending."""
        where = tmp_path / "s"
        store = Store(where)
        store.open()
        for batch in range(3):
            if batch:
                store._roll()
            store.append([frame(batch * 100 + i) for i in range(100)])
        store.close()
        segs = sorted(where.glob("*.seg"))  # 0 and 100 sealed; 200 open
        data = segs[0].read_bytes()
        segs[0].write_bytes(data[: len(data) // 2])  # a sealed segment cut in half
        with segs[1].open("ab") as f:
            f.write(b"\xde\xad\xbe\xef" * 10)  # garbage after a footer
        (where / f"{999:020d}.seg").write_bytes(os.urandom(4096))  # not a segment at all
        (where / f"{1000:020d}.seg").write_bytes(b"")  # empty, named like the newest
        (where / "notes.txt").write_text("left alone")
        (where / "subdir").mkdir()
        store = Store(where)
        try:
            found = store.open()
            assert found.quarantined and "notes.txt" in found.ignored, found
            before = store.records
            assert 150 <= before <= 300, found
            store.append([frame(5000)])
            assert store.records == before + 1
            got = store.read()
            assert [r.position for r in got] == sorted(r.position for r in got)
        finally:
            store.close()


# --------------------------------------------------------------------------- the feed thread


class FlakyStore(Store):
    """A store whose append raises an unexpected exception (a defect) the first ``failures`` times."""

    failures = 2

    def append(self, frames: list[bytes], time_ns: int | None = None) -> tuple[int, int]:
        if FlakyStore.failures > 0:
            FlakyStore.failures -= 1
            raise RuntimeError("a defect in the store")
        return super().append(frames, time_ns)


def test_an_unexpected_exception_in_the_store_does_not_end_the_feed(
    tmp_path: Path, zmq_ctx: zmq.Context[zmq.Socket[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    """append raises RuntimeError twice: logged with its traceback, counted as internal, the store is opened again
    after a backoff and stores what comes next."""
    pub = zmq_ctx.socket(zmq.PUB)
    address = f"inproc://bridge-{uuid.uuid4().hex}"
    pub.bind(address)
    sub = zmq_ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(address)
    feed = StoreFeed(sub, FlakyStore(tmp_path / "s"), lambda: None)
    with caplog.at_level(logging.ERROR, "logfabric.broker"):
        feed.start()
        try:
            assert poll_until(lambda: (pub.send(frame(1)), feed.snapshot().appended > 0)[1], 15.0)
            status = feed.snapshot()
            assert status.errors["internal"] == 2 and status.problem is None, status
            assert status.missed["unwritable"] > 0
        finally:
            feed.stop()
    assert any(r.exc_info and "unexpected failure" in r.message for r in caplog.records)
    assert not feed._thread.is_alive()


# --------------------------------------------------------------------------- real brokers


class TestBrokerProcess:
    """A real broker with --store DIR under hostile input, damage, a second broker and SIGKILL."""

    def test_a_broker_on_a_store_with_a_flipped_trailer_count_keeps_storing(
        self, tmp_path: Path, brokers: Callable[..., BrokerProc], zmq_ctx: zmq.Context[zmq.Socket[bytes]]
    ) -> None:
        """A broker started on a store whose sealed trailer count has one bit flipped: its store is up and stores."""
        where = tmp_path / "store"
        flip_count(sealed_store(where), 100 ^ (1 << 20))
        broker = brokers("--store", str(where))
        push = raw_push(zmq_ctx, broker.push_ingest)
        assert poll_until(lambda: (push.send(frame(7)), metric(broker, APPENDS) >= 1)[1], 5.0), (
            f"the store never stored a record: up={metric(broker, UP)}\n{broker.stderr()[-2000:]}"
        )
        assert metric(broker, UP) == 1

    def test_hostile_frames_are_skipped_and_the_broker_goes_on(
        self, tmp_path: Path, brokers: Callable[..., BrokerProc], zmq_ctx: zmq.Context[zmq.Socket[bytes]]
    ) -> None:
        """Frames with no NUL, one NUL, an empty payload, a 5 KB topic, empty, multi-frame junk: none is stored;
        the valid records around them are, in order, and the broker stays up."""
        where = tmp_path / "store"
        broker = brokers("--store", str(where))
        push = raw_push(zmq_ctx, broker.push_ingest)
        assert poll_until(lambda: (push.send(frame(-1)), metric(broker, APPENDS) >= 1)[1], 5.0)
        base = int(metric(broker, APPENDS))
        hostile = [
            b"",
            b"no nul at all",
            b"2app\x00svc",
            b"2app\x00svc\x00",
            b"xapp\x00svc\x00payload",
            b"2" + b"a" * 5000 + b"\x00svc\x00payload",
            b"\x00\x00\x00",
            os.urandom(512),
        ]
        for i in range(50):
            for junk in hostile:
                push.send(junk)
            push.send_multipart([b"", b"junk"])
            push.send(frame(i))
        assert poll_until(lambda: metric(broker, APPENDS) >= base + 50, 10.0), broker.stderr()[-2000:]
        assert broker.alive and metric(broker, UP) == 1
        broker.signal(signal.SIGTERM)
        assert broker.wait(15) == 0
        store = Store(where)
        store.open()
        try:
            got = store.read()
        finally:
            store.close()
        assert [r.frame for r in got] == [frame(-1)] * (len(got) - 50) + [frame(i) for i in range(50)]

    def test_a_store_dir_that_is_a_file_degrades_and_forwarding_goes_on(
        self, tmp_path: Path, brokers: Callable[..., BrokerProc]
    ) -> None:
        """--store pointing at a regular file: the broker is ready, the store is down (in /readyz), records flow."""
        where = tmp_path / "a-file"
        where.write_text("not a directory")
        broker = brokers("--store", str(where))
        assert poll_until(lambda: metric(broker, UP) == 0, 5.0)
        status, body = broker.get("/readyz")
        assert status == 200 and "degraded" in body, body
        capture = Capture()
        listener = fabric.ZmqListener(broker.egress, capture, mode="sub")
        listener.start()
        handler = fabric.ZmqHandler(broker.push_ingest, service="through", linger=1.0)
        log = logging.getLogger("through.file")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        try:
            assert poll_until(lambda: (log.info("probe"), capture.count("through.file") > 0)[1], 10.0)
        finally:
            log.removeHandler(handler)
            handler.close()
            listener.stop()
        assert where.read_text() == "not a directory"

    def test_two_brokers_on_one_dir_the_second_takes_over_when_the_first_dies(
        self, tmp_path: Path, brokers: Callable[..., BrokerProc], zmq_ctx: zmq.Context[zmq.Socket[bytes]]
    ) -> None:
        """Two brokers on one DIR: the second's store is degraded; SIGKILL the first and the second stores."""
        where = tmp_path / "store"
        first = brokers("--store", str(where))
        second = brokers("--store", str(where))
        assert poll_until(lambda: metric(second, UP) == 0, 5.0)
        assert metric(first, UP) == 1
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        push = raw_push(zmq_ctx, second.push_ingest)
        assert poll_until(lambda: (push.send(frame(1)), metric(second, APPENDS) >= 1)[1], 10.0), second.stderr()
        assert metric(second, UP) == 1

    def test_repeated_sigkill_mid_flood_never_stops_the_store(
        self, tmp_path: Path, brokers: Callable[..., BrokerProc], zmq_ctx: zmq.Context[zmq.Socket[bytes]]
    ) -> None:
        """Three SIGKILLs in a flood of 20 KB records: every restart opens the store; positions stay contiguous."""
        where = tmp_path / "store"
        broker = brokers("--store", str(where), "--retention-bytes", str(8 * MIB))
        for round_ in range(3):
            push = raw_push(zmq_ctx, broker.push_ingest)
            push.setsockopt(zmq.SNDTIMEO, 0)
            target = metric(broker, APPENDS) + 200
            sent = 0
            while metric(broker, APPENDS) < target and sent < 100_000:
                for _ in range(100):
                    try:
                        push.send(frame(sent, b"f" * 20_000))
                        sent += 1
                    except zmq.Again:
                        break
            broker.signal(signal.SIGKILL)
            assert broker.wait(10) == -signal.SIGKILL
            push.close(linger=0)
            broker.start().wait_ready()
            assert poll_until(lambda: metric(broker, UP) == 1, 5.0), f"round {round_}: {broker.stderr()[-2000:]}"
        broker.signal(signal.SIGKILL)
        assert broker.wait(10) == -signal.SIGKILL
        store = Store(where)
        store.open()
        try:
            positions = [r.position for r in store.read()]
        finally:
            store.close()
        assert positions and positions == list(range(positions[0], positions[0] + len(positions)))
        assert sum(p.stat().st_size for p in where.glob("*.seg")) <= 8 * MIB + 2 * MIB


def test_magic_is_what_segments_start_with(tmp_path: Path) -> None:
    """A new store's first segment starts with the segment magic (sanity for the damage tests above)."""
    store = Store(tmp_path / "s")
    store.open()
    store.close()
    assert wait_until(lambda: bool(list((tmp_path / "s").glob("*.seg"))), 1.0)
    assert sorted((tmp_path / "s").glob("*.seg"))[0].read_bytes() == MAGIC
