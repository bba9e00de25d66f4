"""The record store on real files: append, read, retention, a torn tail, corruption, a full or read-only disk.

The full and read-only disks are real: a tiny tmpfs mounted for the test (as
root; skipped otherwise). The feed tests use real zmq sockets over inproc.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from broker._segment import MAGIC, split_topic
from broker._store import RecordFilter, Store
from broker._store_feed import StoreFeed
from fabric.topic import MAX_TOPIC
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024


def frame(logger: str = "app.db", service: str = "svc", level: int = 20, body: bytes = b"\x01payload") -> bytes:
    return str(min(level // 10, 9)).encode() + logger.encode() + b"\x00" + service.encode() + b"\x00" + body


def opened(directory: Path, **options: object) -> Store:
    store = Store(directory, **options)  # type: ignore[arg-type]
    store.open()
    return store


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test (needs root and mount; skipped otherwise)."""
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> Path:
    """Fill the filesystem of ``where`` with one file; return it."""
    filler = where / f"filler-{uuid.uuid4().hex}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\xff" * 4096)
    finally:
        os.close(fd)
    return filler


class TestAppendAndRead:
    def test_positions_filters_and_windows(self, tmp_path: Path) -> None:
        """Records get positions 0.. in order; reads filter by logger prefix, level bucket, service, position, time."""
        store = opened(tmp_path / "s")
        mix = [("app.db", 20, "a"), ("app.db.pool", 40, "b"), ("app.dbx", 40, "a"), ("web", 10, "a")] * 25
        t0 = 1_000_000_000_000
        for i, (logger, level, service) in enumerate(mix):
            assert store.append([frame(logger, service, level, b"\x01%d" % i)], t0 + i) == (1, 0)
        assert store.records == 100 and store.next_position == 100
        db = store.read(RecordFilter(loggers=("app.db",)))
        assert [r.position for r in db] == [i for i, m in enumerate(mix) if m[0] in ("app.db", "app.db.pool")]
        assert [r.position for r in store.read(RecordFilter(loggers=("app.db",)), last=3)] == [93, 96, 97]
        assert all(r.topic.startswith(b"4") for r in store.read(RecordFilter(level=40)))
        assert len(store.read(RecordFilter(level=25))) == 75  # bucket 2 may hold 25: the reader finishes it
        assert {r.topic[-1:] for r in store.read(RecordFilter(services=("b",)))} == {b"b"}
        assert [r.position for r in store.read(after=97)] == [98, 99]
        assert [r.position for r in store.read(since_ns=t0 + 10, until_ns=t0 + 13)] == [10, 11, 12]
        assert [r.position for r in store.read(limit=2, after=4)] == [5, 6]
        one = store.read(after=41, limit=1)[0]
        assert one.frame == frame("app.dbx", "a", 40, b"\x0142") and one.payload == b"\x0142"
        store.close()

    def test_reopen_keeps_everything_and_positions_go_on(self, tmp_path: Path) -> None:
        """Closed and opened again (sealed segments and an open one): every record, the next position after them."""
        store = opened(tmp_path / "s", retention_bytes=8 * MIB)
        frames = [frame(body=b"\x01" + os.urandom(300)) for _ in range(5000)]
        store.append(frames)
        segments = len(list((tmp_path / "s").glob("*.seg")))
        assert segments > 1
        store.close()
        again = opened(tmp_path / "s", retention_bytes=8 * MIB)
        assert [r.frame for r in again.read()] == frames
        again.append([frame(body=b"\x01after")])
        assert again.read(last=1)[0].position == 5000
        again.close()

    def test_times_never_go_back(self, tmp_path: Path) -> None:
        """A clock stepping back does not reorder stored times (time windows stay searchable)."""
        store = opened(tmp_path / "s")
        store.append([frame()], 2_000)
        store.append([frame()], 1_000)
        assert [r.time_ns for r in store.read()] == [2_000, 2_000]
        store.close()

    def test_one_broker_per_directory(self, tmp_path: Path) -> None:
        """A second store on the same directory is refused while the first holds it."""
        first = opened(tmp_path / "s")
        with pytest.raises(OSError) as refused:
            opened(tmp_path / "s")
        assert refused.value.errno == errno.EBUSY
        first.close()
        opened(tmp_path / "s").close()


class TestHostileInput:
    def test_what_is_not_a_record_is_skipped(self, tmp_path: Path) -> None:
        """No delimiter, a topic over the bound, an empty payload, a non-digit bucket: counted and skipped."""
        store = opened(tmp_path / "s")
        bad = [
            b"no delimiter at all",
            b"2" + b"x" * MAX_TOPIC + b"\x00svc\x00\x01payload",
            frame(body=b""),
            b"Xapp\x00svc\x00\x01payload",
            b"",
        ]
        assert store.append([*bad, frame()]) == (1, len(bad))
        assert store.records == 1
        assert split_topic(b"2" + b"x" * (MAX_TOPIC - 5) + b"\x00svc\x00\x01", MAX_TOPIC) is not None
        store.close()

    def test_retention_bytes_bound_what_a_flood_leaves(self, tmp_path: Path) -> None:
        """6 MiB of large records into a 1 MiB store: it stays within 1 MiB, the newest kept, the oldest counted."""
        store = opened(tmp_path / "s", retention_bytes=MIB)
        big = [frame(body=b"\x01" + bytes([i % 256]) * 60_000) for i in range(100)]
        for i in range(0, 100, 5):
            store.append(big[i : i + 5])
            assert store.size <= MIB
        kept = store.read()
        assert kept and kept[-1].frame == big[-1]
        assert [r.position for r in kept] == list(range(100 - len(kept), 100))
        assert store.deleted["bytes"] == 100 - len(kept)
        assert sum(p.stat().st_size for p in (tmp_path / "s").glob("*.seg")) <= MIB
        store.close()

    def test_garbage_in_the_directory(self, tmp_path: Path) -> None:
        """Foreign files are left alone; a file named like a segment that is none is set aside; the store opens."""
        where = tmp_path / "s"
        store = opened(where)
        store.append([frame()])
        store.close()
        (where / "notes.txt").write_text("not ours")
        (where / "99999999999999999999.seg").write_bytes(os.urandom(100))
        again = Store(where)
        found = again.open()
        assert found.ignored == ["notes.txt"]
        assert found.quarantined == ["99999999999999999999.seg.corrupt"]
        assert again.records == 1 and (where / "notes.txt").exists()
        again.append([frame()])
        assert again.records == 2
        again.close()


class TestCrashes:
    def test_torn_last_record_is_cut_and_counted(self, tmp_path: Path) -> None:
        """Half a record at the end of the newest segment: cut at open, reported, the rest kept, appends go on."""
        where = tmp_path / "s"
        store = opened(where)
        store.append([frame(body=b"\x01%d" % i) for i in range(10)])
        store.close()
        (newest,) = sorted(where.glob("*.seg"))
        whole = newest.stat().st_size
        with newest.open("ab") as f:
            f.write(b"\x40\x00\x00\x00\x01\x02\x03\x04half a rec")
        again = Store(where)
        found = again.open()
        assert found.torn == [(newest.name, 18)]
        assert newest.stat().st_size == whole
        assert again.records == 10
        again.append([frame(body=b"\x01next")])
        assert again.read(last=1)[0].frame == frame(body=b"\x01next")
        again.close()

    def test_damaged_index_is_rebuilt(self, tmp_path: Path) -> None:
        """A sealed segment whose index fails its checksum is indexed again from its records."""
        where = tmp_path / "s"
        store = opened(where, retention_bytes=8 * MIB)
        frames = [frame(body=b"\x01" + os.urandom(400)) for _ in range(3000)]
        store.append(frames)
        store.close()
        sealed = sorted(where.glob("*.seg"))[0]
        data = bytearray(sealed.read_bytes())
        data[-60] ^= 0xFF  # inside the footer
        sealed.write_bytes(bytes(data))
        again = Store(where, retention_bytes=8 * MIB)
        found = again.open()
        assert found.rebuilt == [sealed.name]
        assert [r.frame for r in again.read()] == frames
        again.close()

    def test_damaged_record_in_a_sealed_segment_is_left_out_of_reads(self, tmp_path: Path) -> None:
        """A flipped byte in a stored record: reads skip that record and count it, never return it."""
        where = tmp_path / "s"
        store = opened(where, retention_bytes=8 * MIB)
        frames = [frame(body=b"\x01" + bytes([i % 256]) * 400) for i in range(3000)]
        store.append(frames)
        store.close()
        sealed = sorted(where.glob("*.seg"))[0]
        data = bytearray(sealed.read_bytes())
        data[len(MAGIC) + 16 + 30] ^= 0xFF  # inside the first record's frame
        sealed.write_bytes(bytes(data))
        again = opened(where, retention_bytes=8 * MIB)
        got = again.read()
        assert [r.frame for r in got] == frames[1:] and again.damaged_reads == 1
        again.close()

    def test_bad_record_mid_segment_truncates_the_open_segment(self, tmp_path: Path) -> None:
        """Damage in the middle of the newest segment: the store keeps what precedes it and opens."""
        where = tmp_path / "s"
        store = opened(where)
        store.append([frame(body=b"\x01%d" % i) for i in range(100)])
        store.close()
        (newest,) = sorted(where.glob("*.seg"))
        data = bytearray(newest.read_bytes())
        data[len(data) // 2] ^= 0xFF
        newest.write_bytes(bytes(data))
        again = Store(where)
        found = again.open()
        assert found.torn and 0 < again.records < 100
        assert [r.frame for r in again.read()] == [frame(body=b"\x01%d" % i) for i in range(again.records)]
        again.close()


class TestRetentionByAge:
    def test_segments_older_than_the_age_go(self, tmp_path: Path) -> None:
        """With an 8 s age, segments span 1 s: what is older than 8 s is deleted, the newest stay."""
        store = opened(tmp_path / "s", retention_age=8.0)
        t0 = 1_000 * 10**9
        for second in range(20):
            store.append([frame(body=b"\x01%d" % second)], t0 + second * 10**9)
        deleted = store.retain(now_ns=t0 + 20 * 10**9)
        kept = store.read()
        assert store.deleted["age"] == 20 - len(kept) and store.deleted["bytes"] == deleted["bytes"] == 0
        assert all(r.time_ns >= t0 + 12 * 10**9 for r in kept)
        assert kept[-1].frame == frame(body=b"\x0119")
        assert store.retain(now_ns=t0 + 60 * 10**9)["age"] == len(kept)
        assert store.records == 0
        store.close()


class TestFullDisk:
    def test_store_on_a_full_filesystem(self, tiny_fs: Path) -> None:
        """ENOSPC: the append fails whole and keeps nothing half-written; once space returns it appends again."""
        store = opened(tiny_fs / "s", retention_bytes=64 * MIB)
        store.append([frame(body=b"\x01before")])
        filler = fill(tiny_fs)
        batch = [frame(body=b"\x01" + os.urandom(500)) for _ in range(200)]
        with pytest.raises(OSError) as full:
            for _ in range(100):
                store.append(batch)
        assert full.value.errno == errno.ENOSPC
        stored = store.records
        filler.unlink()
        store.append([frame(body=b"\x01after")])
        assert store.records == stored + 1
        store.close()
        again = Store(tiny_fs / "s", retention_bytes=64 * MIB)
        assert again.open().torn == []
        assert again.records == stored + 1 and again.read(last=1)[0].frame == frame(body=b"\x01after")
        again.close()

    def test_read_only_filesystem_cannot_open(self, tiny_fs: Path) -> None:
        """A directory on a read-only filesystem: open fails with a clear OSError (the feed degrades on it)."""
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
        with pytest.raises(OSError) as refused:
            Store(tiny_fs / "s").open()
        assert refused.value.errno == errno.EROFS


class TestFeed:
    """The feed over real zmq sockets: a PUB standing in for a bridge, the feed's SUB, the store on a tiny fs."""

    @pytest.fixture
    def bridge(self) -> Iterator[tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes], str]]:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        address = f"inproc://bridge-{uuid.uuid4().hex}"
        pub.bind(address)
        try:
            yield ctx, pub, address
        finally:
            pub.close(linger=0)
            ctx.destroy(linger=0)

    def _feed(self, ctx: zmq.Context[zmq.Socket[bytes]], address: str, store: Store, sent: list[int]) -> StoreFeed:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(address)
        feed = StoreFeed(sub, store, lambda: sent[0])
        feed.start()
        return feed

    def test_degrades_on_a_full_disk_and_recovers(
        self,
        tiny_fs: Path,
        bridge: tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes], str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Full: status degraded, logged, records counted as unwritable; space back: it writes again."""
        ctx, pub, address = bridge
        sent = [0]
        feed = self._feed(ctx, address, Store(tiny_fs / "s", retention_bytes=64 * MIB), sent)
        try:

            def send(n: int, body: bytes = b"\x01" + b"r" * 500) -> None:
                for _ in range(n):
                    pub.send(frame(body=body))
                    sent[0] += 1

            assert wait_until(lambda: (send(1), feed.snapshot().appended > 0)[1], 5.0, 0.05)
            filler = fill(tiny_fs)
            with caplog.at_level(logging.ERROR, "logfabric.broker"):
                assert wait_until(lambda: (send(50), feed.snapshot().problem is not None)[1], 10.0, 0.05)
            status = feed.snapshot()
            assert "No space left" in (status.problem or "") and "degraded" in status.describe()
            assert status.errors["write"] >= 1 and any("store" in r.message for r in caplog.records)
            assert wait_until(lambda: feed.snapshot().missed["unwritable"] > 0, 5.0)
            filler.unlink()
            assert wait_until(lambda: (send(5), feed.snapshot().problem is None)[1], 10.0, 0.1)
            before = feed.snapshot().appended
            send(10, b"\x01after")
            assert wait_until(lambda: feed.snapshot().appended >= before + 10, 5.0)
        finally:
            feed.stop()
        store = opened(tiny_fs / "s", retention_bytes=64 * MIB)
        assert store.read(last=1)[0].payload == b"\x01after"
        store.close()

    def test_counts_what_it_never_received(
        self, tmp_path: Path, bridge: tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes], str]
    ) -> None:
        """Records published where the store's socket could not take them are counted as missed (behind)."""
        ctx, pub, address = bridge
        sent = [0]
        feed = self._feed(ctx, address, Store(tmp_path / "s"), sent)
        try:
            assert wait_until(lambda: (pub.send(frame()), feed.snapshot().appended > 0)[1], 5.0, 0.05)
            time.sleep(0.5)  # the probes have all arrived
            sent[0] = feed.snapshot().appended + 500  # 500 records the bridge published but dropped for the store
            assert wait_until(lambda: feed.snapshot().missed["behind"] == 500, 5.0)
            time.sleep(1.2)
            assert feed.snapshot().missed["behind"] == 500
        finally:
            feed.stop()

    def test_unopenable_directory_degrades_without_raising(
        self, tiny_fs: Path, bridge: tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes], str]
    ) -> None:
        """A store on a read-only filesystem: the feed says why, counts, and keeps taking records in."""
        ctx, pub, address = bridge
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
        sent = [0]
        feed = self._feed(ctx, address, Store(tiny_fs / "s"), sent)
        try:
            assert wait_until(lambda: feed.snapshot().problem is not None, 5.0)
            assert "Read-only file system" in (feed.snapshot().problem or "")
            assert wait_until(lambda: (pub.send(frame()), feed.snapshot().missed["unwritable"] > 0)[1], 5.0, 0.05)
        finally:
            feed.stop()
