"""P6: a producer while its broker is down: memory growth and the longest logging call.

A fresh process attaches ``fabric.ZmqHandler`` (push, defaults: ``hwm`` 50,000,
``send_timeout`` 0) to an address where nothing listens, and logs at a steady
pace for the whole outage, timing every call. PUSH queues records for the
absent peer up to the HWM, then the handler drops and counts. The bounds:

* resident memory may grow by at most ``hwm`` x message size + 10 MB;
* no call may take longer than the handler's send bound (``send_timeout``)
  plus a scheduling allowance, since a loaded 2-core machine can pause any
  thread for a few milliseconds.

A control process runs the same loop with a ``NullHandler`` at the same time:
its longest call shows what the machine alone does to call times.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from typing import Any

from bench.forwarding import _port

ALLOWANCE = 0.05  # seconds of scheduling noise allowed on top of the send bound
RATE = 20_000  # records/s attempted during the outage


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _outage(seconds: float, results: Any, control: bool = False) -> None:
    import fabric
    from fabric.topic import make_topic

    endpoint = f"tcp://127.0.0.1:{_port()}"  # nothing listens here
    handler = fabric.ZmqHandler(endpoint, service="bench", linger=0.0)
    logger = logging.getLogger("app.orders")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    sample = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "msg %s %d", ("x", 1), None)
    # One message as sent: topic, NUL, payload.
    size = len(make_topic(sample.levelno, sample.name, "bench")) + 1 + len(fabric.encode(sample, handler.identity, 1))
    if control:  # the same loop with a NullHandler: what the machine alone does to call times
        handler.close()
        logger.addHandler(logging.NullHandler())
    else:
        logger.addHandler(handler)
    logger.info("msg %s %d", "x", 0)  # opens the socket
    before = _rss()
    peak = before
    longest = 0.0
    calls = 0
    over = 0
    slow = 0
    info = logger.info
    clock = time.perf_counter
    start = clock()
    end = start + seconds
    batch = RATE // 100
    while clock() < end:
        tick = clock()
        for i in range(batch):
            t0 = clock()
            info("msg %s %d", "x", i)
            took = clock() - t0
            if took > longest:
                longest = took
            if took > handler.send_timeout + ALLOWANCE:
                over += 1
            if took > 0.001:
                slow += 1
        calls += batch
        peak = max(peak, _rss())
        pause = 0.01 - (clock() - tick)
        if pause > 0:
            time.sleep(pause)
    stats = dict(handler.stats) if not control else {"sent": 0, "dropped": 0}
    results.put(
        {
            "seconds": seconds,
            "calls": calls,
            "message_bytes": size,
            "hwm": handler.hwm,
            "send_timeout": handler.send_timeout,
            "rss_growth_bytes": peak - before,
            "memory_bound_bytes": handler.hwm * size + 10 * 1024 * 1024,
            "longest_call_s": longest,
            "call_bound_s": handler.send_timeout + ALLOWANCE,
            "calls_over_bound": over,
            "calls_over_1ms": slow,
            "stats": stats,
        }
    )
    handler.close()


def run(seconds: float = 60.0) -> dict[str, Any]:
    """Run the outage and the NullHandler control side by side (same window, same machine noise)."""
    mp = multiprocessing.get_context("spawn")
    queues = {kind: mp.Queue() for kind in ("ours", "control")}
    procs = {
        kind: mp.Process(target=_outage, args=(seconds, q, kind == "control"), daemon=True)
        for kind, q in queues.items()
    }
    for proc in procs.values():
        proc.start()
    got = {kind: q.get(timeout=seconds + 60) for kind, q in queues.items()}
    for proc in procs.values():
        proc.join(10)
    result: dict[str, Any] = got["ours"]
    control = got["control"]
    result["control_nullhandler"] = {
        k: control[k] for k in ("calls", "rss_growth_bytes", "longest_call_s", "calls_over_bound", "calls_over_1ms")
    }
    result["memory_ok"] = result["rss_growth_bytes"] <= result["memory_bound_bytes"]
    result["calls_ok"] = result["calls_over_bound"] == 0
    return result


def table(r: dict[str, Any]) -> str:
    """The P6 table as text."""
    mb = 1024 * 1024
    c = r["control_nullhandler"]
    return "\n".join(
        [
            f"broker down for {r['seconds']:.0f} s, {r['calls']:,} calls, {r['message_bytes']} B per message, "
            f"hwm {r['hwm']:,}: sent {r['stats']['sent']:,} (queued), dropped {r['stats']['dropped']:,}",
            f"RSS growth      {r['rss_growth_bytes'] / mb:8.1f} MB   bound {r['memory_bound_bytes'] / mb:.1f} MB"
            f"   {'ok' if r['memory_ok'] else 'EXCEEDED'}",
            f"longest call    {r['longest_call_s'] * 1000:8.2f} ms   bound {r['call_bound_s'] * 1000:.0f} ms"
            f" (send_timeout {r['send_timeout'] * 1000:.0f} ms + {ALLOWANCE * 1000:.0f} ms scheduling)"
            f"   {'ok' if r['calls_ok'] else str(r['calls_over_bound']) + ' calls over'}"
            f"; {r['calls_over_1ms']} calls over 1 ms",
            f"control (same loop, NullHandler, same time): longest call {c['longest_call_s'] * 1000:.2f} ms,"
            f" {c['calls_over_bound']} calls over the bound, {c['calls_over_1ms']} over 1 ms",
        ]
    )
