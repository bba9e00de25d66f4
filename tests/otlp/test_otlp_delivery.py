"""Delivery: batching, retry with backoff, a bounded queue with counted drops, flush on close; HTTP and gRPC.

Receivers are real servers on 127.0.0.1 (tests/otlp/receivers.py) whose answers
are scripted; records come from real producers through a real listener, or are
logged straight into the handler where the path does not matter.
"""

from __future__ import annotations

import logging
import time

import grpc
import pytest

from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


def accounted(stats: dict[str, int]) -> int:
    """Records the handler has accounted for: every one ends exported, dropped, rejected, an error, or queued."""
    return stats["exported"] + stats["dropped"] + stats["rejected"] + stats["errors"] + stats["queued"]


def settled(otlp, total: int, timeout: float = 20.0) -> bool:
    """Wait (bounded) until ``total`` records are accounted for and none is queued any more."""
    return wait_until(lambda: (s := otlp.stats)["queued"] == 0 and accounted(s) == total, timeout, interval=0.02)


class TestBatching:
    """Records go out in batches of at most batch_size, or after batch_delay."""

    def test_many_records_in_few_requests(self, http_receiver, make_otlp, pipeline):
        """3,000 records arrive complete and in order, in requests of at most batch_size records."""
        pipe = pipeline(make_otlp(http_receiver.url, batch_size=200, batch_delay=0.2))
        for i in range(3000):
            pipe.logger.info("r%d", i)
        assert http_receiver.wait_records(3000, timeout=30), pipe.otlp.stats
        assert http_receiver.bodies() == [f"r{i}" for i in range(3000)]
        sizes = [
            sum(len(s.log_records) for rl in r.resource_logs for s in rl.scope_logs) for r in http_receiver.requests
        ]
        assert max(sizes) <= 200
        assert len(sizes) <= 3000 // 200 + 10, sizes  # batched, not one request per record
        assert settled(pipe.otlp, 3000)
        assert pipe.otlp.stats["exported"] == 3000

    def test_a_lone_record_goes_out_after_the_delay(self, http_receiver, make_otlp, make_logger):
        """A record that never fills a batch is sent batch_delay after it arrived."""
        otlp = make_otlp(http_receiver.url, batch_size=1000, batch_delay=0.3)
        log = make_logger(None, otlp)
        start = time.monotonic()
        log.info("alone")
        assert http_receiver.wait_records(1, timeout=5)
        assert 0.25 <= http_receiver.times[0] - start < 3.0


class TestRetry:
    """Retryable answers are retried with backoff until they succeed; the records are sent exactly once."""

    def test_retry_after_503(self, http_receiver, make_otlp, pipeline):
        """Two 503 answers, then success: every record arrives once, and the two retries are counted."""
        http_receiver.script.extend([503, 503])
        pipe = pipeline(make_otlp(http_receiver.url, batch_size=50))
        for i in range(50):
            pipe.logger.info("r%d", i)
        assert http_receiver.wait_records(50, timeout=15), pipe.otlp.stats
        assert http_receiver.answers[:3] == ["503", "503", "ok"]
        assert http_receiver.bodies() == [f"r{i}" for i in range(50)]
        assert settled(pipe.otlp, 50)
        stats = pipe.otlp.stats
        assert (stats["exported"], stats["retried"], stats["dropped"]) == (50, 2, 0)

    @pytest.mark.parametrize("status", [429, 502, 504])
    def test_other_retryable_statuses(self, http_receiver, make_otlp, make_logger, status):
        """429, 502 and 504 are retried as 503 is."""
        http_receiver.script.append(status)
        otlp = make_otlp(http_receiver.url)
        make_logger(None, otlp).info("again")
        assert http_receiver.wait_records(1, timeout=10)
        assert http_receiver.answers == [str(status), "ok"]
        assert settled(otlp, 1)
        assert otlp.stats["retried"] == 1

    def test_retry_after_header_is_honoured(self, http_receiver, make_otlp, make_logger):
        """A 429 with Retry-After: 1 makes the next attempt wait about a second (not the 0.2 s backoff)."""
        http_receiver.script.append((429, {"Retry-After": "1"}))
        otlp = make_otlp(http_receiver.url)
        make_logger(None, otlp).info("throttled")
        assert http_receiver.wait_records(1, timeout=10)
        assert http_receiver.times[1] - http_receiver.times[0] >= 0.9

    def test_receiver_down_for_a_while(self, http_receiver, make_otlp, pipeline):
        """With the receiver down for 3 s, records wait in the queue and all arrive once it is back."""
        pipe = pipeline(make_otlp(http_receiver.url, batch_size=100))
        http_receiver.stop()
        for i in range(1500):
            pipe.logger.info("r%d", i)
            if i % 100 == 0:
                time.sleep(0.2)  # a duration: the records come over 3 s while the receiver is down
        assert wait_until(lambda: pipe.otlp.stats["retried"] >= 2, 10)
        time.sleep(0.5)  # a duration: the receiver stays down half a second more
        http_receiver.start()
        assert http_receiver.wait_records(1500, timeout=30), pipe.otlp.stats
        assert http_receiver.bodies() == [f"r{i}" for i in range(1500)]
        assert settled(pipe.otlp, 1500)
        stats = pipe.otlp.stats
        assert (stats["exported"], stats["dropped"]) == (1500, 0)

    def test_drops_beyond_the_queue_bound_are_counted(self, http_receiver, make_otlp, make_logger):
        """While the receiver is down, what does not fit in queue_size is dropped and counted; the rest arrives."""
        otlp = make_otlp(http_receiver.url, queue_size=100, batch_size=50)
        log = make_logger(None, otlp)
        http_receiver.stop()
        for i in range(500):
            log.info("r%d", i)
        stats = otlp.stats
        assert stats["dropped"] == 400, stats
        assert stats["queued"] == 100
        http_receiver.start()
        assert settled(otlp, 500)
        assert otlp.stats["exported"] == 100
        assert http_receiver.bodies() == [f"r{i}" for i in range(100)]  # the first ones: the newest are dropped


class TestRefusals:
    """Answers that are not retryable drop the batch (counted, said once); the handler goes on."""

    def test_400_drops_that_batch_and_is_said_once(self, http_receiver, make_otlp, make_logger, caplog):
        """Three 400 answers drop three batches, with one warning; the next record is exported."""
        http_receiver.script.extend([400, 400, 400])
        otlp = make_otlp(http_receiver.url)
        log = make_logger(None, otlp)
        for i in range(3):
            log.info("refused %d", i)
            assert wait_until(lambda i=i: otlp.stats["dropped"] == i + 1, 10)
        log.info("taken")
        assert http_receiver.wait_records(1)
        assert http_receiver.bodies() == ["taken"]
        assert settled(otlp, 4)
        stats = otlp.stats
        assert (stats["exported"], stats["dropped"], stats["retried"]) == (1, 3, 0)
        said = [r for r in caplog.records if r.name == "logfabric.otlp" and "400" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in said]

    def test_partial_success_counts_rejected(self, http_receiver, make_otlp, make_logger):
        """A partial success counts its rejected records apart from the exported ones."""
        http_receiver.script.append(("partial", 3))
        otlp = make_otlp(http_receiver.url, batch_delay=0.3)
        log = make_logger(None, otlp)
        for i in range(10):
            log.info("p%d", i)
        assert settled(otlp, 10)
        stats = otlp.stats
        assert (stats["exported"], stats["rejected"]) == (7, 3)

    def test_headers_reach_the_receiver(self, http_receiver, make_otlp, make_logger):
        """Configured headers travel with every request, with the protobuf content type."""
        otlp = make_otlp(http_receiver.url, headers={"Authorization": "Bearer s3cret", "X-Tenant": "t1"})
        make_logger(None, otlp).info("auth")
        assert http_receiver.wait_records(1)
        sent = http_receiver.metadata[0]
        assert sent["authorization"] == "Bearer s3cret"
        assert sent["x-tenant"] == "t1"
        assert sent["content-type"] == "application/x-protobuf"

    @pytest.mark.parametrize("headers", [{"Bad Name": "x"}, {"X-Ok": "line\r\nInjected: 1"}])
    def test_bad_headers_are_refused_at_construction(self, headers):
        """A header that could not be sent (or would inject another) raises at once, saying which."""
        from fabric.otlp import OtlpHandler

        with pytest.raises(ValueError, match="header"):
            OtlpHandler("http://127.0.0.1:1/v1/logs", headers=headers)


class TestClose:
    """close() (and so interpreter exit) sends what is queued within flush_timeout."""

    def test_close_flushes(self, http_receiver, make_otlp, make_logger):
        """Records waiting for a slow batch are sent by close(), at once."""
        otlp = make_otlp(http_receiver.url, batch_size=10_000, batch_delay=30)
        log = make_logger(None, otlp)
        for i in range(200):
            log.info("c%d", i)
        start = time.monotonic()
        otlp.close()
        assert time.monotonic() - start < 3
        assert http_receiver.bodies() == [f"c{i}" for i in range(200)]
        assert otlp.stats["exported"] == 200

    def test_close_gives_up_at_the_flush_timeout(self, http_receiver, make_otlp, make_logger):
        """With the receiver down, close() returns after about flush_timeout and counts what it could not send."""
        otlp = make_otlp(http_receiver.url, flush_timeout=1.0)
        log = make_logger(None, otlp)
        http_receiver.stop()
        for i in range(30):
            log.info("lost %d", i)
        start = time.monotonic()
        otlp.close()
        took = time.monotonic() - start
        assert 0.5 < took < 2.5, took
        stats = otlp.stats
        assert (stats["exported"], stats["dropped"], stats["queued"]) == (0, 30, 0)
        log.info("after close")
        assert otlp.stats["dropped"] == 31

    def test_flush_waits_until_sent(self, http_receiver, make_otlp, make_logger):
        """flush() returns once what was queued has been taken."""
        otlp = make_otlp(http_receiver.url, batch_delay=30)
        log = make_logger(None, otlp)
        log.info("flushed")
        otlp.flush()
        assert http_receiver.bodies() == ["flushed"]


class TestGrpc:
    """The same over OTLP/gRPC."""

    def test_records_and_metadata(self, grpc_receiver, make_otlp, pipeline):
        """Records arrive through LogsService/Export with the configured metadata."""
        pipe = pipeline(make_otlp(grpc_receiver.url, protocol="grpc", headers={"X-Tenant": "t9"}))
        for i in range(20):
            pipe.logger.warning("g%d", i)
        assert grpc_receiver.wait_records(20)
        assert grpc_receiver.bodies() == [f"g{i}" for i in range(20)]
        assert grpc_receiver.metadata[0]["x-tenant"] == "t9"
        e = grpc_receiver.exported()[0]
        assert (e.record.severity_number, e.scope) == (13, pipe.logger.name)

    def test_unavailable_is_retried(self, grpc_receiver, make_otlp, make_logger):
        """UNAVAILABLE twice, then success: the record arrives once, two retries counted."""
        grpc_receiver.script.extend([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE])
        otlp = make_otlp(grpc_receiver.url, protocol="grpc")
        make_logger(None, otlp).info("retried")
        assert grpc_receiver.wait_records(1, timeout=15)
        assert grpc_receiver.answers == ["UNAVAILABLE", "UNAVAILABLE", "ok"]
        assert settled(otlp, 1)
        assert otlp.stats["retried"] == 2

    def test_invalid_argument_drops(self, grpc_receiver, make_otlp, make_logger):
        """A non-retryable status (INVALID_ARGUMENT) drops the batch; the handler goes on."""
        grpc_receiver.script.append(grpc.StatusCode.INVALID_ARGUMENT)
        otlp = make_otlp(grpc_receiver.url, protocol="grpc")
        log = make_logger(None, otlp)
        log.info("refused")
        assert wait_until(lambda: otlp.stats["dropped"] == 1, 10)
        log.info("taken")
        assert grpc_receiver.wait_records(1)
        assert grpc_receiver.bodies() == ["taken"]

    def test_receiver_down_for_a_while(self, grpc_receiver, make_otlp, make_logger):
        """Records logged while the gRPC receiver is down all arrive once it is back."""
        otlp = make_otlp(grpc_receiver.url, protocol="grpc", batch_size=100)
        log = make_logger(None, otlp)
        grpc_receiver.stop()
        for i in range(500):
            log.info("d%d", i)
        assert wait_until(lambda: otlp.stats["retried"] >= 2, 10)
        grpc_receiver.start()
        assert grpc_receiver.wait_records(500, timeout=30), otlp.stats
        assert grpc_receiver.bodies() == [f"d{i}" for i in range(500)]
        assert settled(otlp, 500)
        assert otlp.stats["dropped"] == 0

    def test_partial_success(self, grpc_receiver, make_otlp, make_logger):
        """A gRPC partial success counts its rejected records."""
        grpc_receiver.script.append(("partial", 2))
        otlp = make_otlp(grpc_receiver.url, protocol="grpc", batch_delay=0.3)
        log = make_logger(None, otlp)
        for i in range(5):
            log.info("p%d", i)
        assert settled(otlp, 5)
        assert (otlp.stats["exported"], otlp.stats["rejected"]) == (3, 2)


class TestOwnThread:
    """What the handler's own thread logs is never exported by it (no feedback loop when the receiver fails)."""

    def test_diagnostics_do_not_feed_back(self, http_receiver, make_otlp):
        """With the handler on the root logger and the receiver refusing, its warnings are not exported by it."""
        http_receiver.script.extend([400])
        otlp = make_otlp(http_receiver.url)
        root = logging.getLogger()
        root.addHandler(otlp)
        try:
            logging.getLogger("tests.otlp.feedback").warning("first")
            assert wait_until(lambda: otlp.stats["dropped"] == 1, 10)
            logging.getLogger("tests.otlp.feedback").warning("second")
            assert http_receiver.wait_records(1)
            # a sentinel: what the handler's own thread logged about "first" is queued ahead of it
            logging.getLogger("tests.otlp.feedback").warning("sentinel")
            assert http_receiver.wait_records(2)
        finally:
            root.removeHandler(otlp)
        assert http_receiver.bodies() == ["second", "sentinel"]
        assert settled(otlp, 3)
        assert otlp.stats["exported"] == 2
