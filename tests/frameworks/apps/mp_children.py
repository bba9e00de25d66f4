"""Pool workers under each start method, and where their logging must be set up.

``python mp_children.py METHOD WHERE COUNT`` runs COUNT items on a pool of two
processes started with METHOD (fork, spawn or forkserver). With WHERE
``initializer`` every pool process calls ``setup_logging()`` as it starts, which
works with every start method. With WHERE ``main`` only the parent does, under
``if __name__ == "__main__"``: spawn and forkserver children start from a fresh
interpreter that never runs that block, so they have no handler at all.
"""

import logging
import multiprocessing
import os
import sys

import fabric

log = logging.getLogger("shop.batch")


def setup_logging() -> None:
    """Ship this process's records (endpoint and service from LOGFABRIC_ENDPOINT and LOGFABRIC_SERVICE)."""
    fabric.install(level="INFO")


def work(n: int) -> int:
    """Log one record for item ``n``; return this process's pid."""
    log.info("item %d done", n, extra={"item": n})
    return os.getpid()


if __name__ == "__main__":
    method, where, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    setup_logging()
    log.info("batch started", extra={"item": -1})
    context = multiprocessing.get_context(method)
    pool = context.Pool(2, initializer=setup_logging if where == "initializer" else None)
    pids = sorted(set(pool.map(work, range(count), chunksize=1)))
    pool.close()  # close and join, not terminate: the workers then exit normally and flush
    pool.join()
    print("workers", *pids, flush=True)
