"""P8: the sender thread against the handler before it, side by side in one run.

``python -m bench.sender [--baseline REV] [--records N] [--rounds R]``

The baseline is the fabric package as it was before the sender thread (by
default the parent of the commit that added ``fabric/_sender.py``), checked
out in a temporary ``git worktree``; each candidate runs in its own producer
process, rounds interleaved, so both face the same machine. Two cases:

* **burst**: one process logs N records back to back (the best-case call:
  one call site, one logger) to a PULL socket drained in C, then closes the
  handler. Reported per record: the caller's wall time per call, the CPU time
  of the whole process (every thread, libzmq's included) from the first call
  to the end of ``close()``, and voluntary context switches.
* **idle**: one process logs a single INFO record every 10 ms (300 in all);
  the receiver notes when each arrives. Reported: the delivery delay (arrival
  minus the record's ``created``), median and 99th percentile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq

import fabric
from fabric.topic import split_message

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, logging, resource, sys, time
import fabric

endpoint, case, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
handler = fabric.ZmqHandler(endpoint, linger=10.0)
log = logging.getLogger("bench.sender")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
log.info("warm-up")
handler.flush(5.0)
if case == "burst":
    usage0, cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
    for i in range(n):
        log.info("msg %s %d", "x", i)
    wall = time.perf_counter() - wall0
    handler.close()
    cpu = time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "call_us": wall / n * 1e6,
        "cpu_us": cpu / n * 1e6,
        "switches": (usage.ru_nvcsw - usage0.ru_nvcsw) / n,
        "stats": handler.stats,
    }))
else:
    for i in range(n):
        log.info("single %d", i)
        time.sleep(0.01)
    handler.close()
    print(json.dumps({"stats": handler.stats}))
"""


def _baseline_rev() -> str:
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "fabric/_sender.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        raise SystemExit("no commit adds fabric/_sender.py yet: commit it, or pass --baseline REV")
    return added[-1] + "^"


def _drain_in_c(ctx: zmq.Context[zmq.Socket[bytes]]) -> str:
    """A PULL socket whose messages are read and dropped in C; return its endpoint."""
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    nowhere = ctx.socket(zmq.PUB)
    nowhere.bind(f"inproc://bench-sender-nowhere-{port}")
    threading.Thread(target=_proxy, args=(pull, nowhere), daemon=True).start()
    return f"tcp://127.0.0.1:{port}"


def _proxy(front: zmq.Socket[bytes], back: zmq.Socket[bytes]) -> None:
    with contextlib.suppress(zmq.ContextTerminated, zmq.ZMQError):
        zmq.proxy(front, back)


def _delays(ctx: zmq.Context[zmq.Socket[bytes]], source: Path, script: Path, n: int) -> list[float]:
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    proc = _start(source, script, f"tcp://127.0.0.1:{port}", "idle", n)
    delays: list[float] = []
    deadline = time.monotonic() + 60
    while len(delays) < n + 1 and time.monotonic() < deadline:
        if pull.poll(1000):
            message = pull.recv()
            arrived = time.time()
            record = fabric.decode(split_message(message)[1]).record
            if record.getMessage() != "warm-up":
                delays.append((arrived - record.created) * 1000)
    _finish(proc)
    pull.close()
    return delays


def _start(source: Path, script: Path, endpoint: str, case: str, n: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(source))
    return subprocess.Popen(
        [sys.executable, str(script), endpoint, case, str(n)], env=env, stdout=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"a producer failed with {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run(baseline: str | None = None, records: int = 100_000, rounds: int = 5) -> dict[str, Any]:
    """Measure both candidates; return medians per case."""
    rev = baseline or _baseline_rev()
    results: dict[str, Any] = {"baseline": rev, "records": records, "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), rev], cwd=ROOT, check=True, capture_output=True)
        script = Path(tmp) / "producer.py"
        script.write_text(CHILD)
        sources = {"before (one send per call)": old, "sender thread": ROOT}
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            endpoint = _drain_in_c(ctx)
            bursts: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
            for r in range(rounds):
                order = list(sources) if r % 2 == 0 else list(reversed(sources))
                for name in order:
                    bursts[name].append(_finish(_start(sources[name], script, endpoint, "burst", records)))
            delays = {name: _delays(ctx, source, script, 300) for name, source in sources.items()}
        finally:
            ctx.destroy(linger=0)
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    for name in sources:
        runs = bursts[name]
        results[name] = {
            "call_us": statistics.median(r["call_us"] for r in runs),
            "cpu_us": statistics.median(r["cpu_us"] for r in runs),
            "switches": statistics.median(r["switches"] for r in runs),
            "dropped": max(r["stats"]["dropped"] for r in runs),
            "delay_median_ms": statistics.median(delays[name]),
            "delay_p99_ms": statistics.quantiles(delays[name], n=100)[98],
            "delay_samples": len(delays[name]),
        }
    return results


def table(result: dict[str, Any]) -> str:
    """The results as a Markdown table, with the ratios of the sender thread to the baseline."""
    names = [k for k in result if isinstance(result[k], dict)]
    rows = [
        f"P8, {result['records']:,} records per burst, median of {result['rounds']} rounds; "
        f"baseline {result['baseline']}",
        "",
        "| candidate | µs per call | CPU µs per record | switches per record | delay median ms | delay p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        r = result[name]
        rows.append(
            f"| {name} | {r['call_us']:.2f} | {r['cpu_us']:.2f} | {r['switches']:.3f} | "
            f"{r['delay_median_ms']:.2f} | {r['delay_p99_ms']:.2f} |"
        )
    if len(names) == 2:
        a, b = (result[n] for n in names)
        rows.append("")
        rows.append(
            f"Sender thread / before: call {b['call_us'] / a['call_us']:.2f}x, CPU {b['cpu_us'] / a['cpu_us']:.2f}x"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="git revision of the handler before the sender thread")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = run(args.baseline, args.records, args.rounds)
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
