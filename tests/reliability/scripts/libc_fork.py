"""Producers forked with libc ``fork()``, which skips Python's at-fork hooks.

Usage::

    python tests/reliability/scripts/libc_fork.py ENDPOINT COUNT [--workers N]

The parent creates a push ``ZmqHandler``, logs one record (so its socket and
producer id exist), then forks ``--workers`` children by calling libc's
``fork()`` through ctypes, as C extensions and embedding hosts do: neither
``os.register_at_fork`` hooks nor ``random``'s reseeding run in the child.
Each child logs ``COUNT`` records ``"libc child %d"`` (``extra={"n": i}``),
prints one JSON line ``{"event": "child", "pid", "producer_id", "sent"}``,
closes the handler and ends with ``os._exit(0)``. The parent then logs one
more record and prints ``{"event": "report", ...}``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import sys
import time
from typing import Any

import fabric


def say(fields: dict[str, Any]) -> None:
    """One JSON line in a single write(), so lines of concurrent children never interleave."""
    sys.stdout.flush()
    os.write(1, (json.dumps(fields) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("endpoint")
    parser.add_argument("count", type=int)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    handler = fabric.ZmqHandler(args.endpoint, service="libc-fork", linger=5.0)
    log = logging.getLogger("rel.libcfork")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.info("parent before fork")
    # A fork that skips Python's own fork handling must not happen while another
    # Python thread holds the interpreter lock: the child would wait for it forever.
    # The handler's sender thread runs only briefly per burst; after flush() it sleeps.
    assert handler.flush(5.0)
    libc_fork = ctypes.CDLL(None).fork
    pids = []
    for _ in range(args.workers):
        pid = libc_fork()
        if pid == 0:  # a child: no at-fork hook has run
            code = 1
            try:
                for i in range(args.count):
                    log.info("libc child %d", i, extra={"n": i})
                facts = {
                    "event": "child",
                    "pid": os.getpid(),
                    "producer_id": f"{handler.identity.producer_id:016x}",
                    "sent": handler.stats["sent"],
                }
                handler.close()
                say(facts)
                code = 0
            finally:
                os._exit(code)
        if pid < 0:
            raise OSError(ctypes.get_errno(), "fork() failed")
        pids.append(pid)
    deadline = time.monotonic() + 60
    for pid in pids:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0, f"child {pid} failed: {status}"
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                raise SystemExit(f"child {pid} did not exit within 60 s")
            time.sleep(0.01)
    log.info("parent after fork")
    say(
        {
            "event": "report",
            "pid": os.getpid(),
            "producer_id": f"{handler.identity.producer_id:016x}",
            "stats": dict(handler.stats),
        }
    )
    handler.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
