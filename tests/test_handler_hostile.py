"""The producer under attack: what its peers send back, its own callers, forks and odd names.

Peers are real: a hostile subscriber or puller here speaks ZMTP 3.0 by hand over a
plain TCP socket on 127.0.0.1, so nothing it sends is checked or stored on its own
side, and the producer under attack runs in a subprocess whose memory is measured.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fabric
from fabric import _sockets
from tests.helpers.net import ROOT, child_env, host_port, tcp_endpoint
from tests.helpers.waiting import wait_until

SCRIPTS = ROOT / "tests" / "reliability" / "scripts"
MiB = 1024 * 1024


# --------------------------------------------------------------------------- a hand-spoken ZMTP peer


class RawPeer:
    """A ZMTP 3.0 peer (NULL mechanism) over a plain TCP socket, sending whatever it is told to.

    It answers the producer's heartbeat PINGs, so a connection ends only when
    the producer decides to end it for what was sent.
    """

    def __init__(self, endpoint: str, socket_type: bytes = b"SUB", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(host_port(endpoint), timeout=timeout)
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
        self.sock.sendall(greeting)
        got = b""
        while len(got) < 64:
            chunk = self.sock.recv(64 - len(got))
            if not chunk:
                raise ConnectionError("the producer closed the connection during the greeting")
            got += chunk
        ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
        self.sock.sendall(b"\x04" + bytes([len(ready)]) + ready)
        self.sock.setblocking(False)
        self._inbox = b""
        self.dropped = False

    @staticmethod
    def frame(body: bytes, flags: int = 0) -> bytes:
        """One ZMTP frame holding ``body`` (a message; ``flags=4`` makes it a command)."""
        if len(body) < 256:
            return bytes([flags, len(body)]) + body
        return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body

    def pump(self) -> None:
        """Read what has arrived without waiting: discard messages, answer PINGs, note a dropped connection."""
        while not self.dropped:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:
                self.dropped = True
                break
            if not chunk:
                self.dropped = True
                break
            self._inbox += chunk
        while len(self._inbox) >= 2:
            flags = self._inbox[0]
            head, size = (9, struct.unpack(">Q", self._inbox[1:9])[0]) if flags & 2 else (2, self._inbox[1])
            if len(self._inbox) < head + size:
                break
            body, self._inbox = self._inbox[head : head + size], self._inbox[head + size :]
            if flags & 4 and body[:5] == b"\x04PING":
                with contextlib.suppress(OSError):
                    self.sock.sendall(self.frame(b"\x04PONG" + body[7:], flags=4))

    def send(self, body: bytes) -> None:
        """Send one message (for a subscriber, ``b"\\x01" + topic`` subscribes)."""
        self.sock.setblocking(True)
        try:
            self.sock.sendall(self.frame(body))
        finally:
            self.sock.setblocking(False)

    def flood(self, bodies: Iterator[bytes], seconds: float) -> int:
        """Send messages from ``bodies`` for at most ``seconds``; return the bytes the kernel accepted."""
        sent = 0
        pending = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.dropped:
            if not pending:
                body = next(bodies, None)
                if body is None:
                    break
                pending = self.frame(body)
            try:
                n = self.sock.send(pending)
            except BlockingIOError:
                self.pump()
                time.sleep(0.001)
                continue
            except OSError:
                self.dropped = True
                break
            sent += n
            pending = pending[n:]
        return sent

    def dropped_by_peer(self, timeout: float) -> bool:
        """Wait (bounded) until the producer closes or resets the connection; False if it did not."""
        deadline = time.monotonic() + timeout
        while not self.dropped and time.monotonic() < deadline:
            self.pump()
            time.sleep(0.01)
        return self.dropped

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_peer() -> Iterator[Callable[..., RawPeer]]:
    """A factory of hand-spoken ZMTP peers; all closed at teardown."""
    made: list[RawPeer] = []

    def make(endpoint: str, socket_type: bytes = b"SUB") -> RawPeer:
        peer = wait_for_peer(endpoint, socket_type)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


def wait_for_peer(endpoint: str, socket_type: bytes) -> RawPeer:
    """Connect a raw peer, retrying (bounded) until the producer listens."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return RawPeer(endpoint, socket_type)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# --------------------------------------------------------------------------- a bound producer subprocess


class BoundProducer:
    """``scripts/bound_producer.py`` in a subprocess: binds, logs steadily, reports its memory."""

    def __init__(self, endpoint: str, *options: str) -> None:
        self.endpoint = endpoint
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "bound_producer.py"), endpoint, *options],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.ticks: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self.next_event("ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "tick":
                    self.ticks.append(event)
                self.events.put(event)
        self.events.put(None)

    def next_event(self, what: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next stdout event named ``what``, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event is None:
                break
            if event.get("event") == what:
                return event
        self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        pytest.fail(f"the bound producer never reported {what!r} (exit {self.proc.returncode}); stderr:\n{err}")

    def latest(self) -> dict[str, Any]:
        """The newest tick, waiting (bounded) for one that follows the call."""
        count = len(self.ticks)
        assert wait_until(lambda: len(self.ticks) > count, timeout=10), "the bound producer stopped ticking"
        return self.ticks[-1]

    def stop(self) -> dict[str, Any]:
        """Ask it to stop and return its final report (it must exit 0)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        report = self.next_event("report")
        self.proc.wait(timeout=15)
        assert self.proc.returncode == 0, self.proc.stderr.read() if self.proc.stderr else ""
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            self.proc.communicate(timeout=10)


@pytest.fixture
def bound_producer() -> Iterator[Callable[..., BoundProducer]]:
    """A factory of bound producer subprocesses; all killed at teardown."""
    made: list[BoundProducer] = []

    def make(endpoint: str, *options: str) -> BoundProducer:
        producer = BoundProducer(endpoint, *options)
        made.append(producer)
        return producer

    yield make
    for producer in made:
        producer.kill()


def distinct_topics(size: int) -> Iterator[bytes]:
    """Endless subscription messages for topics of ``size`` bytes, each new: a counter, then filler."""
    filler = (bytes(range(256)) * (size // 256 + 1))[: size - 8]
    n = 0
    while True:
        yield b"\x01" + n.to_bytes(8, "big") + filler
        n += 1


# --------------------------------------------------------------------------- the tests


class TestSubscriberAttacks:
    """A subscriber of a bound pub producer cannot bloat it, blind it or make it lose held records."""

    def test_oversized_subscription_is_refused_and_the_producer_keeps_delivering(
        self, bound_producer, raw_peer, make_listener, capture
    ):
        """A 120 KB subscription makes the producer drop that connection; it survives, subscribers still get records."""
        endpoint = tcp_endpoint()
        producer = bound_producer(endpoint, "--mode", "pub")
        attacker = raw_peer(endpoint)
        control = raw_peer(endpoint)
        control.send(b"\x01" + bytes(range(256)) * 4)  # 1 KB: an ordinary subscription is kept
        attacker.send(b"\x01" + bytes(range(256)) * 470)
        assert attacker.dropped_by_peer(timeout=6.0), "a 120 KB subscription was accepted"
        assert not control.dropped_by_peer(timeout=0.1), "an ordinary subscriber was dropped too"
        attacker.close()
        make_listener(endpoint, capture, mode="sub")
        assert capture.wait_for(50, timeout=10), f"{len(capture)} records reached a good subscriber after the attack"
        assert producer.proc.poll() is None
        producer.stop()

    def test_stream_of_distinct_subscriptions_keeps_memory_bounded(
        self, bound_producer, raw_peer, make_listener, capture
    ):
        """~4 MB of distinct 4,000-byte subscriptions in 4 s (reconnecting when dropped) grow the producer < 40 MiB."""
        endpoint = tcp_endpoint()
        producer = bound_producer(endpoint, "--mode", "pub")
        base = producer.latest()["rss"]
        topics = distinct_topics(4000)
        sent = connections = 0
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            attacker = raw_peer(endpoint)
            connections += 1
            while time.monotonic() < deadline and not attacker.dropped:
                sent += attacker.flood(itertools.islice(topics, 1), seconds=1.0)
                attacker.pump()
                time.sleep(0.004)
        time.sleep(0.5)
        grown = (max(t["rss"] for t in producer.ticks) - base) / MiB
        make_listener(endpoint, capture, mode="sub")
        assert capture.wait_for(20, timeout=15), f"{len(capture)} records reached a good subscriber after the attack"
        report = producer.stop()
        print(
            f"FIGURE distinct subscriptions: {sent / MiB:.1f} MB over {connections} connection(s), "
            f"producer RSS +{grown:.1f} MiB, stats {report['stats']}"
        )
        assert sent > 2 * MiB, f"the attack only got {sent} bytes out"
        assert grown < 40, f"{sent / MiB:.1f} MB of subscriptions grew the producer by {grown:.1f} MiB"
        assert report["stats"]["subscriptions_reset"] >= 1, report["stats"]

    def test_junk_sent_upstream_is_read_discarded_and_counted(self, bound_producer, raw_peer):
        """60 MB of non-subscription messages from a subscriber are discarded and counted, not kept in the producer."""
        endpoint = tcp_endpoint()
        producer = bound_producer(endpoint, "--mode", "pub")
        base = producer.latest()["rss"]
        attacker = raw_peer(endpoint)
        attacker.send(b"\x01zz")  # a subscriber: the producer sends (nothing) to it and reads it on its schedule
        time.sleep(0.3)
        junk = b"\x02" + b"j" * 3999
        sent = attacker.flood((junk for _ in range(15_000)), seconds=20)
        time.sleep(1.0)
        grown = (producer.latest()["rss"] - base) / MiB
        report = producer.stop()
        print(f"FIGURE upstream junk: {sent / MiB:.1f} MB sent, producer RSS +{grown:.1f} MiB, stats {report['stats']}")
        assert sent > 30 * MiB, f"the flood only got {sent / MiB:.1f} MB out"
        assert grown < 16, f"{sent / MiB:.1f} MB of junk grew the producer by {grown:.1f} MiB"
        assert report["stats"]["upstream_discarded"] >= (sent // 4010) // 2, report["stats"]

    def test_junk_does_not_release_records_held_for_a_subscriber(
        self, endpoint, make_handler, make_logger, make_listener, capture, raw_peer
    ):
        """A peer that sends junk instead of a subscription does not count as a subscriber: held records wait."""
        handler = make_handler(endpoint, mode="pub", bind=True)
        log = make_logger(None, handler)
        log.info("held 0")
        attacker = raw_peer(endpoint)
        attacker.send(b"\x02not a subscription")
        time.sleep(0.2)
        for i in range(1, 4):
            log.info("held %d", i)
        handler.flush()
        assert handler.stats["sent"] == 0, handler.stats
        make_listener(endpoint, capture, mode="sub")
        assert handler.wait_ready(5.0)
        assert capture.wait_for(4), f"{len(capture)} of 4 held records arrived"
        assert [r.msg for r in capture.records] == [f"held {i}" for i in range(4)]
        assert handler.stats["upstream_discarded"] == 1


class TestPullerAttacks:
    """A peer of a push producer cannot make it hold what it sends back."""

    def test_messages_sent_up_to_a_push_producer_cost_it_no_memory(self, bound_producer, raw_peer):
        """200 MB sent by a 'PULL' peer up to a bound push producer grow it by less than 16 MiB."""
        endpoint = tcp_endpoint()
        producer = bound_producer(endpoint, "--mode", "push")
        base = producer.latest()["rss"]
        attacker = raw_peer(endpoint, b"PULL")
        blob = b"J" * MiB
        sent = attacker.flood((blob for _ in range(200)), seconds=10)
        time.sleep(0.5)
        grown = (producer.latest()["rss"] - base) / MiB
        producer.stop()
        print(f"FIGURE upstream to push: {sent / MiB:.1f} MB accepted by the kernel, producer RSS +{grown:.1f} MiB")
        assert grown < 16, f"{sent / MiB:.1f} MB sent up to a push producer grew it by {grown:.1f} MiB"


class TestOutageBuffer:
    """With its peer down, a producer holds a bounded number of bytes, and delivers them when the peer comes."""

    def test_outage_buffer_is_bounded_in_bytes_and_delivered_later(self, tmp_path: Path, make_listener, capture):
        """2,000 records of 200 KB with nobody listening grow the producer by about buffer_bytes, not 400 MB."""
        endpoint = tcp_endpoint()
        go = tmp_path / "go"
        proc = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPTS / "producer.py"),
                endpoint,
                "2000",
                "--pad",
                "200000",
                "--linger",
                "5",
                "--then",
                "1",
                "--then-wait-file",
                str(go),
                "--logger",
                "outage.big",
            ],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            start = json.loads(proc.stdout.readline())
            base = _rss(start["pid"])
            waiting = json.loads(proc.stdout.readline())
            assert waiting["event"] == "waiting", waiting
            grown = (_rss(start["pid"]) - base) / MiB
            make_listener(endpoint, capture, mode="pull", bind=True)
            go.touch()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        stats = report["stats"]
        held = stats["sent"] + stats["queued"]  # reported before close(), which delivers what is queued
        assert wait_until(lambda: len(capture) >= held, timeout=30)
        time.sleep(0.2)
        print(f"FIGURE outage: RSS +{grown:.1f} MiB for 2,000 x 200 KB, stats {stats}, delivered {len(capture)}")
        assert grown < _sockets.DEFAULT_BUFFER_BYTES / MiB + 24, (
            f"the outage buffer grew the producer by {grown:.1f} MiB"
        )
        assert held + stats["dropped"] == 2001 and stats["dropped"] > 1000, stats
        records = [r for r in capture.records if not isinstance(r, fabric.GapNotice)]
        assert len(records) == held, f"{len(records)} delivered of {held} held"
        # The newest records were dropped: the receiver can tell only if a later one (the last) arrived.
        lost = sum(r.lost for r in capture.records if isinstance(r, fabric.GapNotice))
        assert lost == (stats["dropped"] if records[-1].n == 2000 else 0), (lost, stats)

    def test_zero_hwm_is_refused(self, endpoint):
        """hwm=0 (ZeroMQ's 'no limit') raises a fabric.ConfigError that says what to pass instead."""
        with pytest.raises(fabric.ConfigError, match="hwm"):
            fabric.ZmqHandler(endpoint, hwm=0)

    def test_buffer_bytes_must_be_positive(self, endpoint):
        """buffer_bytes=0 raises a fabric.ConfigError naming it."""
        with pytest.raises(fabric.ConfigError, match="buffer_bytes"):
            fabric.ZmqHandler(endpoint, buffer_bytes=0)

    def test_a_lone_record_logged_before_the_peer_arrives_is_delivered(
        self, endpoint, make_handler, make_logger, make_listener, capture
    ):
        """One record logged while nothing listens arrives once a listener binds, with no further logging call."""
        handler = make_handler(endpoint)
        make_logger(None, handler).info("alone")
        time.sleep(0.3)
        make_listener(endpoint, capture, mode="pull", bind=True)
        assert capture.wait_for(1, timeout=10), "the lone record never arrived"
        assert [r.msg for r in capture.records] == ["alone"]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096


class TestForkedIdentity:
    """Every process gets its own producer id, however it was forked."""

    def test_libc_fork_children_each_get_their_own_producer_id(self, endpoint, make_listener, capture):
        """4 children of libc fork() (no at-fork hooks) log 500 records each: 4 distinct ids, all seqs, no gap."""
        listener = make_listener(endpoint, capture, mode="pull", bind=True)
        proc = subprocess.run(
            [sys.executable, str(SCRIPTS / "libc_fork.py"), endpoint, "500", "--workers", "4"],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert proc.returncode == 0, proc.stderr
        events = [json.loads(line) for line in proc.stdout.splitlines()]
        children = [e for e in events if e["event"] == "child"]
        (report,) = [e for e in events if e["event"] == "report"]
        assert len(children) == 4
        assert capture.wait_for(4 * 500 + 2, timeout=20), f"{len(capture)} of 2002 arrived"
        ids = {c["producer_id"] for c in children}
        assert len(ids) == 4 and report["producer_id"] not in ids, f"children share ids: {children}"
        for child in children:
            mine = [r for r in capture.records if r.producer_id == child["producer_id"]]
            assert [r.n for r in mine] == list(range(500))
            assert {r.process for r in mine} == {child["pid"]}
        assert listener.stats["gaps"] == 0


class TestNoFalseGaps:
    """The producer's own troubles never show up downstream as network losses."""

    def test_unformattable_record_is_counted_once_and_leaves_no_gap(self, make_link, monkeypatch):
        """log.info('%d', 'x') is one error at the producer; the records around it arrive with consecutive seqs."""
        monkeypatch.setattr(logging, "raiseExceptions", False)
        link = make_link("push")
        link.logger.info("before")
        link.logger.info("%d", "x")
        link.logger.info("after")
        assert link.capture.wait_for(2)
        time.sleep(0.1)
        assert [(r.msg, r.seq) for r in link.capture.records] == [("before", 1), ("after", 2)]
        assert link.handler.stats["errors"] == 1
        assert link.listener.stats["gaps"] == 0

    def test_argument_whose_str_logs_leaves_no_gap(self, make_link):
        """An argument whose __str__ logs through the same handler: both records arrive, no gap notice."""
        link = make_link("push")
        log = link.logger

        class Chatty:
            def __str__(self) -> str:
                log.info("inner")
                return "chatty"

        for _ in range(50):
            log.info("outer %s", Chatty())
        assert link.capture.wait_for(100)
        time.sleep(0.1)
        assert link.listener.stats["gaps"] == 0
        assert sorted(r.seq for r in link.capture.records) == list(range(1, 101))

    def test_signal_handler_that_logs_leaves_no_gap(self, make_link):
        """A SIGALRM handler logging on the same logger as the main loop, 2 kHz for 20,000 records: no gap notice."""
        link = make_link("push")
        log = link.logger
        fired = 0

        def on_alarm(signum: int, frame: object) -> None:
            nonlocal fired
            fired += 1
            log.info("from the signal handler")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
        try:
            for i in range(20_000):
                log.info("main %d", i)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        total = 20_000 + fired
        assert link.capture.wait_for(total, timeout=20), f"{len(link.capture)} of {total} arrived"
        time.sleep(0.1)
        assert fired > 100, f"only {fired} signals fired"
        assert link.listener.stats["gaps"] == 0
        assert sorted(r.seq for r in link.capture.records) == list(range(1, total + 1))


class TestOddNames:
    """Names Python allows but UTF-8 cannot carry are escaped, never a reason to lose a record."""

    @pytest.mark.parametrize("codec", ["protobuf", "json"])
    def test_logger_name_with_a_lone_surrogate_is_escaped_and_delivered(self, make_link, make_logger, codec):
        """Logger 'app\\ud800' arrives as 'app\\\\ud800' (both codecs); the handler counts no error."""
        link = make_link("pub", codec=codec, listener_options={"loggers": ["app\\ud800"]})
        odd = make_logger("app\ud800", link.handler)
        odd.info("odd name")
        odd.getChild("db").warning("odd child")
        assert link.capture.wait_for(2), f"{len(link.capture)} of 2 records arrived"
        assert [(r.name, r.msg) for r in link.capture.records] == [
            ("app\\ud800", "odd name"),
            ("app\\ud800.db", "odd child"),
        ]
        assert link.handler.stats["errors"] == 0
        assert link.listener.stats["gaps"] == 0

    def test_service_and_host_with_lone_surrogates_are_escaped(self, make_link):
        """A service name with a lone surrogate is escaped on every record instead of failing every record."""
        link = make_link("push", handler_options={"service": "svc\udcff"})
        link.logger.info("one")
        assert link.capture.wait_for(1), "no record arrived"
        assert link.capture.records[0].service == "svc\\udcff"
        assert link.handler.stats["errors"] == 0
