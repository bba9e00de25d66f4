"""P1 in instructions: what one logging call executes, counted by valgrind's callgrind.

It counts P1's best case only: ``logger.info('msg %s %d', 'x', i)`` from one
call site to one logger, where every cache of the producer hits.

Timings on a shared 2-core machine move with whatever else runs; instruction
counts do not. Each candidate runs twice under ``valgrind --tool=callgrind``,
once with ``SHORT`` and once with ``LONG`` calls after the same set-up and
warm-up, and the difference divided by ``LONG - SHORT`` is its instructions per
call. Every thread of the process is counted, so a ZeroMQ candidate includes its
libzmq I/O thread's work (the work a core does for that call, if not on the
caller's thread); the receiving process is not counted. Run with
``python -m bench --callgrind`` (needs valgrind; a few minutes).
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from bench.forwarding import _port

SHORT, LONG = 1_000, 3_000
CANDIDATES = (
    "NullHandler (floor)",
    "QueueHandler -> SimpleQueue",
    "pyzmq PUBHandler",
    "naive orjson __dict__ PUSH",
    "ZmqHandler push protobuf",
    "ZmqHandler push json",
    "ZmqHandler pub protobuf",
)


def _sink(pull_port: int, sub_ports: list[int], ready: Any) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{pull_port}")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    for port in sub_ports:
        sub.connect(f"tcp://127.0.0.1:{port}")
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    poller.register(sub, zmq.POLLIN)
    ready.set()
    while True:
        for sock, _ in poller.poll():
            sock.recv()


def candidate(name: str, calls: int, pull_port: int, pub_port: int) -> None:
    """Set up ``name``, warm it up, then make ``calls`` logging calls (run under callgrind)."""
    import fabric
    from bench.producer import NaiveZmqHandler

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    handler: logging.Handler
    if name.startswith("NullHandler"):
        handler = logging.NullHandler()
    elif name.startswith("QueueHandler"):
        handler = logging.handlers.QueueHandler(queue.SimpleQueue())
    elif name == "pyzmq PUBHandler":
        from zmq.log.handlers import PUBHandler

        sock = ctx.socket(zmq.PUB)
        sock.bind(f"tcp://127.0.0.1:{pub_port}")
        handler = PUBHandler(sock)
    elif name.startswith("naive"):
        sock = ctx.socket(zmq.PUSH)
        sock.connect(f"tcp://127.0.0.1:{pull_port}")
        handler = NaiveZmqHandler(sock)
    else:
        _, mode, codec = name.split()
        pub = mode == "pub"
        endpoint = f"tcp://127.0.0.1:{pub_port if pub else pull_port}"
        zh = fabric.ZmqHandler(endpoint, mode=mode, codec=codec, service="bench", bind=pub)  # type: ignore[arg-type]
        if not zh.wait_ready(30):
            raise RuntimeError("no subscriber")
        handler = zh
    logger = logging.getLogger("bench.p1")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for i in range(500):
        logger.info("msg %s %d", "x", i)
    time.sleep(1.0)  # a PUB's subscriber has connected; the warm-up has left
    info = logger.info
    for i in range(calls):
        info("msg %s %d", "x", i)
    os._exit(0)  # skip interpreter teardown: it is not part of any call


def _count(name: str, calls: int, pull_port: int, pub_port: int, workdir: Path) -> int:
    out = workdir / f"callgrind.{abs(hash((name, calls)))}"
    code = f"from bench.instructions import candidate; candidate({name!r}, {calls}, {pull_port}, {pub_port})"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", code],
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=600,
    )
    match = re.search(r"^summary:\s*(\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no summary in {out}")
    return int(match.group(1))


def run() -> dict[str, Any]:
    """Instructions per call for each candidate, and ratios against the anchors."""
    if shutil.which("valgrind") is None:
        return {"skipped": "valgrind is not installed"}
    pull_port = _port()
    pub_port = _port()
    mp = multiprocessing.get_context("spawn")
    ready = mp.Event()
    sink = mp.Process(target=_sink, args=(pull_port, [pub_port], ready), daemon=True)
    sink.start()
    ready.wait(30)
    per_call: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in CANDIDATES:
                short = _count(name, SHORT, pull_port, pub_port, Path(tmp))
                long = _count(name, LONG, pull_port, pub_port, Path(tmp))
                per_call[name] = (long - short) / (LONG - SHORT)
                print(f"  {name:<30} {per_call[name]:>10,.0f} instructions per call", flush=True)
    finally:
        sink.kill()
        sink.join(5)
    q, p = per_call["QueueHandler -> SimpleQueue"], per_call["pyzmq PUBHandler"]
    return {
        "instructions_per_call": {k: round(v) for k, v in per_call.items()},
        "vs_queue": {k: round(v / q, 3) for k, v in per_call.items()},
        "vs_pubhandler": {k: round(v / p, 3) for k, v in per_call.items()},
    }


def table(result: dict[str, Any]) -> str:
    """The instruction-count table as text."""
    if "skipped" in result:
        return f"(skipped: {result['skipped']})"
    lines = [f"{'handler':<30} {'instr/call':>11} {'vs queue':>9} {'vs PUBHandler':>14}"]
    for name, n in result["instructions_per_call"].items():
        lines.append(f"{name:<30} {n:>11,} {result['vs_queue'][name]:>8.2f}x {result['vs_pubhandler'][name]:>13.2f}x")
    return "\n".join(lines)
