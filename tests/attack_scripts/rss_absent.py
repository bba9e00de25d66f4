"""RSS growth while the peer is absent: ``rss_absent.py RECORDS SIZE`` prints JSON {grown, stats}."""

import gc
import json
import logging
import socket
import sys


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


import fabric  # noqa: E402

s = socket.socket()
s.bind(("127.0.0.1", 0))
endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
s.close()
records, size = int(sys.argv[1]), int(sys.argv[2])
handler = fabric.ZmqHandler(endpoint, service="rss", linger=0)
log = logging.getLogger("rss")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(handler)
log.info("warm")
gc.collect()
before = rss()
pad = "x" * size
for i in range(records):
    log.info("%d %s", i, pad)
gc.collect()
grown = rss() - before
stats = handler.stats
handler.close()
print(json.dumps({"grown": grown, "stats": stats}), flush=True)
