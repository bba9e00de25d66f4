"""P1: what one ``logger.info('msg %s %d', 'x', i)`` call costs the caller, per handler.

Every candidate logs the same call in the same process, interleaved: each round
runs every candidate once, in an order rotated from round to round, and the
median over rounds is reported. Sockets deliver to a separate receiving process
(``bench._sink``) over loopback TCP, so nothing is measured against a peer that
does not read. Candidates:

* ``NullHandler``: the floor, what ``logging`` itself costs;
* ``QueueHandler`` onto a ``queue.SimpleQueue``: the stdlib's in-process queue;
* ``SocketHandler`` (pickle over TCP);
* pyzmq's ``PUBHandler`` with a subscriber;
* Logbook's ``ZeroMQHandler`` (its own ``Logger.info``; skipped if not installed);
* the cookbook recipe: a ``QueueHandler`` subclass sending
  ``orjson.dumps(record.__dict__, default=str)`` on PUSH;
* ``fabric.ZmqHandler`` in push and pub modes with both codecs.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import queue
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson
import zmq

import fabric
from bench import _sink

ANCHOR_QUEUE = "QueueHandler -> SimpleQueue"
ANCHOR_PUB = "pyzmq PUBHandler"
OURS = ("ZmqHandler push protobuf", "ZmqHandler push json", "ZmqHandler pub protobuf", "ZmqHandler pub json")


class NaiveZmqHandler(logging.handlers.QueueHandler):
    """The cookbook recipe: a QueueHandler whose enqueue sends the record's __dict__ as JSON."""

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.sock = sock

    def enqueue(self, record: logging.LogRecord) -> None:
        self.sock.send(orjson.dumps(record.__dict__, default=str))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Call = Callable[[int], None]


def _stdlib(handler: logging.Handler, name: str) -> Call:
    logger = logging.getLogger(f"bench.p1.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    info = logger.info

    def run(n: int) -> None:
        for i in range(n):
            info("msg %s %d", "x", i)

    return run


def _candidates(ports: dict[str, int], ctx: zmq.Context[zmq.Socket[bytes]]) -> tuple[dict[str, Call], list[Any]]:
    """Build every candidate; return their call loops and what to close afterwards."""
    out: dict[str, Call] = {}
    closers: list[Any] = []
    out["NullHandler (floor)"] = _stdlib(logging.NullHandler(), "null")

    qh = logging.handlers.QueueHandler(queue.SimpleQueue())
    queue_loop = _stdlib(qh, "queue")

    def queue_run(n: int) -> None:
        qh.queue = queue.SimpleQueue()  # start empty each time, like a drained queue
        queue_loop(n)

    out[ANCHOR_QUEUE] = queue_run

    sh = logging.handlers.SocketHandler("127.0.0.1", ports["tcp"])
    closers.append(sh)
    out["SocketHandler (pickle, TCP)"] = _stdlib(sh, "socket")

    from zmq.log.handlers import PUBHandler

    pub_sock = ctx.socket(zmq.PUB)
    pub_sock.bind(f"tcp://127.0.0.1:{ports['pubhandler']}")
    ph = PUBHandler(pub_sock)
    closers.append(pub_sock)
    out[ANCHOR_PUB] = _stdlib(ph, "pubhandler")

    try:
        import logbook  # type: ignore[import-not-found, unused-ignore]
        from logbook.queues import ZeroMQHandler  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        lb = ZeroMQHandler(f"tcp://127.0.0.1:{ports['logbook']}", context=ctx)
        lb_logger = logbook.Logger("bench.p1.logbook")
        closers.append(lb)

        def logbook_run(n: int) -> None:
            with lb.applicationbound():
                for i in range(n):
                    lb_logger.info("msg {} {}", "x", i)

        out["Logbook ZeroMQHandler"] = logbook_run

    naive_sock = ctx.socket(zmq.PUSH)
    naive_sock.connect(f"tcp://127.0.0.1:{ports['pull']}")
    closers.append(naive_sock)
    out["naive orjson __dict__ PUSH"] = _stdlib(NaiveZmqHandler(naive_sock), "naive")

    for name in OURS:
        _, mode, codec = name.split()
        endpoint = f"tcp://127.0.0.1:{ports['pull' if mode == 'push' else 'sub']}"
        handler = fabric.ZmqHandler(endpoint, mode=mode, codec=codec, service="bench")  # type: ignore[arg-type]
        if not handler.wait_ready(10):
            raise RuntimeError(f"{name}: no subscriber within 10 s")
        closers.append(handler)
        out[name] = _stdlib(handler, name.replace(" ", "-"))
    return out, closers


def run(calls: int = 20_000, rounds: int = 7) -> dict[str, Any]:
    """Interleave every candidate over ``rounds``; return medians (µs per call) and ratios."""
    ports = {k: _port() for k in ("pull", "sub", "tcp", "pubhandler", "logbook")}
    mp = multiprocessing.get_context("spawn")
    ready, stop = mp.Event(), mp.Event()
    manager = mp.Manager()
    counts = manager.dict()
    sink = mp.Process(target=_sink.serve, args=(ports, ready, stop, counts), daemon=True)
    sink.start()
    if not ready.wait(30):
        raise RuntimeError("the receiving process did not start")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    candidates, closers = _candidates(ports, ctx)
    time.sleep(1.0)  # subscriptions reach the PUB sockets; the TCP connection is up
    names = list(candidates)
    for name in names:  # warm up: caches, connections, first-call costs
        candidates[name](min(2000, calls))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            candidates[name](calls)
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    stats = {}
    for closer in closers:
        if isinstance(closer, fabric.ZmqHandler):
            stats[closer.mode + " " + closer.codec] = dict(closer.stats)
        closer.close()
    ctx.term()
    stop.set()
    sink.join(10)
    received = dict(counts)
    manager.shutdown()
    medians = {name: statistics.median(v) for name, v in samples.items()}
    q, p = medians[ANCHOR_QUEUE], medians[ANCHOR_PUB]
    return {
        "calls_per_round": calls,
        "rounds": rounds,
        "us_per_call": {name: round(m, 2) for name, m in medians.items()},
        "samples_us": {name: [round(x, 2) for x in v] for name, v in samples.items()},
        "vs_queue": {name: round(m / q, 3) for name, m in medians.items()},
        "vs_pubhandler": {name: round(m / p, 3) for name, m in medians.items()},
        "logbook": "Logbook ZeroMQHandler" in medians,
        "handler_stats": stats,
        "received_by_sink": received,
    }


def table(result: dict[str, Any]) -> str:
    """The P1 table as text."""
    lines = [f"{'handler':<30} {'µs/call':>8} {'vs queue':>9} {'vs PUBHandler':>14}"]
    for name, us in result["us_per_call"].items():
        lines.append(f"{name:<30} {us:>8.2f} {result['vs_queue'][name]:>8.2f}x {result['vs_pubhandler'][name]:>13.2f}x")
    if not result["logbook"]:
        lines.append("(Logbook is not installed: pip install '.[bench]')")
    return "\n".join(lines)
