"""Forking producers for the reliability suite.

Usage::

    python tests/reliability/scripts/forking.py ENDPOINT COUNT --style mp|preload [--workers N]

``mp``: the parent creates a push ``ZmqHandler`` and logs once (so its socket
exists), then starts ``--workers`` multiprocessing 'fork' children; each logs
``COUNT`` records, calls ``handler.close()`` and ends with ``os._exit(0)``.

``preload`` (gunicorn-style): the parent creates the handler and logs
``--parent`` records before forking ``--workers`` workers with ``os.fork()``;
each worker logs ``COUNT`` records and ends with ``sys.exit(0)`` (logging's own
shutdown closes the handler); the parent then logs ``--parent`` more records.

Every child checks that the socket it sent on is not the one it inherited and
that the inherited one was set aside, and prints one JSON line about itself.
The parent prints one JSON report.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from typing import Any

import fabric
import fabric.handler


def say(fields: dict[str, Any]) -> None:
    """One JSON line in a single write(), so lines of concurrent children never interleave."""
    sys.stdout.flush()
    os.write(1, (json.dumps(fields) + "\n").encode())


def child_facts(handler: fabric.ZmqHandler, inherited: Any, role: str) -> dict[str, Any]:
    """What a child reports about the socket it used (read before close())."""
    own = handler._sock
    return {
        "event": "child",
        "role": role,
        "pid": os.getpid(),
        "producer_id": f"{handler.identity.producer_id:016x}",
        "sent": handler.stats["sent"],
        "queued": handler.stats["queued"],
        "own_socket_is_inherited": own is inherited,
        "inherited_set_aside": any(sock is inherited for _, sock in fabric.handler._INHERITED),  # type: ignore[misc]
    }


def mp_child(logger_name: str, count: int, inherited_id: int) -> None:
    log = logging.getLogger(logger_name)
    (handler,) = log.handlers
    assert isinstance(handler, fabric.ZmqHandler)
    inherited = next((s for _, s in fabric.handler._INHERITED if id(s) == inherited_id), None)  # type: ignore[misc]
    for i in range(count):
        log.info("mp child record %d", i, extra={"n": i})
    facts = child_facts(handler, inherited, "mp")
    facts["inherited_found"] = inherited is not None
    handler.close()
    say(facts)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("endpoint")
    parser.add_argument("count", type=int)
    parser.add_argument("--style", required=True, choices=["mp", "preload"])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--parent", type=int, default=100, help="preload: records the parent logs before and after")
    args = parser.parse_args()

    handler = fabric.ZmqHandler(args.endpoint, service=f"fork-{args.style}", linger=5.0)
    log = logging.getLogger("rel.fork")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    before = args.parent if args.style == "preload" else 1
    for i in range(before):
        log.info("parent before fork %d", i)
    inherited = handler._sock
    assert inherited is not None, "the parent's socket should exist before the fork"
    started = time.monotonic()

    if args.style == "mp":
        ctx = multiprocessing.get_context("fork")
        procs = []
        for _ in range(args.workers):
            proc = ctx.Process(target=mp_child, args=(log.name, args.count, id(inherited)))
            proc.start()
            procs.append(proc)
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0, f"child {proc.pid} exited {proc.exitcode}"
    else:
        pids = []
        for _ in range(args.workers):
            pid = os.fork()
            if pid == 0:  # a worker: log, report, then end as a gunicorn worker does
                for i in range(args.count):
                    log.info("worker record %d", i, extra={"n": i})
                say(child_facts(handler, inherited, "worker"))
                sys.exit(0)
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, f"worker {pid} failed: {status}"
    for i in range(before):
        log.info("parent after fork %d", i)
    report = {
        "event": "report",
        "pid": os.getpid(),
        "producer_id": f"{handler.identity.producer_id:016x}",
        "stats": dict(handler.stats),
        "parent_socket_unchanged": handler._sock is inherited,
        "seconds": time.monotonic() - started,
    }
    say(report)
    sys.exit(0)


if __name__ == "__main__":
    main()
