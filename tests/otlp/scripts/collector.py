"""A collector process: ``fabric.listen_from_config(CONFIG_JSON)``, then run until stdin closes.

Prints ``ready ENDPOINT`` (the listener's bound endpoint) once started. When
stdin closes it stops the listener and exits normally, so ``logging.shutdown()``
flushes and closes the configured handlers (the OtlpHandler included).
"""

from __future__ import annotations

import json
import sys

import fabric

listener = fabric.listen_from_config(json.loads(sys.argv[1]))
print("ready", listener.bound[0], flush=True)
sys.stdin.read()
listener.stop()
print("stopped", json.dumps(listener.stats), flush=True)
