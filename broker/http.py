"""The broker's HTTP side: /metrics (Prometheus text), /healthz and /readyz."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from broker.config import parse_http
from broker.metrics import registry_for

if TYPE_CHECKING:
    from broker.broker import Broker

__all__ = ["serve"]

_log = logging.getLogger("logfabric.broker")


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 makes a burst of connections (or a
    # few hundred idle ones) wait seconds to be accepted, probes included.
    request_queue_size = 128


def serve(broker: Broker, address: str) -> ThreadingHTTPServer:
    """Serve the endpoints for ``broker`` on ``HOST:PORT`` in a daemon thread."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    except ImportError:  # pragma: no cover - depends on the install
        raise RuntimeError("the broker's /metrics needs prometheus-client: pip install 'logfabric[broker]'") from None
    registry = registry_for(broker)

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a connection that sends no request gives its thread back after 10 s

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = broker.alive
                self._send(200 if ok else 503, b"ok\n" if ok else b"a proxy stopped\n")
            elif path == "/readyz":
                ok = broker.ready
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
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
        server = _Server((host, port), Handler)
    except OSError as exc:
        raise RuntimeError(f"cannot serve HTTP on {address!r}: {exc.strerror}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="logfabric-http", daemon=True).start()
    return server
