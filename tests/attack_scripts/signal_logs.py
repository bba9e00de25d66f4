"""A signal handler that logs while the main thread logs: ``signal_logs.py ENDPOINT COUNT``; prints JSON stats."""

import json
import logging
import signal
import sys

import fabric

endpoint, count = sys.argv[1], int(sys.argv[2])
handler = fabric.ZmqHandler(endpoint, service="sig", linger=5.0)
log = logging.getLogger("main")
log.propagate = False
log.setLevel(logging.DEBUG)
log.addHandler(handler)
alarm = logging.getLogger("alarm")
alarm.propagate = False
alarm.setLevel(logging.DEBUG)
alarm.addHandler(handler)
fired = [0]


def on_alarm(signum, frame):
    fired[0] += 1
    alarm.warning("alarm %d", fired[0])
    log.info("from the signal %d", fired[0])


signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
for i in range(count):
    log.info("main %d", i)
signal.setitimer(signal.ITIMER_REAL, 0, 0)
delivered = handler.flush(5.0)
stats = handler.stats
handler.close()
print(json.dumps({"fired": fired[0], "delivered": delivered, "stats": stats}), flush=True)
