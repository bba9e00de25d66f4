"""The broker's HTTP side: /metrics (Prometheus text), /healthz and /readyz."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from broker._store_feed import StoreFeed
from broker._view import BrokerView
from broker.config import parse_http
from broker.metrics import registry_for

__all__ = ["serve"]

_log = logging.getLogger("logfabric.broker")


#: Seconds a connection may take to send its request and get its answer (a slow sender is cut off).
REQUEST_DEADLINE = 10.0
#: Connections served at once (a thread each); more are closed at once.
MAX_CONNECTIONS = 1024


class _Server(ThreadingHTTPServer):
    """One thread per connection, but at most ``most`` of them, none living past REQUEST_DEADLINE.

    The handler's socket timeout only bounds each read: a client that sends a
    byte every few seconds would keep its thread for good. ``service_actions``
    (run by ``serve_forever`` twice a second) shuts such connections down.
    """

    # socketserver's default backlog of 5 makes a burst of connections (or a
    # few hundred idle ones) wait seconds to be accepted, probes included.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], most: int = MAX_CONNECTIONS
    ) -> None:
        super().__init__(address, handler)
        self.most = most
        """Connections served at once (fewer than MAX_CONNECTIONS when file descriptors are short)."""
        self._open: dict[Any, float] = {}
        self._open_lock = threading.Lock()
        self.refused = 0
        """Connections closed at once because ``most`` were open."""
        self.cut_off = 0
        """Connections shut down at REQUEST_DEADLINE."""

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = len(self._open) >= self.most
            if full:
                self.refused += 1
            else:
                self._open[request] = time.monotonic()
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        now = time.monotonic()
        with self._open_lock:
            late = [conn for conn, opened in self._open.items() if now - opened > REQUEST_DEADLINE]
            self.cut_off += len(late)
        for conn in late:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # its thread's read ends; the thread closes it


def serve(broker: BrokerView, address: str) -> ThreadingHTTPServer:
    """Serve the endpoints for ``broker`` on ``HOST:PORT`` in a daemon thread."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    except ImportError:  # pragma: no cover - depends on the install
        raise RuntimeError("the broker's /metrics needs prometheus-client: pip install 'logfabric[broker]'") from None
    registry = registry_for(broker)

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_DEADLINE  # each read; the server cuts off a connection that trickles past it

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = broker.alive
                self._send(200 if ok else 503, b"ok\n" if ok else b"a proxy stopped\n")
            elif path == "/readyz":
                ok = broker.ready
                store = getattr(broker, "store", None)  # degraded or not, forwarding goes on: detail only
                detail = f"{store.snapshot().describe()}\n" if isinstance(store, StoreFeed) else ""
                self._send(200 if ok else 503, (b"ready\n" if ok else b"not ready\n") + detail.encode())
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            _log.debug("http: " + format, *args)

    host, port = parse_http(address)
    try:
        most = broker.limits.http if broker.limits is not None else MAX_CONNECTIONS
        server = _Server((host, port), Handler, most)
    except OSError as exc:
        raise RuntimeError(f"cannot serve HTTP on {address!r}: {exc.strerror}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="logfabric-http", daemon=True).start()
    return server
