"""Log one record to each of N handlers whose peers are absent, then sys.exit: ``exit_absent.py N LINGER``."""

import logging
import socket
import sys

import fabric


def absent() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"tcp://127.0.0.1:{port}"


count, linger = int(sys.argv[1]), float(sys.argv[2])
for i in range(count):
    log = logging.getLogger(f"absent.{i}")
    log.setLevel(logging.INFO)
    log.addHandler(fabric.ZmqHandler(absent(), service="absent", linger=linger))
    log.info("nobody hears this %d", i)
print("logged", flush=True)
sys.exit(0)
