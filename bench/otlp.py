"""OTLP: what a logging call costs the producer, against the OpenTelemetry SDK's path; export throughput.

``python -m bench.otlp [--quick] [--out FILE]``. Not a test: figures are noisy,
read the ratios. Receivers run in a separate process (``spawn``) so their work
does not take the producer's interpreter: a ZeroMQ PULL sink, and OTLP/HTTP and
OTLP/gRPC receivers built from opentelemetry-proto, which count what arrives.

1. **Producer cost**, µs per ``logger.info('msg %s %d', 'x', i)``, the
   candidates interleaved over rounds (order rotated), medians reported:
   ``NullHandler`` (the floor); ``ZmqHandler`` (push, protobuf: what a service
   using the fabric pays; the export to OTLP happens elsewhere); the same with
   the trace-context capture inside an active span; the OpenTelemetry SDK's
   ``LoggingHandler`` with its ``BatchLogRecordProcessor`` and OTLP/HTTP
   exporter, outside and inside a span. For the SDK, "with flush" adds the time
   its background thread needs to export the round (``force_flush``): work the
   same process does, which the call loop alone does not show. Records that
   reached the receivers are counted (the SDK's queue drops when full).
2. **Export throughput**, records/s through ``OtlpHandler`` (remote records,
   decoded as a listener hands them over, mapped, batched and sent) until the
   receiver has them all, over HTTP and gRPC; and the mapping alone, µs/record.

Needs the ``otlp`` and ``bench`` extras (opentelemetry-sdk and
opentelemetry-exporter-otlp-proto-http for the SDK candidate).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import socket
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import fabric
from fabric._trace import TraceContextFilter
from fabric.codec import Encoder, ProducerIdentity

Call = Callable[[int], None]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- receiving process


def _receive(ports: dict[str, int], ready: Any, stop: Any, counts: Any) -> None:
    """Count records: ZeroMQ messages on a PULL, OTLP log records over HTTP and gRPC (``counts[i]``)."""
    import http.server

    import grpc
    import zmq
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )

    def records(request: Any) -> int:
        return sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)

    answer = ExportLogsServiceResponse().SerializeToString()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            n = records(ExportLogsServiceRequest.FromString(body))
            with counts.get_lock():
                counts[1] += n
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    class Servicer(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            n = records(request)
            with counts.get_lock():
                counts[2] += n
            return ExportLogsServiceResponse()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", ports["http"]), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Servicer(), server)
    server.add_insecure_port(f"127.0.0.1:{ports['grpc']}")
    server.start()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{ports['pull']}")
    ready.set()
    while not stop.is_set():
        if pull.poll(100):
            n = 0
            try:
                while True:
                    pull.recv(zmq.NOBLOCK)
                    n += 1
            except zmq.Again:
                pass
            with counts.get_lock():
                counts[0] += n
    pull.close(0)
    ctx.term()
    server.stop(0)
    httpd.shutdown()


# --------------------------------------------------------------------------- producer cost


def _logger(name: str, *handlers: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"bench.otlp.{name}")
    logger.handlers[:] = list(handlers)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _loop(logger: logging.Logger) -> Call:
    info = logger.info

    def run(n: int) -> None:
        for i in range(n):
            info("msg %s %d", "x", i)

    return run


def _in_span(tracer: Any, run: Call) -> Call:
    def spanned(n: int) -> None:
        with tracer.start_as_current_span("request"):
            run(n)

    return spanned


def producer_cost(ports: dict[str, int], counts: Any, calls: int, rounds: int) -> dict[str, Any]:
    """Part 1: µs per call for each candidate, interleaved; medians, ratios and what arrived."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's LoggingHandler is deprecated, still shipped
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}))
        provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"http://127.0.0.1:{ports['http']}/v1/logs"))
        )
        sdk_handler = LoggingHandler(logger_provider=provider)
    tracer = TracerProvider().get_tracer("bench")
    zmq_handler = fabric.ZmqHandler(f"tcp://127.0.0.1:{ports['pull']}", service="bench")
    traced = fabric.ZmqHandler(f"tcp://127.0.0.1:{ports['pull']}", service="bench")
    traced.addFilter(TraceContextFilter())
    candidates: dict[str, Call] = {
        "NullHandler (floor)": _loop(_logger("null", logging.NullHandler())),
        "ZmqHandler": _loop(_logger("zmq", zmq_handler)),
        "ZmqHandler + trace capture, in a span": _in_span(tracer, _loop(_logger("zmq-traced", traced))),
        "OTel SDK LoggingHandler + batch + OTLP/HTTP": _loop(_logger("sdk", sdk_handler)),
        "OTel SDK LoggingHandler, in a span": _in_span(tracer, _loop(_logger("sdk-span", sdk_handler))),
    }
    sdk = {name for name in candidates if name.startswith("OTel")}
    for run in candidates.values():  # warm up: connections, caches
        run(min(2000, calls))
    provider.force_flush()
    time.sleep(0.5)
    base = (counts[0], counts[1])
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    flushed: dict[str, list[float]] = {name: [] for name in sdk}
    names = list(candidates)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            candidates[name](calls)
            loop = time.perf_counter() - start
            samples[name].append(loop / calls * 1e6)
            if name in sdk:
                provider.force_flush()  # the round's export work, done by the SDK's thread in this process
                flushed[name].append((time.perf_counter() - start) / calls * 1e6)
    provider.force_flush()
    zmq_handler.close()
    traced.close()
    time.sleep(1.0)
    arrived = {"zmq": counts[0] - base[0], "sdk": counts[1] - base[1]}
    provider.shutdown()
    medians = {name: statistics.median(v) for name, v in samples.items()}
    ours = medians["ZmqHandler"]
    return {
        "calls_per_round": calls,
        "rounds": rounds,
        "us_per_call": {n: round(m, 2) for n, m in medians.items()},
        "us_per_call_with_flush": {n: round(statistics.median(v), 2) for n, v in flushed.items()},
        "vs_zmqhandler": {n: round(m / ours, 2) for n, m in medians.items()},
        "sent": {"zmq": 2 * calls * rounds, "sdk": 2 * calls * rounds},
        "arrived": arrived,
        "samples_us": {n: [round(x, 2) for x in v] for n, v in samples.items()},
    }


# --------------------------------------------------------------------------- export throughput


def _remote_records(count: int) -> list[logging.LogRecord]:
    """Records as a listener hands them to its handlers: decoded from the wire, with a few extras."""
    encoder = Encoder(ProducerIdentity("checkout", "web-1", 4242, 0x5F0C2A9E81D34B77))
    out = []
    for i in range(count):
        record = logging.LogRecord("app.db", logging.INFO, "/srv/app/db.py", 88, "slow query %d ms", (i,), None)
        record.funcName = "run"
        record.user, record.attempt = "bob", i % 5
        out.append(fabric.decode(encoder.encode(record, i + 1)).record)
    return out


def export_throughput(ports: dict[str, int], counts: Any, count: int, rounds: int) -> dict[str, Any]:
    """Part 2: records/s through OtlpHandler (HTTP, gRPC) until the receiver has them; mapping µs/record."""
    from fabric._otlp_mapping import Mapper

    records = _remote_records(count)
    mapper = Mapper(("bench", "host", "0" * 16))
    start = time.perf_counter()
    for record in records:
        mapper.map(record)[2].ByteSize()
    mapping_us = (time.perf_counter() - start) / count * 1e6
    out: dict[str, Any] = {"records_per_round": count, "mapping_us_per_record": round(mapping_us, 2)}
    from fabric.otlp import OtlpHandler

    for protocol, index in (("http", 1), ("grpc", 2)):
        url = f"http://127.0.0.1:{ports[protocol]}" + ("/v1/logs" if protocol == "http" else "")
        rates = []
        for _ in range(rounds):
            handler = OtlpHandler(url, protocol=protocol, queue_size=count, batch_size=512, batch_delay=0.05)  # type: ignore[arg-type]
            before = counts[index]
            start = time.perf_counter()
            for record in records:
                handler.handle(record)
            deadline = time.monotonic() + 120
            while counts[index] - before < count and time.monotonic() < deadline:
                time.sleep(0.002)
            took = time.perf_counter() - start
            handler.close()
            got = counts[index] - before
            rates.append(got / took)
            if handler.stats["dropped"]:
                print(f"  {protocol}: {handler.stats}", file=sys.stderr)
        out[protocol] = {"records_per_s": round(statistics.median(rates)), "rounds": [round(r) for r in rates]}
    return out


# --------------------------------------------------------------------------- main


def run(quick: bool = False) -> dict[str, Any]:
    """Both parts, with the receivers in another process."""
    ports = {k: _port() for k in ("pull", "http", "grpc")}
    mp = multiprocessing.get_context("spawn")
    ready, stop = mp.Event(), mp.Event()
    counts = mp.Array("q", 3)
    receiver = mp.Process(target=_receive, args=(ports, ready, stop, counts), daemon=True)
    receiver.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the receiving process did not start")
        calls, rounds = (2_000, 3) if quick else (10_000, 7)
        cost = producer_cost(ports, counts, calls, rounds)
        throughput = export_throughput(ports, counts, *((5_000, 1) if quick else (50_000, 3)))
    finally:
        stop.set()
        receiver.join(10)
        if receiver.is_alive():
            receiver.kill()
    return {"producer": cost, "export": throughput}


def table(result: dict[str, Any]) -> str:
    """Both parts as text."""
    p = result["producer"]
    lines = [f"producer, µs per call (median of {p['rounds']} rounds of {p['calls_per_round']:,})"]
    lines.append(f"{'handler':<46} {'µs/call':>8} {'with flush':>11} {'vs ZmqHandler':>14}")
    for name, us in p["us_per_call"].items():
        flush = p["us_per_call_with_flush"].get(name)
        shown = f"{flush:>11.2f}" if flush is not None else f"{'':>11}"
        lines.append(f"{name:<46} {us:>8.2f} {shown} {p['vs_zmqhandler'][name]:>13.2f}x")
    lines.append(f"arrived: ZmqHandler {p['arrived']['zmq']:,} of {p['sent']['zmq']:,}, SDK {p['arrived']['sdk']:,} of")
    lines[-1] += f" {p['sent']['sdk']:,}"
    e = result["export"]
    lines.append(f"export: mapping {e['mapping_us_per_record']} µs/record; OtlpHandler records/s:")
    lines.append(f"  OTLP/HTTP {e['http']['records_per_s']:,}   OTLP/gRPC {e['grpc']['records_per_s']:,}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp")
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    args = parser.parse_args()
    result = run(args.quick)
    print(table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
