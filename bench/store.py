"""The record store: segment files against SQLite, and what the store costs the broker's forwarding.

``python -m bench.store`` runs, side by side in one run:

1. **Append**: 1,000,000 records (about 300 bytes, 5 services, 8 loggers,
   4 levels) in batches of 1,000, into the broker's segment store
   (:class:`broker._store.Store`) and into SQLite (stdlib ``sqlite3``, WAL,
   ``synchronous=NORMAL``, one transaction per batch) with and without an
   index on the logger: records/s and bytes on disk.
2. **Query**: the newest 100 records of a logger prefix, for a common logger
   (``app.db``: about a quarter of the records, with ``app.db.pool``) and a
   rare one (``app.rare``: 0.1 %), median of 5.
3. **Forwarding**: a push producer blasting through a broker process with the
   store off and on (alternating trials, as P3 does), records/s at the
   receiver, and what the store kept and missed.

SQLite lives here only: the broker ships the segment store.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import zmq

from bench.forwarding import PAYLOAD, _port, _scrape, _send
from broker._store import RecordFilter, Store

SERVICES = [b"checkout", b"inventory", b"mailer", b"search", b"billing"]
LOGGERS = [b"app.http", b"app.db", b"app.db.pool", b"app.jobs", b"app.cache", b"app.auth", b"app.search", b"app.rare"]
WEIGHTS = [20, 15, 10, 20, 15, 10, 9.9, 0.1]
LEVELS = b"1234"
BATCH = 1000


def records(count: int, seed: int = 7) -> list[bytes]:
    """``count`` frames ``topic NUL payload`` with a realistic mix of topics."""
    rng = random.Random(seed)
    names = rng.choices(LOGGERS, WEIGHTS, k=count)
    return [
        bytes([rng.choice(LEVELS)]) + name + b"\x00" + rng.choice(SERVICES) + b"\x00" + PAYLOAD[: 250 + i % 50]
        for i, name in enumerate(names)
    ]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def segments(frames: list[bytes], where: Path) -> dict[str, Any]:
    store = Store(where, retention_bytes=64 * 1024**3)
    store.open()
    began = time.perf_counter()
    for i in range(0, len(frames), BATCH):
        store.append(frames[i : i + BATCH])
    store.sync()
    took = time.perf_counter() - began
    queries = {}
    for prefix in ("app.db", "app.rare"):
        times, got = [], 0
        for _ in range(5):
            t = time.perf_counter()
            got = len(store.read(RecordFilter(loggers=(prefix,)), last=100))
            times.append(time.perf_counter() - t)
        queries[prefix] = {"ms": round(statistics.median(times) * 1000, 2), "found": got}
    store.close()
    return {"append_rps": round(len(frames) / took), "bytes": _size(where), "newest_100": queries}


def _split(frame: bytes) -> tuple[int, bytes, bytes]:
    nul = frame.find(b"\x00")
    end = frame.find(b"\x00", nul + 1)
    return frame[0] - 48, frame[1:nul], frame[nul + 1 : end]


def sqlite(frames: list[bytes], where: Path, indexed: bool) -> dict[str, Any]:
    where.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(where / "records.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE records (pos INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, bucket INTEGER NOT NULL, "
        "logger BLOB NOT NULL, service BLOB NOT NULL, frame BLOB NOT NULL)"
    )
    if indexed:
        db.execute("CREATE INDEX by_logger ON records (logger, pos)")
    began = time.perf_counter()
    for i in range(0, len(frames), BATCH):
        now = time.time_ns()
        rows = [(now, *_split(f), f) for f in frames[i : i + BATCH]]
        db.execute("BEGIN")
        db.executemany("INSERT INTO records (time_ns, bucket, logger, service, frame) VALUES (?,?,?,?,?)", rows)
        db.execute("COMMIT")
    took = time.perf_counter() - began
    queries = {}
    for prefix in ("app.db", "app.rare"):
        p = prefix.encode()
        times, got = [], 0
        for _ in range(5):
            t = time.perf_counter()
            rows = db.execute(
                "SELECT pos, time_ns, frame FROM records WHERE logger = ? OR (logger >= ? AND logger < ?) "
                "ORDER BY pos DESC LIMIT 100",
                (p, p + b".", p + b"/"),
            ).fetchall()
            times.append(time.perf_counter() - t)
            got = len(rows)
        queries[prefix] = {"ms": round(statistics.median(times) * 1000, 2), "found": got}
    db.close()
    return {"append_rps": round(len(frames) / took), "bytes": _size(where), "newest_100": queries}


def layouts(count: int) -> dict[str, Any]:
    """Append and query each layout on the same records, in one run."""
    frames = records(count)
    out: dict[str, Any] = {"records": count}
    for name, run in (
        ("segments", lambda d: segments(frames, d)),
        ("sqlite_indexed", lambda d: sqlite(frames, d, indexed=True)),
        ("sqlite_plain", lambda d: sqlite(frames, d, indexed=False)),
    ):
        where = Path(tempfile.mkdtemp(prefix=f"bench-store-{name}-"))
        try:
            out[name] = run(where / "store")
        finally:
            shutil.rmtree(where, ignore_errors=True)
        print(f"  {name:<15} {json.dumps(out[name])}", flush=True)
    return out


# --------------------------------------------------------------------------- forwarding, store on and off


def _broker(ingest: str, egress: str, http: str, store: str | None, ready: Any) -> None:
    from broker import Broker

    with Broker(push_ingest=ingest, pub_ingest=f"tcp://127.0.0.1:{_port()}", egress=egress, http=http, store=store):
        ready.set()
        threading.Event().wait()


def _store_figures(http: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=5).read().decode()
    want = ("logfabric_broker_store_appends_total", 'logfabric_broker_store_missed_records_total{reason="behind"}')
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith(want)}


def trial(count: int, store: str | None) -> dict[str, Any]:
    """One push trial through a broker process: records/s at a SUB receiver (and the store's figures)."""
    mp = multiprocessing.get_context("spawn")
    ingest, egress, http = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}", f"127.0.0.1:{_port()}"
    ready, go = mp.Event(), mp.Event()
    server = mp.Process(target=_broker, args=(ingest, egress, http, store, ready), daemon=True)
    server.start()
    if not ready.wait(20):
        server.kill()
        raise RuntimeError("the broker did not start")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(egress)
    time.sleep(0.5)
    sender = mp.Process(target=_send, args=("push", ingest, count, go), daemon=True)
    sender.start()
    time.sleep(0.5)
    stop = threading.Event()
    threading.Thread(target=_scrape, args=(http, stop), daemon=True).start()
    go.set()
    received, first, last = 0, 0.0, 0.0
    while received < count and sub.poll(3000):
        sub.recv()
        last = time.perf_counter()
        first = first or last
        received += 1
    stop.set()
    time.sleep(2.5)  # the store's once-a-second accounting catches up
    figures = _store_figures(http) if store else {}
    sender.join(10)
    for p in (sender, server):
        p.kill()
        p.join(5)
    sub.close(linger=0)
    ctx.term()
    rate = (received - 1) / (last - first) if received > 1 and last > first else 0.0
    return {"rate": rate, "lost": count - received, **figures}


def forwarding(count: int, rounds: int) -> dict[str, Any]:
    """Alternate store-off and store-on trials; medians and their ratio."""
    rates: dict[str, list[float]] = {"off": [], "on": []}
    stored: list[dict[str, Any]] = []
    for r in range(rounds):
        for kind in ("off", "on") if r % 2 == 0 else ("on", "off"):
            where = tempfile.mkdtemp(prefix="bench-store-fwd-") if kind == "on" else None
            try:
                t = trial(count, where)
            finally:
                if where:
                    shutil.rmtree(where, ignore_errors=True)
            rates[kind].append(t["rate"])
            if kind == "on":
                stored.append({k: v for k, v in t.items() if k != "rate"})
            print(f"  store {kind:<3} {round(t['rate']):>9,} records/s  {t}", flush=True)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    return {
        "store_off_rps": round(off),
        "store_on_rps": round(on),
        "ratio": round(on / off, 3) if off else None,
        "off_rps": [round(x) for x in rates["off"]],
        "on_rps": [round(x) for x in rates["on"]],
        "store_on_figures": stored,
        "messages_per_trial": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records for the layouts (default 1000000)")
    parser.add_argument("--forward", type=int, default=200_000, help="messages per forwarding trial (default 200000)")
    parser.add_argument("--rounds", type=int, default=3, help="forwarding rounds (default 3)")
    parser.add_argument("--skip-forwarding", action="store_true")
    args = parser.parse_args()
    print(f"layouts: {args.records:,} records, batches of {BATCH}", flush=True)
    results: dict[str, Any] = {"layouts": layouts(args.records)}
    if not args.skip_forwarding:
        print(f"forwarding (push, {args.forward:,} messages, {args.rounds} rounds)", flush=True)
        results["forwarding"] = forwarding(args.forward, args.rounds)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
