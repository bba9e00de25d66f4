"""Trace correlation: the span active at the logging call becomes the exported record's TraceId and SpanId.

Spans come from a real opentelemetry-sdk ``TracerProvider``. ``ZmqHandler``
stamps each record with the active span at the logging call; the ids travel as the ``otelTraceID``/``otelSpanID``/
``otelTraceSampled`` extras that opentelemetry-instrumentation-logging also sets.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import fabric
from fabric._trace import current_trace_context, stamp
from fabric.codec import Encoder, ProducerIdentity
from tests.helpers.net import ROOT, child_env

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def tracer():
    """A tracer of a real SDK TracerProvider (not installed globally)."""
    provider = TracerProvider()
    yield provider.get_tracer("tests.otlp")
    provider.shutdown()


class TestCapture:
    """current_trace_context() and stamp() in the producer process."""

    def test_inside_a_span(self, tracer):
        """Inside a span: its trace id and span id in hex, and its trace-flags byte (sampled, here)."""
        with tracer.start_as_current_span("work") as span:
            ctx = span.get_span_context()
            assert current_trace_context() == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", int(ctx.trace_flags))
            assert ctx.trace_flags & 1
            with tracer.start_as_current_span("inner") as inner:
                assert current_trace_context()[1] == f"{inner.get_span_context().span_id:016x}"
            assert current_trace_context()[1] == f"{ctx.span_id:016x}"  # back to the outer span

    def test_outside_a_span(self, tracer):
        """No active span: None."""
        assert current_trace_context() is None

    def test_unsampled_span(self):
        """A span that is not sampled still has ids; its flags say not sampled."""
        provider = TracerProvider(sampler=ALWAYS_OFF)
        with provider.get_tracer("t").start_as_current_span("quiet") as span:
            found = current_trace_context()
        assert found is not None and found[0] == f"{span.get_span_context().trace_id:032x}"
        assert found[2] & 1 == 0
        record = logging.makeLogRecord({"msg": "m"})
        with provider.get_tracer("t").start_as_current_span("quiet"):
            stamp(record)
        assert record.otelTraceSampled is False

    def test_stamp_keeps_existing_ids(self, tracer):
        """A record that already carries trace ids (from the instrumentation, say) keeps them."""
        record = logging.makeLogRecord({"msg": "m", "otelTraceID": "ab" * 16, "otelSpanID": "cd" * 8})
        with tracer.start_as_current_span("other"):
            stamp(record)
        assert (record.otelTraceID, record.otelSpanID) == ("ab" * 16, "cd" * 8)

    def test_without_opentelemetry_imported_it_imports_nothing(self):
        """In a process that never imported OpenTelemetry, the capture is a lookup that imports nothing."""
        code = (
            "import sys, logging, fabric._trace as t\n"
            "r = logging.makeLogRecord({'msg': 'm'}); t.stamp(r)\n"
            "print(t.current_trace_context(), 'otelTraceID' in r.__dict__,"
            " any(m.startswith('opentelemetry') for m in sys.modules))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["None", "False", "False"]


class TestEndToEnd:
    """Producer in a span -> wire -> listener -> OtlpHandler -> receiver."""

    def test_ids_travel_and_are_exported(self, http_receiver, make_otlp, pipeline, tracer):
        """A record logged in a span is exported with that span's TraceId, SpanId and the sampled flag."""
        pipe = pipeline(make_otlp(http_receiver.url))
        with tracer.start_as_current_span("checkout") as span:
            pipe.logger.info("in span")
        pipe.logger.info("after span")
        assert http_receiver.wait_records(2)
        inside, outside = http_receiver.exported()
        ctx = span.get_span_context()
        assert inside.record.trace_id == ctx.trace_id.to_bytes(16, "big")
        assert inside.record.span_id == ctx.span_id.to_bytes(8, "big")
        assert inside.record.flags == 1
        assert (outside.record.trace_id, outside.record.span_id, outside.record.flags) == (b"", b"", 0)
        for e in (inside, outside):
            assert not {"otelTraceID", "otelSpanID", "otelTraceSampled"} & set(e.attributes)

    def test_instrumentation_fields_are_honoured(self, http_receiver, make_otlp, pipeline):
        """Records stamped the way opentelemetry-instrumentation-logging stamps them export the same way."""
        pipe = pipeline(make_otlp(http_receiver.url))
        fields = {
            "otelTraceID": "0af7651916cd43dd8448eb211c80319c",
            "otelSpanID": "b7ad6b7169203331",
            "otelTraceSampled": True,
            "otelServiceName": "instrumented",
        }
        pipe.logger.info("instrumented", extra=fields)
        # Outside a span the instrumentation writes "0" for both ids.
        pipe.logger.info("no span", extra={"otelTraceID": "0", "otelSpanID": "0", "otelTraceSampled": False})
        assert http_receiver.wait_records(2)
        stamped, unstamped = http_receiver.exported()
        assert stamped.record.trace_id.hex() == fields["otelTraceID"]
        assert stamped.record.span_id.hex() == fields["otelSpanID"]
        assert stamped.record.flags == 1
        assert stamped.attributes["otelServiceName"] == "instrumented"
        assert (unstamped.record.trace_id, unstamped.record.span_id) == (b"", b"")

    @pytest.mark.parametrize(
        ("trace_id", "span_id"),
        [
            ("zz" * 16, "ab" * 8),  # not hex
            ("ab" * 15, "ab" * 8),  # too short
            ("00" * 16, "ab" * 8),  # all zero: invalid
            ("ab" * 16, "00" * 8),
            (12345, "ab" * 8),  # not a string
            ("ab" * 16, None),
        ],
    )
    def test_invalid_ids_are_ignored(self, http_receiver, make_otlp, pipeline, trace_id, span_id):
        """Ids that are not valid W3C ids export no trace context, and the record still goes out."""
        pipe = pipeline(make_otlp(http_receiver.url))
        pipe.logger.info("forged", extra={"otelTraceID": trace_id, "otelSpanID": span_id})
        assert http_receiver.wait_records(1)
        [e] = http_receiver.exported()
        assert (e.body, e.record.trace_id, e.record.span_id) == ("forged", b"", b"")

    def test_remote_records_never_take_the_exporters_span(self, http_receiver, make_otlp, tracer):
        """A remote record handled inside the exporting process's own span keeps its own (absent) context."""
        otlp = make_otlp(http_receiver.url)
        payload = Encoder(ProducerIdentity("far", "away", 1, 7)).encode(logging.makeLogRecord({"msg": "remote"}), 1)
        record = fabric.decode(payload).record
        with tracer.start_as_current_span("exporter's own work"):
            otlp.handle(record)
        assert http_receiver.wait_records(1)
        [e] = http_receiver.exported()
        assert (e.body, e.record.trace_id) == ("remote", b"")

    def test_local_records_take_the_active_span(self, http_receiver, make_otlp, make_logger, tracer):
        """The handler on a local logger exports the span active at the logging call."""
        log = make_logger(None, make_otlp(http_receiver.url))
        with tracer.start_as_current_span("local") as span:
            log.warning("local in span")
        assert http_receiver.wait_records(1)
        [e] = http_receiver.exported()
        assert e.record.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")
        assert e.record.span_id == span.get_span_context().span_id.to_bytes(8, "big")
