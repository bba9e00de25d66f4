"""``logfabric demo``: an embedded broker, producer processes and a live tail, all local."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Literal

import fabric
from broker.broker import Broker

__all__ = ["main", "run_demo"]

_SERVICES = ("checkout", "inventory", "mailer", "search", "billing")
_LOGGERS = ("app.http", "app.db", "app.db.pool", "app.jobs", "app.cache")


def _produce(
    endpoint: str, mode: Literal["push", "pub"], service: str, seconds: float, counts: Any, index: int
) -> None:
    handler = fabric.install(endpoint, level="DEBUG", service=service, mode=mode)
    handler.wait_ready(5.0)
    rng = random.Random(index)
    adapter = logging.LoggerAdapter(logging.getLogger("app.http"), {"request_id": f"req-{index}"})
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        name = rng.choice(_LOGGERS)
        log = logging.getLogger(name)
        roll = rng.random()
        if roll < 0.02:
            try:
                int(f"order-{sent}")
            except ValueError:
                log.exception("lookup failed for order %d", sent)
        elif roll < 0.10:
            log.warning("slow query took %.1f ms", rng.uniform(100, 900), extra={"table": "orders"})
        elif roll < 0.30:
            adapter.info("GET /orders/%d 200", sent)
        else:
            log.debug("tick %d", sent, extra={"shard": rng.randint(0, 7)})
        sent += 1
        time.sleep(rng.uniform(0.002, 0.02))
    handler.close()
    counts[index] = (sent, handler.stats["dropped"])


def run_demo(seconds: float = 4.0, producers: int = 3, store: str | None = None) -> int:
    """Run the demo and print a per-producer summary; return 0 when nothing was lost.

    The broker keeps what it receives in a record store: in ``store``, or in
    a temporary directory removed at the end.
    """
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(
        logging.Formatter("%(asctime)s %(service)-9s %(processName)-12s %(levelname)-7s %(name)-12s %(message)s")
    )
    console.setLevel(logging.INFO)
    received: dict[str, int] = {}

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            service = record.__dict__["service"]
            received[service] = received.get(service, 0) + 1

    ctx = multiprocessing.get_context("spawn")
    counts: Any = ctx.Manager().dict()
    local = "tcp://127.0.0.1:*"
    where = store or tempfile.mkdtemp(prefix="logfabric-demo-store-")
    with Broker(pub_ingest=local, push_ingest=local, egress=local, store=where, history=local) as broker:
        listener = fabric.ZmqListener(broker.endpoints["egress"], console, Count())
        listener.start()
        time.sleep(0.3)  # let the subscription reach the broker
        plan = [
            ("push" if i % 2 == 0 else "pub", _SERVICES[i % len(_SERVICES)] + (f"-{i}" if i >= len(_SERVICES) else ""))
            for i in range(producers)
        ]
        print(f"broker: {broker.endpoints}")
        print(f"{producers} producers logging for {seconds:g}s; the tail shows INFO and up\n")
        procs = [
            ctx.Process(
                target=_produce,
                args=(broker.endpoints[f"{mode}_ingest"], mode, service, seconds, counts, i),
                name=f"producer-{i}",
            )
            for i, (mode, service) in enumerate(plan)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        time.sleep(1.5)  # the store syncs once a second
        listener.stop()
        kept = broker.store.snapshot() if broker.store is not None else None
        print(f"\nfrom the store (logfabric tail -n 3 --no-follow --history {broker.endpoints['history']}):")
        with fabric.subscribe(
            broker.endpoints["egress"], history=broker.endpoints["history"], last=3, follow=False, timeout=5
        ) as stored:
            for record in stored:
                console.handle(record)  # every level: these are the newest records, whatever they are
    if store is None:
        shutil.rmtree(where, ignore_errors=True)
    print("\nproducer  mode  service      sent  dropped  received")
    lost = 0
    for i, (mode, service) in enumerate(plan):
        sent, dropped = counts.get(i, (0, 0))
        got = received.get(service, 0)
        lost += sent - got
        print(f"{i:>8}  {mode:<4}  {service:<9} {sent:>7}  {dropped:>7}  {got:>8}")
    print(f"\nsubscriber: {listener.stats}")
    if kept is not None:
        print(kept.describe() + ("" if store else " (a temporary directory, removed)"))
    print("nothing lost" if lost == 0 else f"LOST {lost} record(s)")
    return 0 if lost == 0 else 1


def main(argv: Sequence[str] | None = None, prog: str = "logfabric demo") -> int:
    """``logfabric demo [--seconds S] [--producers N]``; return the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description="Run producers, a listener and a live tail, all local.")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long producers log (default 4)")
    parser.add_argument("--producers", type=int, default=3, help="number of producer processes (default 3)")
    parser.add_argument("--store", metavar="DIR", help="keep the records in this store (default: a temporary one)")
    args = parser.parse_args(argv)
    return run_demo(seconds=args.seconds, producers=args.producers, store=args.store)
