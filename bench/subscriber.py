"""P4: records/s a subscriber rehydrates and dispatches, next to the naive recipe.

Ours is ``ZmqListener.handle()`` on each received message, the listener
thread's own path: split the frame, decode and vet the payload, track the
sequence, filter, and hand the record to a handler. The anchor is what the
cookbook recipe's receiver does, at its best: ``orjson.loads`` of the
``record.__dict__`` JSON that ``orjson.dumps`` wrote (the fastest JSON it can
use), ``logging.makeLogRecord``, then ``handler.handle``. Both run in this process on
messages encoded beforehand (no socket), alternating, median of the rounds.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench.size import IDENTITY, typical_record
from fabric import ZmqListener
from fabric.codec import Encoder
from fabric.topic import join_message, make_topic

ANCHOR = "naive orjson.loads + makeLogRecord"


class Counting(logging.Handler):
    """Counts what it is handed (the dispatch target of every candidate)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _messages(codec: str, n: int) -> list[bytes]:
    enc = Encoder(IDENTITY, codec)  # type: ignore[arg-type]
    out = []
    for i in range(1, n + 1):
        record = typical_record(i)
        out.append(join_message(make_topic(record.levelno, record.name, IDENTITY.service), enc.encode(record, i)))
    return out


def _ours(codec: str, n: int) -> tuple[Callable[[], None], Counting]:
    frames = [[m] for m in _messages(codec, n)]
    target = Counting()

    def run() -> None:
        listener = ZmqListener("tcp://127.0.0.1:1", target)  # never started: only its handle() path is used
        handle = listener.handle
        for frame in frames:
            handle(frame)

    return run, target


def _naive(n: int) -> tuple[Callable[[], None], Counting]:
    payloads = [orjson.dumps(typical_record(i).__dict__, default=str) for i in range(1, n + 1)]
    target = Counting()

    def run() -> None:
        handle = target.handle
        for payload in payloads:
            handle(logging.makeLogRecord(orjson.loads(payload)))

    return run, target


def run(n: int = 50_000, rounds: int = 7) -> dict[str, Any]:
    """Alternate the candidates; return median records/s and ratios against the naive receiver."""
    candidates = {
        ANCHOR: _naive(n),
        "ZmqListener protobuf": _ours("protobuf", n),
        "ZmqListener json": _ours("json", n),
    }
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, target = candidates[name]
            before = target.count
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if target.count - before != n:
                raise RuntimeError(f"{name}: dispatched {target.count - before} of {n}")
            rates[name].append(n / elapsed)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    anchor = medians[ANCHOR]
    return {
        "records_per_round": n,
        "rounds": rounds,
        "records_per_s": {name: round(m) for name, m in medians.items()},
        "samples": {name: [round(x) for x in v] for name, v in rates.items()},
        "vs_naive": {name: round(m / anchor, 3) for name, m in medians.items()},
    }


def table(result: dict[str, Any]) -> str:
    """The P4 table as text."""
    lines = [f"{'receiver':<34} {'records/s':>10} {'vs naive':>9}"]
    for name, rate in result["records_per_s"].items():
        lines.append(f"{name:<34} {rate:>10,} {result['vs_naive'][name]:>8.2f}x")
    return "\n".join(lines)
