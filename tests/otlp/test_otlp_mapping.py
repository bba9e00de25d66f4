"""The OTLP mapping, field by field: real producer -> tcp -> ZmqListener -> OtlpHandler -> OTLP/HTTP receiver.

Each test logs through a real ``ZmqHandler`` and checks what a receiver built
from opentelemetry-proto decoded, against the record the producer made.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import time

import pytest

from fabric.codec import severity_number
from tests.helpers.capture import Capture
from tests.otlp.receivers import Exported

pytestmark = pytest.mark.timeout(60)


def one(receiver, pipe, log, *args, **kwargs) -> tuple[Exported, logging.LogRecord]:
    """Call ``log(*args, **kwargs)`` to log one record through ``pipe``; return what the receiver got and the
    producer's record."""
    keep = Capture()
    pipe.logger.addHandler(keep)
    try:
        log(*args, **kwargs)
    finally:
        pipe.logger.removeHandler(keep)
    assert receiver.wait_records(1), f"nothing exported; otlp stats {pipe.otlp.stats}"
    [exported] = receiver.exported()
    return exported, keep.records[0]


@pytest.fixture(params=["protobuf", "json"])
def codec(request) -> str:
    """Both wire codecs: the mapping must not depend on which one the producer used."""
    return request.param


class TestRecordFields:
    """Timestamps, severity, body, scope, code location and thread."""

    def test_every_standard_field(self, http_receiver, make_otlp, pipeline, codec):
        """Each field of the record lands in its OTLP field or semantic-convention attribute."""
        pipe = pipeline(make_otlp(http_receiver.url), codec=codec, service="checkout")
        keep = Capture()
        pipe.logger.addHandler(keep)
        before = time.time_ns()
        line = inspect.currentframe().f_lineno + 1
        pipe.logger.warning("slow query %d ms", 250)
        assert http_receiver.wait_records(1)
        after = time.time_ns()
        [e], [made] = http_receiver.exported(), keep.records
        r = e.record
        whole = int(made.created)
        assert r.time_unix_nano == whole * 1_000_000_000 + round((made.created - whole) * 1e9)
        assert before <= r.time_unix_nano <= r.observed_time_unix_nano <= after
        assert (r.severity_number, r.severity_text) == (13, "WARNING")
        assert e.body == "slow query 250 ms"
        assert e.scope == pipe.logger.name
        assert e.attributes["code.file.path"] == __file__
        assert e.attributes["code.function.name"] == "test_every_standard_field"
        assert e.attributes["code.line.number"] == line
        assert e.attributes["thread.id"] == threading.get_ident()
        assert e.attributes["thread.name"] == threading.current_thread().name
        assert e.attributes["logfabric.seq"] == 1
        assert r.trace_id == b"" and r.span_id == b"" and r.flags == 0
        assert r.dropped_attributes_count == 0
        # Nothing else: no exception, stack or extras on this record.
        assert set(e.attributes) == {
            "code.file.path",
            "code.function.name",
            "code.line.number",
            "thread.id",
            "thread.name",
            "logfabric.seq",
        }

    def test_resource_is_the_producer(self, http_receiver, make_otlp, pipeline, codec):
        """service.name, host.name, service.instance.id (the producer id) and process.pid describe the producer."""
        pipe = pipeline(make_otlp(http_receiver.url), codec=codec, service="billing")
        e, _ = one(http_receiver, pipe, pipe.logger.info, "hi")
        assert e.resource == {
            "service.name": "billing",
            "host.name": socket.gethostname(),
            "service.instance.id": f"{pipe.producer.identity.producer_id:016x}",
            "process.pid": os.getpid(),
        }

    def test_one_resource_and_one_scope_per_producer_and_logger(self, http_receiver, make_otlp, pipeline):
        """A batch groups records by producer (ResourceLogs), then by logger (ScopeLogs)."""
        pipe = pipeline(make_otlp(http_receiver.url, batch_delay=0.5))
        child = pipe.logger.getChild("db")
        for i in range(3):
            pipe.logger.info("parent %d", i)
            child.info("child %d", i)
        assert http_receiver.wait_records(6)
        [request] = http_receiver.requests
        [logs] = request.resource_logs
        scopes = {s.scope.name: [r.body.string_value for r in s.log_records] for s in logs.scope_logs}
        assert scopes == {
            pipe.logger.name: ["parent 0", "parent 1", "parent 2"],
            child.name: ["child 0", "child 1", "child 2"],
        }


class TestSeverity:
    """Python levels, standard and custom, by the OpenTelemetry SeverityNumber ranges."""

    @pytest.mark.parametrize(
        ("levelno", "name", "number"),
        [
            (5, "TRACE", 3),
            (10, "DEBUG", 5),
            (15, "VERBOSE", 7),
            (20, "INFO", 9),
            (25, "SUCCESS", 11),
            (30, "WARNING", 13),
            (35, "NOTICE", 15),
            (40, "ERROR", 17),
            (50, "CRITICAL", 21),
            (55, "ALERT", 23),
            (60, "EMERGENCY", 24),
        ],
    )
    def test_level_maps_into_its_band(self, http_receiver, make_otlp, pipeline, levelno, name, number):
        """Each level gets the number of its band (TRACE 1-4, DEBUG 5-8, ... FATAL 21-24) and keeps its name."""
        custom = logging.getLevelName(levelno) != name
        if custom:
            logging.addLevelName(levelno, name)
        try:
            pipe = pipeline(make_otlp(http_receiver.url))
            pipe.logger.setLevel(1)
            e, _ = one(http_receiver, pipe, pipe.logger.log, levelno, "lvl")
        finally:
            if custom:
                logging.addLevelName(levelno, f"Level {levelno}")
        assert (e.record.severity_number, e.record.severity_text) == (number, name)
        assert severity_number(levelno) == number

    def test_bands_never_decrease(self):
        """A more severe Python level never gets a smaller SeverityNumber, and all stay in 1-24."""
        numbers = [severity_number(n) for n in range(1, 200)]
        assert numbers == sorted(numbers)
        assert min(numbers) == 1 and max(numbers) == 24


class TestExceptions:
    """exception.type, exception.message, exception.stacktrace, the chain, and code.stacktrace."""

    def test_exception_with_a_cause_chain(self, http_receiver, make_otlp, pipeline, codec):
        """The logged exception gives type and message; the traceback and the whole chain travel too."""
        pipe = pipeline(make_otlp(http_receiver.url), codec=codec)

        def fail() -> None:
            try:
                try:
                    {}["missing"]
                except KeyError as exc:
                    raise ValueError("bad config") from exc
            except ValueError:
                try:
                    raise OSError("disk full")
                except OSError:
                    pipe.logger.exception("saving failed")

        e, made = one(http_receiver, pipe, fail)
        assert e.body == "saving failed"
        assert e.attributes["exception.type"] == "OSError"
        assert e.attributes["exception.message"] == "disk full"
        trace = e.attributes["exception.stacktrace"]
        assert trace == made.exc_text
        assert "The above exception was the direct cause of the following exception" in trace
        assert "During handling of the above exception, another exception occurred" in trace
        assert e.attributes["logfabric.exceptions"] == [
            {"type": "builtins.OSError", "message": "disk full", "relation": "raised"},
            {"type": "builtins.ValueError", "message": "bad config", "relation": "context"},
            {"type": "builtins.KeyError", "message": "'missing'", "relation": "cause"},
        ]

    def test_module_qualified_exception_type(self, http_receiver, make_otlp, pipeline):
        """A non-builtin exception keeps its module-qualified name."""
        pipe = pipeline(make_otlp(http_receiver.url))

        def fail() -> None:
            try:
                socket.getaddrinfo("", None, family=12345)
            except OSError:
                pipe.logger.exception("resolve")

        e, made = one(http_receiver, pipe, fail)
        kind = type(made.exc_info[1])
        expected = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        assert e.attributes["exception.type"] == expected

    def test_stack_info(self, http_receiver, make_otlp, pipeline):
        """stack_info goes to code.stacktrace."""
        pipe = pipeline(make_otlp(http_receiver.url))
        e, _ = one(http_receiver, pipe, pipe.logger.info, "where", stack_info=True)
        assert e.attributes["code.stacktrace"].startswith("Stack (most recent call last):")
        assert "test_stack_info" in e.attributes["code.stacktrace"]


class TestExtras:
    """extra= values become typed attributes."""

    def test_typed_values(self, http_receiver, make_otlp, pipeline):
        """str, bool, int, float, None, lists and dicts keep their types (as AnyValue kinds)."""
        pipe = pipeline(make_otlp(http_receiver.url))
        extra = {
            "user": "bob",
            "admin": True,
            "attempts": 3,
            "ratio": 0.25,
            "nothing": None,
            "tags": ["a", 1, 2.5, False],
            "ctx": {"region": "eu", "shard": 7, "inner": {"ok": True}},
            "big": 2**70,
        }
        e, _ = one(http_receiver, pipe, pipe.logger.info, "x", extra=extra)
        attrs = e.attributes
        for key in ("user", "admin", "attempts", "ratio", "nothing", "tags", "ctx"):
            assert attrs[key] == extra[key], key
        kinds = {kv.key: kv.value.WhichOneof("value") for kv in e.record.attributes}
        assert kinds["user"] == "string_value"
        assert kinds["admin"] == "bool_value"
        assert kinds["attempts"] == "int_value"
        assert kinds["ratio"] == "double_value"
        assert kinds["nothing"] is None
        assert kinds["tags"] == "array_value"
        assert kinds["ctx"] == "kvlist_value"
        assert attrs["big"] == str(2**70)  # beyond int64: its decimal text

    def test_fabric_named_extras_keep_their_rename(self, http_receiver, make_otlp, pipeline):
        """An extra named like a fabric attribute arrives as extra_<name> and is exported so; it never
        overrides the resource."""
        pipe = pipeline(make_otlp(http_receiver.url), service="real")
        e, _ = one(http_receiver, pipe, pipe.logger.info, "x", extra={"service": "forged"})
        assert e.attributes["extra_service"] == "forged"
        assert e.resource["service.name"] == "real"

    def test_attribute_limit_counts_the_rest(self, http_receiver, make_otlp, pipeline):
        """Beyond the attribute limit, attributes are counted in dropped_attributes_count."""
        from fabric.otlp import MappingLimits

        pipe = pipeline(make_otlp(http_receiver.url, limits=MappingLimits(attributes=8)))
        e, _ = one(http_receiver, pipe, pipe.logger.info, "x", extra={f"k{i}": i for i in range(10)})
        assert len(e.record.attributes) == 8
        assert e.record.dropped_attributes_count == 6 + 10 - 8  # 6 standard ones, 10 extras


class TestLocalRecords:
    """Records made in the exporter's own process (the handler on a local logger)."""

    def test_local_record_resource_and_fields(self, http_receiver, make_otlp, make_logger):
        """A local record is described by this process: the handler's service, this host and pid."""
        otlp = make_otlp(http_receiver.url, service="local-svc")
        log = make_logger(None, otlp)
        log.error("direct %s", "call", extra={"k": "v"})
        assert http_receiver.wait_records(1)
        [e] = http_receiver.exported()
        assert e.body == "direct call"
        assert e.resource["service.name"] == "local-svc"
        assert e.resource["host.name"] == socket.gethostname()
        assert e.resource["process.pid"] == os.getpid()
        assert len(e.resource["service.instance.id"]) == 16
        assert e.attributes["k"] == "v"
        assert "logfabric.seq" not in e.attributes
        assert (e.record.severity_number, e.record.severity_text) == (17, "ERROR")

    def test_local_exception(self, http_receiver, make_otlp, make_logger):
        """exc_info of a local record gives the same exception attributes as a remote one."""
        otlp = make_otlp(http_receiver.url)
        log = make_logger(None, otlp)
        try:
            raise RuntimeError("local boom")
        except RuntimeError:
            log.exception("caught")
        assert http_receiver.wait_records(1)
        [e] = http_receiver.exported()
        assert e.attributes["exception.type"] == "RuntimeError"
        assert e.attributes["exception.message"] == "local boom"
        assert "RuntimeError: local boom" in e.attributes["exception.stacktrace"]
