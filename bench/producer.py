"""P1: what one logging call costs the caller, per handler, in two rounds.

* ``best case``: ``logger.info('msg %s %d', 'x', i)`` from one line to one
  logger. After the first call every cache of the producer hits (the encoder
  caches per call site, the handler per ``(level, logger)``): the floor of the
  cost per call, and the figure the targets are checked against.
* ``realistic service``: calls from 200 call sites (distinct functions, lines
  and files) to 50 loggers at three levels, with varied messages
  (``bench.sites``), every candidate's handler on the parent of its loggers.
  Its loop costs a little more per call (a function call and a list lookup
  around each logging call): compare ratios and each round's floor, not µs
  across rounds.

Every candidate logs the same calls in the same process, interleaved: each
round runs every candidate once, in an order rotated from round to round, and
the median over rounds is reported. Sockets deliver to a separate receiving
process (``bench._sink``) over loopback TCP, so nothing is measured against a
peer that does not read. Candidates:

* ``NullHandler``: the floor, what ``logging`` itself costs;
* ``QueueHandler`` onto a ``queue.SimpleQueue``: the stdlib's in-process queue;
* ``SocketHandler`` (pickle over TCP);
* pyzmq's ``PUBHandler`` with a subscriber;
* Logbook's ``ZeroMQHandler`` (its own ``Logger.info``; best case only, skipped
  if not installed: its loggers and call sites are not the stdlib's);
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
from bench import _sink, sites

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

BEST = "best case"
REALISTIC = "realistic service"
CASES = {
    BEST: "one call site, one logger: every cache hits",
    REALISTIC: (
        f"{sites.SITES} call sites in {sites.FILES} files, {sites.LOGGERS} loggers, sites per level "
        + "/".join(f"{level} {n}" for level, n in sites.describe()["sites_per_level"].items())
        + ", varied messages"
    ),
}


def _stdlib(handler: logging.Handler, name: str) -> Call:
    """The best case: one call site, one logger."""
    logger = logging.getLogger(f"bench.p1.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    info = logger.info

    def run(n: int) -> None:
        for i in range(n):
            info("msg %s %d", "x", i)

    return run


def _both(handler: logging.Handler, name: str) -> dict[str, Call]:
    """Both rounds' loops through ``handler``: the best case and the realistic service."""
    key = name.replace(" ", "-")
    return {BEST: _stdlib(handler, key), REALISTIC: sites.loop(handler, key)}


def _candidates(
    ports: dict[str, int], ctx: zmq.Context[zmq.Socket[bytes]]
) -> tuple[dict[str, dict[str, Call]], list[Any]]:
    """Build every candidate; return their call loops per round and what to close afterwards."""
    out: dict[str, dict[str, Call]] = {}
    closers: list[Any] = []
    out["NullHandler (floor)"] = _both(logging.NullHandler(), "null")

    qh = logging.handlers.QueueHandler(queue.SimpleQueue())

    def drained(loop: Call) -> Call:
        def run(n: int) -> None:
            qh.queue = queue.SimpleQueue()  # start empty each time, like a drained queue
            loop(n)

        return run

    out[ANCHOR_QUEUE] = {case: drained(loop) for case, loop in _both(qh, "queue").items()}

    sh = logging.handlers.SocketHandler("127.0.0.1", ports["tcp"])
    closers.append(sh)
    out["SocketHandler (pickle, TCP)"] = _both(sh, "socket")

    from zmq.log.handlers import PUBHandler

    pub_sock = ctx.socket(zmq.PUB)
    pub_sock.bind(f"tcp://127.0.0.1:{ports['pubhandler']}")
    ph = PUBHandler(pub_sock)
    closers.append(pub_sock)
    out[ANCHOR_PUB] = _both(ph, "pubhandler")

    try:
        import logbook  # type: ignore[import-not-found, import-untyped, unused-ignore]
        from logbook.queues import ZeroMQHandler  # type: ignore[import-not-found, import-untyped, unused-ignore]
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

        out["Logbook ZeroMQHandler"] = {BEST: logbook_run}  # not stdlib loggers: no realistic round

    naive_sock = ctx.socket(zmq.PUSH)
    naive_sock.connect(f"tcp://127.0.0.1:{ports['pull']}")
    closers.append(naive_sock)
    out["naive orjson __dict__ PUSH"] = _both(NaiveZmqHandler(naive_sock), "naive")

    for name in OURS:
        _, mode, codec = name.split()
        endpoint = f"tcp://127.0.0.1:{ports['pull' if mode == 'push' else 'sub']}"
        handler = fabric.ZmqHandler(endpoint, mode=mode, codec=codec, service="bench")  # type: ignore[arg-type]
        if not handler.wait_ready(10):
            raise RuntimeError(f"{name}: no subscriber within 10 s")
        closers.append(handler)
        out[name] = _both(handler, name)
    return out, closers


def _measure(candidates: dict[str, dict[str, Call]], calls: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """µs per call of every candidate in every round, per case; the cases alternate which goes first."""
    for loops in candidates.values():  # warm up: caches, connections, first-call costs
        for loop in loops.values():
            loop(min(2000, calls))
    samples: dict[str, dict[str, list[float]]] = {
        case: {name: [] for name, loops in candidates.items() if case in loops} for case in CASES
    }
    for r in range(rounds):
        for case in list(CASES)[:: 1 if r % 2 == 0 else -1]:
            names = list(samples[case])
            for name in names[r % len(names) :] + names[: r % len(names)]:
                loop = candidates[name][case]
                start = time.perf_counter()
                loop(calls)
                samples[case][name].append((time.perf_counter() - start) / calls * 1e6)
    return samples


def _summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    medians = {name: statistics.median(v) for name, v in samples.items()}
    q, p = medians[ANCHOR_QUEUE], medians[ANCHOR_PUB]
    return {
        "us_per_call": {name: round(m, 2) for name, m in medians.items()},
        "samples_us": {name: [round(x, 2) for x in v] for name, v in samples.items()},
        "vs_queue": {name: round(m / q, 3) for name, m in medians.items()},
        "vs_pubhandler": {name: round(m / p, 3) for name, m in medians.items()},
    }


def run(calls: int = 20_000, rounds: int = 7) -> dict[str, Any]:
    """Interleave every candidate over ``rounds`` in both cases; return medians (µs per call) and ratios.

    The top-level figures are the best case; ``realistic`` holds the same for the realistic service.
    """
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
    samples = _measure(candidates, calls, rounds)
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
    return {
        "calls_per_round": calls,
        "rounds": rounds,
        "case": f"{BEST}: {CASES[BEST]}",
        **_summary(samples[BEST]),
        "logbook": "Logbook ZeroMQHandler" in samples[BEST],
        "realistic": {
            "case": f"{REALISTIC}: {CASES[REALISTIC]}",
            **_summary(samples[REALISTIC]),
            "service": sites.describe(),
        },
        "handler_stats": stats,
        "received_by_sink": received,
    }


def _case_table(case: str, result: dict[str, Any]) -> list[str]:
    lines = [f"{case}: {CASES[case]}", f"  {'handler':<30} {'µs/call':>8} {'vs queue':>9} {'vs PUBHandler':>14}"]
    for name, us in result["us_per_call"].items():
        lines.append(
            f"  {name:<30} {us:>8.2f} {result['vs_queue'][name]:>8.2f}x {result['vs_pubhandler'][name]:>13.2f}x"
        )
    return lines


def table(result: dict[str, Any]) -> str:
    """The P1 tables as text: the best case, then the realistic service (when measured)."""
    lines = _case_table(BEST, result)
    if "realistic" in result:
        lines += _case_table(REALISTIC, result["realistic"])
    if not result["logbook"]:
        lines.append("(Logbook is not installed: pip install '.[bench]')")
    return "\n".join(lines)
