"""Log COUNT records then wait for SIGTERM: ``sigterm_flush.py ENDPOINT COUNT``."""

import logging
import sys
import time

import fabric

endpoint, count = sys.argv[1], int(sys.argv[2])
log = logging.getLogger("doomed")
log.setLevel(logging.INFO)
log.addHandler(fabric.ZmqHandler(endpoint, service="doomed", linger=5.0, batch_delay=1.0))
for i in range(count):
    log.info("doomed %d", i)
print("logged", flush=True)
# Short sleeps, as an event loop's waits: a signal that lands just before the
# interpreter enters a long sleep is only handled when that sleep ends.
for _ in range(300):
    time.sleep(0.1)
