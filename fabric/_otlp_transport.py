"""OTLP/HTTP (protobuf) and OTLP/gRPC clients: send one ``ExportLogsServiceRequest``, classify the answer.

The messages and the gRPC stub are opentelemetry-proto's. What an answer means
follows the OTLP specification: a success (possibly partial), a failure worth
retrying (HTTP 429, 502, 503, 504, gRPC UNAVAILABLE and the other retryable
codes, no answer, a broken connection) or one that is not (any other status).
A transport never raises for what the receiver does.
"""

from __future__ import annotations

import email.utils
import http.client
import re
import time
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse

from fabric import __version__

__all__ = ["Outcome", "Protocol", "Transport", "check_headers", "open_transport"]

Protocol = Literal["http", "grpc"]

_RETRY_HTTP = frozenset({429, 502, 503, 504})
_MAX_ANSWER = 64 * 1024  # bytes of an answer's body read; a longer one ends the connection
_MAX_RETRY_AFTER = 60.0
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class Outcome(NamedTuple):
    """What became of one request."""

    kind: Literal["ok", "retry", "drop"]
    rejected: int = 0
    """``ok``: records the receiver refused in a partial success."""
    delay: float | None = None
    """``retry``: the wait the receiver asked for (Retry-After), if any."""
    reason: str = ""
    """Why, in a few words (for the one-time diagnostic)."""


class Transport:
    """Sends requests to one OTLP endpoint."""

    url: str

    def send(self, request: ExportLogsServiceRequest, timeout: float) -> Outcome:
        """Send ``request``, waiting at most about ``timeout`` seconds; never raises for the receiver's behaviour."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""


def check_headers(headers: Mapping[str, str], protocol: Protocol) -> dict[str, str]:
    """Return ``headers`` if every name and value can be sent, else raise ValueError saying which is wrong."""
    out = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}: use letters, digits and - (e.g. 'Authorization')")
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
            raise ValueError(f"invalid value for header {name!r}: a string without CR, LF or NUL")
        if protocol == "grpc" and (name.lower().endswith("-bin") or not value.isascii()):
            raise ValueError(f"header {name!r}: gRPC metadata sent here must be ASCII text (no '-bin' keys)")
        out[name] = value
    return out


def open_transport(url: str, protocol: Protocol, headers: Mapping[str, str]) -> Transport:
    """A transport for ``url`` (``http://`` or ``https://``); raise ValueError for a URL it cannot use."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid OTLP URL {url!r}: expected http://HOST:PORT[/PATH] or https://...")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in OTLP URL {url!r}") from None
    if protocol == "http":
        return HttpTransport(url, parts.scheme, parts.hostname, port, parts.path, parts.query, headers)
    if protocol == "grpc":
        return GrpcTransport(url, parts.scheme, parts.hostname, port, headers)
    raise ValueError(f"unknown protocol {protocol!r}: use 'http' (OTLP/HTTP with protobuf) or 'grpc'")


def _printable(data: bytes) -> str:
    text = data[:200].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or an HTTP date), bounded; None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), _MAX_RETRY_AFTER))


class HttpTransport(Transport):
    """OTLP/HTTP with binary protobuf bodies, one keep-alive connection (``http.client``)."""

    def __init__(
        self,
        url: str,
        scheme: str,
        host: str,
        port: int | None,
        path: str,
        query: str,
        headers: Mapping[str, str],
    ) -> None:
        self.url = url
        self._scheme, self._host, self._port = scheme, host, port
        # A URL without a path means the collector's base address: the logs path is added.
        self._target = (path if path not in ("", "/") else "/v1/logs") + (f"?{query}" if query else "")
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"logfabric/{__version__}",
            **check_headers(headers, "http"),
        }
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is None:
            klass = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = self._conn = klass(self._host, self._port, timeout=timeout)
        elif conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def send(self, request: ExportLogsServiceRequest, timeout: float) -> Outcome:
        """POST ``request``; a stale keep-alive connection is retried once at once on a new one."""
        body = request.SerializeToString()
        for attempt in (0, 1):
            reused = self._conn is not None
            try:
                return self._post(body, timeout)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
                self.close()
                if not reused or attempt:
                    return Outcome("retry", reason=f"connection lost ({type(exc).__name__})")
            except TimeoutError:
                self.close()
                return Outcome("retry", reason="no answer within the timeout")
            except http.client.HTTPException as exc:
                self.close()
                return Outcome("retry", reason=f"the receiver's answer is not HTTP ({type(exc).__name__}): {exc}"[:200])
            except OSError as exc:
                self.close()
                return Outcome("retry", reason=f"cannot reach the receiver ({type(exc).__name__}): {exc}"[:200])
        raise AssertionError("unreachable")

    def _post(self, body: bytes, timeout: float) -> Outcome:
        conn = self._connection(timeout)
        conn.request("POST", self._target, body, self._headers)
        answer = conn.getresponse()
        data = answer.read(_MAX_ANSWER)
        if not answer.isclosed() or answer.will_close:
            self.close()  # more than we read, or the server ends the connection: start afresh next time
        status = answer.status
        if 200 <= status < 300:
            return _accepted(data)
        if status in _RETRY_HTTP:
            return Outcome(
                "retry",
                delay=_retry_after(answer.getheader("Retry-After")),
                reason=f"the receiver answered HTTP {status}",
            )
        return Outcome("drop", reason=f"the receiver answered HTTP {status} {answer.reason}: {_printable(data)}"[:300])

    def close(self) -> None:
        """Close the keep-alive connection, if any."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _accepted(data: bytes) -> Outcome:
    """A 2xx answer: the records were taken, minus those a partial success rejects."""
    try:
        answer = ExportLogsServiceResponse.FromString(data)
    except Exception:  # google.protobuf.message.DecodeError and kin: a receiver that answers garbage
        return Outcome("ok", reason="answered 2xx with a body that is not an ExportLogsServiceResponse")
    return _taken(answer)


def _taken(answer: ExportLogsServiceResponse) -> Outcome:
    """Success, less the records a partial success rejects."""
    partial = answer.partial_success
    rejected = max(0, partial.rejected_log_records)
    if rejected or partial.error_message:
        return Outcome(
            "ok", rejected, reason=f"reported a partial success: {_printable(partial.error_message.encode())}"
        )
    return Outcome("ok")


class GrpcTransport(Transport):
    """OTLP/gRPC through opentelemetry-proto's ``LogsServiceStub``."""

    def __init__(self, url: str, scheme: str, host: str, port: int | None, headers: Mapping[str, str]) -> None:
        try:
            import grpc  # type: ignore[import-untyped,unused-ignore]
            from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        except ImportError:
            raise ValueError("OTLP/gRPC needs grpcio: pip install 'logfabric[otlp]'") from None
        self.url = url
        self._grpc = grpc
        target = f"[{host}]:{port or 4317}" if ":" in host else f"{host}:{port or 4317}"
        self._metadata = tuple((k.lower(), v) for k, v in check_headers(headers, "grpc").items())
        if scheme == "https":
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
        else:
            self._channel = grpc.insecure_channel(target)
        stub = logs_service_pb2_grpc.LogsServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._export: Any = stub.Export
        codes = grpc.StatusCode
        # The OTLP specification's retryable codes. RESOURCE_EXHAUSTED is retryable
        # only with RetryInfo in the status details, which this client does not read.
        self._retryable = frozenset(
            {codes.CANCELLED, codes.DEADLINE_EXCEEDED, codes.ABORTED, codes.OUT_OF_RANGE, codes.UNAVAILABLE}
            | {codes.DATA_LOSS}
        )

    def send(self, request: ExportLogsServiceRequest, timeout: float) -> Outcome:
        """Call ``LogsService/Export`` with ``timeout`` as its deadline."""
        try:
            answer = self._export(request, timeout=timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            details = exc.details() if callable(getattr(exc, "details", None)) else ""
            reason = f"the receiver answered gRPC {getattr(code, 'name', code)}: {details}"[:300]
            return Outcome("retry" if code in self._retryable else "drop", reason=reason)
        return _taken(answer)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()
