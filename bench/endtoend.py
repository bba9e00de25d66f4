"""P2: end-to-end records/s, one producer process to one subscriber process.

Ours: a producer process logging through ``fabric.ZmqHandler`` (push, protobuf)
into a broker process, and a subscriber process whose ``ZmqListener`` rehydrates
every record and hands it to a counting handler. The anchor is the cookbook
recipe going direct, with no broker, at its best: the producer's
``QueueHandler`` subclass sends ``orjson.dumps(record.__dict__, default=str)``
on PUSH, and the subscriber's PULL loop does ``orjson.loads`` +
``logging.makeLogRecord`` + ``handler.handle`` (orjson both ways, the fastest
JSON the recipe can use).

The rate is records received divided by the time from the producer's first
call to the subscriber's last record (``time.monotonic`` is system-wide).
Records sent but never received are reported as lost. Trials alternate.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import statistics
import threading
import time
from typing import Any

import orjson
import zmq

from bench.forwarding import _port

IDLE = 2.0  # seconds without a record after which a subscriber reports


def _produce(kind: str, endpoint: str, count: int, go: Any, results: Any) -> None:
    import fabric
    from bench.producer import NaiveZmqHandler

    logger = logging.getLogger("app.orders")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    handler: logging.Handler
    if kind == "ours":
        # send_timeout: block on a full queue rather than drop, as the anchor's PUSH does
        handler = fabric.ZmqHandler(endpoint, service="bench", send_timeout=10.0)
    else:
        sock = ctx.socket(zmq.PUSH)
        sock.connect(endpoint)
        handler = NaiveZmqHandler(sock)
    logger.addHandler(handler)
    logger.info("warm up %s %d", "x", 0)  # connects; the subscriber starts its clock at the first record
    go.wait()
    start = time.monotonic()
    cpu = time.process_time()
    info = logger.info
    for i in range(count):
        info("msg %s %d", "x", i)
    end = time.monotonic()
    cpu = time.process_time() - cpu
    handler.close()
    if kind != "ours":
        sock.close(linger=-1)
    ctx.term()
    results.put(("producer", {"start": start, "end": end, "cpu": cpu}))


class _Last(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.last = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.last = time.monotonic()


def _subscribe_ours(endpoint: str, ready: Any, results: Any) -> None:
    import fabric

    target = _Last()
    with fabric.ZmqListener(endpoint, target):
        ready.set()
        _wait_idle(target)
    results.put(("subscriber", {"received": target.count - 1, "last": target.last}))


def _subscribe_naive(endpoint: str, ready: Any, results: Any) -> None:
    target = _Last()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(endpoint)
    ready.set()
    handle = target.handle
    while pull.poll(int(IDLE * 1000) if target.count else 60_000):
        handle(logging.makeLogRecord(orjson.loads(pull.recv())))
    pull.close(linger=0)
    ctx.term()
    results.put(("subscriber", {"received": target.count - 1, "last": target.last}))


def _wait_idle(target: _Last) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if target.count and time.monotonic() - target.last > IDLE:
            return


def _broker(push_ingest: str, egress: str, ready: Any) -> None:
    from broker import Broker

    with Broker(push_ingest=push_ingest, pub_ingest=f"tcp://127.0.0.1:{_port()}", egress=egress):
        ready.set()
        threading.Event().wait()


def trial(kind: str, count: int) -> dict[str, Any]:
    """One trial of ``kind`` ("ours" or "naive"): records received, lost, records/s."""
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    go = mp.Event()
    procs = []
    if kind == "ours":
        ingest, egress = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}"
        broker_ready = mp.Event()
        procs.append(mp.Process(target=_broker, args=(ingest, egress, broker_ready), daemon=True))
        procs[-1].start()
        if not broker_ready.wait(30):
            raise RuntimeError("the broker did not start")
        sub_ready = mp.Event()
        procs.append(mp.Process(target=_subscribe_ours, args=(egress, sub_ready, results), daemon=True))
        endpoint = ingest
    else:
        endpoint = f"tcp://127.0.0.1:{_port()}"
        sub_ready = mp.Event()
        procs.append(mp.Process(target=_subscribe_naive, args=(endpoint, sub_ready, results), daemon=True))
    procs[-1].start()
    if not sub_ready.wait(30):
        raise RuntimeError("the subscriber did not start")
    time.sleep(0.5)  # the subscription reaches the broker
    producer = mp.Process(target=_produce, args=(kind, endpoint, count, go, results), daemon=True)
    producer.start()
    time.sleep(1.0)  # connected, warm-up record delivered
    go.set()
    got: dict[str, dict[str, float]] = {}
    while len(got) < 2:
        who, data = results.get(timeout=180)
        got[who] = data
    producer.join(10)
    cpu = {"producer": got["producer"]["cpu"]}
    for role, p in zip(("broker", "subscriber") if kind == "ours" else ("subscriber",), procs, strict=True):
        cpu[role] = _cpu_seconds(p.pid)
    for p in procs:
        p.kill()
        p.join(5)
    received = int(got["subscriber"]["received"])
    elapsed = got["subscriber"]["last"] - got["producer"]["start"]
    return {
        "received": received,
        "lost": count - received,
        "rate": received / elapsed if elapsed > 0 else 0.0,
        "producer_seconds": got["producer"]["end"] - got["producer"]["start"],
        # CPU per record in each process (the subscriber's and broker's include their start-up)
        "cpu_us_per_record": {role: round(sec / count * 1e6, 2) for role, sec in cpu.items()},
    }


def _cpu_seconds(pid: int | None) -> float:
    """User plus system CPU seconds a (still running) process has used, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(count: int = 200_000, rounds: int = 5) -> dict[str, Any]:
    """Alternate naive and ours; return median records/s, loss and the ratio."""
    rates: dict[str, list[float]] = {"naive": [], "ours": []}
    lost: dict[str, int] = {"naive": 0, "ours": 0}
    cpu: dict[str, list[dict[str, float]]] = {"naive": [], "ours": []}
    for r in range(rounds):
        for kind in ("naive", "ours") if r % 2 == 0 else ("ours", "naive"):
            t = trial(kind, count)
            rates[kind].append(t["rate"])
            lost[kind] += int(t["lost"])
            cpu[kind].append(t["cpu_us_per_record"])
    naive, ours = statistics.median(rates["naive"]), statistics.median(rates["ours"])
    return {
        "records_per_trial": count,
        "rounds": rounds,
        "naive_median_rps": round(naive),
        "ours_median_rps": round(ours),
        "ratio": round(ours / naive, 3) if naive else None,
        "naive_rps": [round(x) for x in rates["naive"]],
        "ours_rps": [round(x) for x in rates["ours"]],
        "lost": lost,
        "cpu_us_per_record": {
            kind: {role: round(statistics.median(c[role] for c in trials), 2) for role in trials[0]}
            for kind, trials in cpu.items()
        },
    }


def table(result: dict[str, Any]) -> str:
    """The P2 table as text."""
    n = result["records_per_trial"] * result["rounds"]
    return "\n".join(
        [
            f"{'path':<54} {'records/s':>10} {'lost':>12}",
            f"{'naive: PUSH -> PULL, orjson.loads + makeLogRecord':<54} {result['naive_median_rps']:>10,}"
            f" {result['lost']['naive']:>6}/{n}",
            f"{'ours: ZmqHandler -> broker -> ZmqListener':<54} {result['ours_median_rps']:>10,}"
            f" {result['lost']['ours']:>6}/{n}",
            f"ratio ours/naive: {result['ratio']}x",
            "CPU µs per record (median): "
            + "; ".join(
                f"{kind}: " + ", ".join(f"{role} {us}" for role, us in roles.items())
                for kind, roles in result["cpu_us_per_record"].items()
            ),
        ]
    )
