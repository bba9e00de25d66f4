"""The OpenTelemetry span active at a logging call, carried with the record as three extras.

A producer records the active span's context on the record as the extras
``otelTraceID`` (32 hex digits), ``otelSpanID`` (16 hex digits) and
``otelTraceSampled`` (a bool): the names and forms that
``opentelemetry-instrumentation-logging`` sets, so records it stamped travel
and export the same way. The exporter (:mod:`fabric._otlp_mapping`) turns them
into the OTLP log record's ``trace_id``, ``span_id`` and ``flags``.

opentelemetry-api is optional and never imported here: a span can only be
active in a process that imported ``opentelemetry.trace`` itself, so until then
:func:`current_trace_context` is one dictionary lookup.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["SAMPLED", "SPAN_ID", "TRACE_ID", "TraceContextFilter", "current_trace_context", "stamp"]

TRACE_ID = "otelTraceID"
SPAN_ID = "otelSpanID"
SAMPLED = "otelTraceSampled"

# The span context seen last and its formatted form: records logged inside one
# span (the usual case) format its ids once. One tuple, replaced whole, so
# threads never see a half-updated pair.
_last: tuple[Any, tuple[str, str, int] | None] = (None, None)


def current_trace_context() -> tuple[str, str, int] | None:
    """Return (trace id, span id, trace flags) of the active span, or None.

    The ids are lowercase hex (32 and 16 digits), the flags the W3C trace-flags
    byte (bit 0: sampled). None when opentelemetry-api was never imported, when
    no valid span is active, or if the API fails (logging never fails for it).
    """
    global _last
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        ctx = trace.get_current_span().get_span_context()
        last = _last
        if ctx is last[0]:
            return last[1]
        found = (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", int(ctx.trace_flags)) if ctx.is_valid else None
    except Exception:
        return None
    _last = (ctx, found)
    return found


def stamp(record: logging.LogRecord) -> None:
    """Set the active span's context on ``record`` as the three extras, unless it already carries them."""
    found = current_trace_context()
    if found is not None:
        attrs = record.__dict__
        if TRACE_ID not in attrs:
            attrs[TRACE_ID], attrs[SPAN_ID], attrs[SAMPLED] = found[0], found[1], bool(found[2] & 1)


class TraceContextFilter(logging.Filter):
    """A filter that stamps every record it sees with the active span (see :func:`stamp`); it rejects none."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp ``record``; always True."""
        stamp(record)
        return True
