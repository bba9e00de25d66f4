"""OTLP receivers for the tests, built from opentelemetry-proto's official messages and gRPC service.

``HttpReceiver`` is a real ``http.server`` on 127.0.0.1 that decodes
``ExportLogsServiceRequest`` bodies; ``GrpcReceiver`` a real ``grpc`` server
implementing ``LogsServiceServicer``. Both keep every request, answer success
by default, and take a script of answers for the next requests (an HTTP status,
a gRPC status code, garbage, silence). Both can be stopped and started again on
the same port, to be "down for a while". Every wait is bounded.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from tests.helpers.net import free_port
from tests.helpers.waiting import wait_until

HANG = "hang"  # accept the request and never answer (until the receiver stops, at most 60 s)
GARBAGE = "garbage"  # answer bytes that are not HTTP (HTTP only)
BAD_BODY = "bad-body"  # answer 200 with a body that is not an ExportLogsServiceResponse (HTTP only)


def value(v: AnyValue) -> Any:
    """An AnyValue as Python: str, bool, int, float, bytes, list, dict, or None when empty."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


@dataclass
class Exported:
    """One log record as a receiver got it, with its resource and scope."""

    resource: dict[str, Any]
    scope: str
    record: LogRecord
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def body(self) -> Any:
        """The body as Python."""
        return value(self.record.body)


def flatten(requests: list[ExportLogsServiceRequest]) -> list[Exported]:
    """Every log record of ``requests``, in order."""
    out = []
    for request in requests:
        for logs in request.resource_logs:
            res = {kv.key: value(kv.value) for kv in logs.resource.attributes}
            for scope_logs in logs.scope_logs:
                for rec in scope_logs.log_records:
                    attrs = {kv.key: value(kv.value) for kv in rec.attributes}
                    out.append(Exported(res, scope_logs.scope.name, rec, attrs))
    return out


class _Receiver:
    """What both receivers share: the requests kept, the script of answers, bounded waits."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[ExportLogsServiceRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.answers: list[str] = []  # what each request got: "ok", "503", "UNAVAILABLE", "hang", ...
        self.times: list[float] = []  # time.monotonic() of each request
        self.script: deque[Any] = deque()
        self.default: Any = None  # the answer when the script is empty (None: success)
        self.guard = threading.Lock()
        self.stopping = threading.Event()

    def next_answer(self) -> Any:
        with self.guard:
            return self.script.popleft() if self.script else self.default

    def keep(self, request: ExportLogsServiceRequest, metadata: dict[str, str], answer: str) -> None:
        with self.guard:
            self.times.append(time.monotonic())
            self.requests.append(request)
            self.metadata.append(metadata)
            self.answers.append(answer)

    def exported(self) -> list[Exported]:
        """Every record of every request that was answered with success."""
        with self.guard:
            taken = [r for r, a in zip(self.requests, self.answers, strict=True) if a == "ok"]
        return flatten(taken)

    def bodies(self) -> list[Any]:
        """The bodies of :meth:`exported`, in order."""
        return [e.body for e in self.exported()]

    def wait_records(self, count: int, timeout: float = 10.0) -> bool:
        """Wait (bounded) until at least ``count`` records were taken with success."""
        return wait_until(lambda: len(self.exported()) >= count, timeout, interval=0.02)

    def wait_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Wait (bounded) until at least ``count`` requests arrived, whatever they were answered."""
        return wait_until(lambda: len(self.requests) >= count, timeout, interval=0.02)


class HttpReceiver(_Receiver):
    """OTLP/HTTP (protobuf) on ``http://127.0.0.1:PORT/v1/logs``."""

    def __init__(self) -> None:
        super().__init__()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The logs endpoint."""
        return f"http://127.0.0.1:{self.port}/v1/logs"

    def start(self) -> HttpReceiver:
        """Listen (again) on this receiver's port."""
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = ExportLogsServiceRequest.FromString(body)
                answer = receiver.next_answer()
                headers = {k.lower(): v for k, v in self.headers.items()}
                if answer == HANG:
                    receiver.keep(request, headers, HANG)
                    receiver.stopping.wait(60)
                    self.close_connection = True
                    return
                if answer == GARBAGE:
                    receiver.keep(request, headers, GARBAGE)
                    self.wfile.write(b"\x00\xffthis is not HTTP at all\r\n\r\n")
                    self.close_connection = True
                    return
                status, extra, payload = 200, {}, ExportLogsServiceResponse().SerializeToString()
                if answer == BAD_BODY:
                    payload = b"\xff\xff\xff not protobuf"
                elif isinstance(answer, int):
                    status, payload = answer, b"scripted refusal"
                elif isinstance(answer, tuple) and answer[0] == "partial":
                    response = ExportLogsServiceResponse()
                    response.partial_success.rejected_log_records = answer[1]
                    response.partial_success.error_message = "some were refused"
                    payload = response.SerializeToString()
                elif isinstance(answer, tuple):
                    status, extra, payload = answer[0], answer[1], b"scripted refusal"
                receiver.keep(request, headers, "ok" if status == 200 else str(status))
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                for name, text in extra.items():
                    self.send_header(name, text)
                self.end_headers()
                self.wfile.write(payload)

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.stopping.clear()
        deadline = time.monotonic() + 10
        while True:
            try:
                self._server = Server(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # retry interval: the port is still held by the receiver's last run
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the receiver is down until :meth:`start`); hanging requests are released."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


class _Servicer(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: GrpcReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: ExportLogsServiceRequest, context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        receiver = self.receiver
        answer = receiver.next_answer()
        metadata = {k: v for k, v in context.invocation_metadata()}
        if answer == HANG:
            receiver.keep(request, metadata, HANG)
            receiver.stopping.wait(60)
            context.abort(grpc.StatusCode.UNAVAILABLE, "stopped")
        if isinstance(answer, grpc.StatusCode):
            receiver.keep(request, metadata, answer.name)
            context.abort(answer, f"scripted {answer.name}")
        response = ExportLogsServiceResponse()
        if isinstance(answer, tuple) and answer[0] == "partial":
            response.partial_success.rejected_log_records = answer[1]
            response.partial_success.error_message = "some were refused"
        receiver.keep(request, metadata, "ok")
        return response


class GrpcReceiver(_Receiver):
    """OTLP/gRPC (``LogsService/Export``) on ``127.0.0.1:PORT``."""

    def __init__(self) -> None:
        super().__init__()
        self._server: grpc.Server | None = None

    @property
    def url(self) -> str:
        """The URL an exporter is given."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GrpcReceiver:
        """Serve (again) on this receiver's port."""
        self.stopping.clear()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Servicer(self), server)
        deadline = time.monotonic() + 10
        while server.add_insecure_port(f"127.0.0.1:{self.port}") == 0:
            if time.monotonic() > deadline:
                raise OSError(f"cannot listen on 127.0.0.1:{self.port}")
            time.sleep(0.05)  # retry interval: the port is still held by the receiver's last run
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving (the receiver is down until :meth:`start`)."""
        self.stopping.set()
        if self._server is not None:
            self._server.stop(grace=0).wait(10)
            self._server = None


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte (a receiver that never answers)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The URL an exporter is given."""
        return f"http://127.0.0.1:{self.port}/v1/logs"

    def _accept(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


def iter_attributes(exported: list[Exported], name: str) -> Iterator[Any]:
    """The value of attribute ``name`` on each exported record that has it."""
    for e in exported:
        if name in e.attributes:
            yield e.attributes[name]
