"""LogRecord -> OpenTelemetry ``LogRecord`` (OTLP), per the logs data model and semantic conventions.

The table is in docs/otlp.md. A record that came over the fabric (it has
``producer_id``) describes its producer; a record made in this process describes
this process. Every value is bounded (:class:`MappingLimits`): what is cut is
counted in :attr:`Mapper.truncated`, never an error, so a hostile record cannot
make the mapping fail or grow without bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as OtlpRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from fabric import _trace
from fabric._intake import GapNotice
from fabric._record import FABRIC_ATTRIBUTES, exception_chain, severity_number
from fabric._text import safe_repr, safe_str, scrub

__all__ = ["Item", "Mapper", "MappingLimits", "ResourceKey", "build_request", "resource"]

#: Who a record is from: service, host, producer id (16 hex digits), pid (None: unknown).
ResourceKey = tuple[str, str, str, int | None]
#: One mapped record: its resource, its instrumentation scope (the logger name), the OTLP record.
Item = tuple[ResourceKey, str, OtlpRecord]

_INT64 = (-(2**63), 2**63 - 1)
_RELATIONS = ("raised", "cause", "context")
# Attributes every LogRecord has or gains from a Formatter: mapped to named fields or left out.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Never exported as attributes: the standard ones, the fabric's (mapped to the
# resource and named fields) and the trace context (mapped to trace_id/span_id/flags).
_NOT_EXTRAS = _STANDARD | FABRIC_ATTRIBUTES | {_trace.TRACE_ID, _trace.SPAN_ID, _trace.SAMPLED}
_HEX = frozenset("0123456789abcdefABCDEF")
_DEFAULT_FORMATTER = logging.Formatter()
_SCOPES = 4096  # logger names whose scope text is kept; past that the cache starts again
_SITES = 1024  # call sites whose shared fields are kept built
_SITE_BYTES = 2048  # larger shared fields (long remote paths or names) are built for each record
_RESOURCES = 4096  # resources kept built; past that the cache starts again


@dataclass(frozen=True)
class MappingLimits:
    """Bounds on what one record may put into OTLP; what is cut counts in :attr:`Mapper.truncated`."""

    attributes: int = 128
    """Attributes per record (the OpenTelemetry SDK's default); the rest count in ``dropped_attributes_count``."""
    text: int = 16 * 1024
    """Characters of one string (or bytes of one bytes) attribute value, and of a logger name."""
    body: int = 128 * 1024
    """Characters of the body, ``exception.stacktrace`` and ``code.stacktrace``."""
    items: int = 256
    """Elements of one list or entries of one mapping."""
    depth: int = 8
    """Levels of nesting of lists and mappings; deeper values become a marker string."""


def _time_ns(created: float) -> int:
    whole = int(created)
    return whole * 1_000_000_000 + round((created - whole) * 1e9)


def _str(value: object) -> str:
    return value if type(value) is str else "" if value is None else safe_str(value)


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def _hex_id(value: object, digits: int) -> bytes | None:
    """The id ``value`` names (``digits`` hex digits, not all zero), as bytes; None for anything else."""
    if type(value) is not str or len(value) != digits or not _HEX.issuperset(value):
        return None
    raw = bytes.fromhex(value)
    return raw if any(raw) else None


def _exception_type(name: str) -> str:
    # The fabric sends module.qualname; builtins are known by their bare name (OSError, not builtins.OSError).
    return name[9:] if name.startswith("builtins.") else name


def resource(key: ResourceKey) -> Resource:
    """The OTLP resource of a producer: ``service.name``, ``host.name``, ``service.instance.id``, ``process.pid``."""
    service, host, instance, pid = key
    res = Resource()
    attrs = res.attributes
    for name, text in (("service.name", service or "unknown_service"), ("host.name", host)):
        if text:
            kv = attrs.add()
            kv.key = name
            kv.value.string_value = text
    if instance:
        kv = attrs.add()
        kv.key = "service.instance.id"
        kv.value.string_value = instance
    if pid:
        kv = attrs.add()
        kv.key = "process.pid"
        kv.value.int_value = pid
    return res


def build_request(
    batch: Iterable[tuple[ResourceKey, str, OtlpRecord, int]], resources: dict[ResourceKey, Resource]
) -> ExportLogsServiceRequest:
    """One request for ``batch``: a ResourceLogs per producer, a ScopeLogs per logger within it.

    ``resources`` caches the built resources between requests (bounded here).
    """
    request = ExportLogsServiceRequest()
    groups: dict[ResourceKey, tuple[Any, dict[str, Any]]] = {}
    for key, scope, mapped, _ in batch:
        group = groups.get(key)
        if group is None:
            built = resources.get(key)
            if built is None:
                if len(resources) >= _RESOURCES:
                    resources.clear()
                built = resources[key] = resource(key)
            logs = request.resource_logs.add()
            logs.resource.CopyFrom(built)
            group = groups[key] = (logs, {})
        scopes = group[1]
        scope_logs = scopes.get(scope)
        if scope_logs is None:
            scope_logs = scopes[scope] = group[0].scope_logs.add()
            scope_logs.scope.name = scope
        scope_logs.log_records.append(mapped)
    return request


class Mapper:
    """Maps records to OTLP for one handler; ``local`` is the resource of records made in this process."""

    def __init__(self, local: tuple[str, str, str], limits: MappingLimits | None = None) -> None:
        self.local = local
        self.limits = limits or MappingLimits()
        self.truncated = 0
        """Values cut, shortened or replaced by a marker to fit :attr:`limits`."""
        self._scrubbing = False
        self._scopes: dict[str, str] = {}  # logger name -> its scope text
        self._sites: dict[tuple[Any, ...], OtlpRecord] = {}  # call site -> the fields its records share
        self._room = 0  # attributes the record being mapped may still take

    def map(self, record: logging.LogRecord) -> Item:
        """Map one record; raises only what a local record's own ``getMessage()`` raises."""
        try:
            return self._map(record)
        except UnicodeEncodeError:  # a lone surrogate somewhere: map again, escaping every string
            self._scrubbing = True
            try:
                return self._map(record)
            finally:
                self._scrubbing = False

    # ------------------------------------------------------------------ one record

    def _map(self, record: logging.LogRecord) -> Item:
        d = record.__dict__
        lim = self.limits
        out = OtlpRecord()
        out.CopyFrom(self._site(record))
        self._room = lim.attributes - len(out.attributes) - out.dropped_attributes_count
        out.time_unix_nano = _time_ns(record.created)
        out.observed_time_unix_nano = time.time_ns()
        out.body.string_value = self._text(record.getMessage(), lim.body)
        remote = "producer_id" in d and "seq" in d  # what every record from the fabric carries
        if remote:
            pid = None if isinstance(record, GapNotice) else record.process  # a notice is made by this subscriber
            key: ResourceKey = (_str(d.get("service")), _str(d.get("host")), _str(d["producer_id"]), _int(pid))
            found = None
        else:
            key = (*self.local, _int(record.process))
            found = None if _trace.TRACE_ID in d else _trace.current_trace_context()
        if found is not None:
            out.trace_id, out.span_id, out.flags = bytes.fromhex(found[0]), bytes.fromhex(found[1]), found[2] & 1
        elif _trace.TRACE_ID in d:
            trace_id, span_id = _hex_id(d[_trace.TRACE_ID], 32), _hex_id(d.get(_trace.SPAN_ID), 16)
            if trace_id is not None and span_id is not None:
                out.trace_id, out.span_id = trace_id, span_id
                out.flags = 1 if d.get(_trace.SAMPLED) is True else 0
        put = self._put
        chain = d.get("exceptions") if remote else self._local_chain(record)
        if chain:
            first = chain[0]
            if isinstance(first, Mapping):
                put(out, "exception.type", _exception_type(safe_str(first.get("type"))))
                put(out, "exception.message", first.get("message"))
            put(out, "logfabric.exceptions", chain)
        if record.exc_text:
            put(out, "exception.stacktrace", self._text(safe_str(record.exc_text), lim.body))
        if record.stack_info:
            put(out, "code.stacktrace", self._text(safe_str(record.stack_info), lim.body))
        seq = d.get("seq")
        if remote and seq is not None:
            put(out, "logfabric.seq", seq)
        extras = d.keys() - _NOT_EXTRAS
        if extras:
            for name, value in d.items():
                if name in extras:
                    put(out, self._key(name), value)
        return key, self._scope(record.name), out

    def _scope(self, name: object) -> str:
        """The instrumentation scope of a logger name: capped, and valid UTF-8 (it is only set later)."""
        if type(name) is str:
            scope = self._scopes.get(name)
            if scope is not None:
                return scope
        text = self._text(safe_str(name), self.limits.text)
        try:
            text.encode()
        except UnicodeEncodeError:
            text = scrub(text)
        if type(name) is str:
            if len(self._scopes) >= _SCOPES:
                self._scopes.clear()
            self._scopes[name] = text
        return text

    def _site(self, record: logging.LogRecord) -> OtlpRecord:
        """What a call site's records share (severity, code location, thread), built once per site."""
        site: tuple[Any, ...] = (
            record.levelno,
            record.levelname,
            record.pathname,
            record.funcName,
            record.lineno,
            record.thread,
            record.threadName,
        )
        try:
            cached = self._sites.get(site)
        except TypeError:  # an unhashable value in a local record's standard fields: build it every time
            cached = None
            site = ()
        if cached is not None:
            return cached
        lim = self.limits
        out = OtlpRecord()
        out.severity_number = severity_number(record.levelno)  # type: ignore[assignment]  # in the enum's range
        out.severity_text = self._text(safe_str(record.levelname), lim.text)
        self._room = lim.attributes
        put = self._put
        if record.pathname:
            put(out, "code.file.path", record.pathname)
        if record.funcName:
            put(out, "code.function.name", record.funcName)
        if record.lineno:
            put(out, "code.line.number", record.lineno)
        if record.thread:
            put(out, "thread.id", record.thread)
        if record.threadName:
            put(out, "thread.name", record.threadName)
        if site and out.ByteSize() <= _SITE_BYTES:  # bounded: sites come from remote producers
            if len(self._sites) >= _SITES:
                self._sites.clear()
            self._sites[site] = out
        return out

    def _put(self, out: OtlpRecord, name: str, value: object) -> None:
        """Add one attribute, or count it in ``dropped_attributes_count`` past the limit."""
        if self._room <= 0:
            out.dropped_attributes_count += 1
            return
        self._room -= 1
        kv = out.attributes.add()
        kv.key = name
        self._value(kv.value, value, 0)

    def _local_chain(self, record: logging.LogRecord) -> list[dict[str, str]] | None:
        """The exception chain of a record made here, in the form a remote record carries it."""
        if not record.exc_info:
            return None
        if not record.exc_text:  # cached on the record, as logging.Formatter does
            record.exc_text = _DEFAULT_FORMATTER.formatException(record.exc_info)
        return [
            {"type": kind, "message": message, "relation": _RELATIONS[relation]}
            for kind, message, relation in exception_chain(record.exc_info[1])
        ] or None

    # ------------------------------------------------------------------ values

    def _text(self, text: str, cap: int) -> str:
        if len(text) > cap:
            self.truncated += 1
            text = f"{text[:cap]}... [logfabric: truncated {len(text) - cap} chars]"
        return scrub(text) if self._scrubbing else text

    def _key(self, name: object) -> str:
        return self._text(name if type(name) is str else safe_str(name), 256)

    def _value(self, out: AnyValue, value: object, depth: int) -> None:
        """Write ``value`` as a typed AnyValue: str, bool, int, float, bytes, list (array) or mapping (kvlist)."""
        lim = self.limits
        if isinstance(value, str):
            out.string_value = self._text(str.__str__(value), lim.text)
        elif isinstance(value, bool):
            out.bool_value = bool(value)
        elif isinstance(value, int):
            number = int.__index__(value)
            if _INT64[0] <= number <= _INT64[1]:
                out.int_value = number
            else:  # beyond OTLP's int64: its decimal text
                out.string_value = self._text(safe_repr(number), lim.text)
        elif isinstance(value, float):
            out.double_value = float(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value[: lim.text])
            if len(value) > lim.text:
                self.truncated += 1
            out.bytes_value = raw
        elif value is None:
            pass  # an empty AnyValue: OTLP's null
        elif isinstance(value, (list, tuple, set, frozenset, Mapping)):
            if depth >= lim.depth:
                self.truncated += 1
                out.string_value = f"<logfabric: nested deeper than {lim.depth} levels, not shown>"
            elif isinstance(value, Mapping):
                self._kvlist(out, value, depth)
            else:
                self._array(out, value, depth)
        else:
            out.string_value = self._text(safe_repr(value), lim.text)

    def _array(self, out: AnyValue, value: Any, depth: int) -> None:
        array = out.array_value
        array.SetInParent()
        values = array.values
        for count, item in enumerate(value):
            if count >= self.limits.items:
                self.truncated += 1
                break
            self._value(values.add(), item, depth + 1)

    def _kvlist(self, out: AnyValue, value: Mapping[Any, Any], depth: int) -> None:
        kvlist = out.kvlist_value
        kvlist.SetInParent()
        values = kvlist.values
        for count, (name, item) in enumerate(value.items()):
            if count >= self.limits.items:
                self.truncated += 1
                break
            kv = values.add()
            kv.key = self._key(name)
            self._value(kv.value, item, depth + 1)
