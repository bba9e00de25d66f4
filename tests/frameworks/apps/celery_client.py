"""``python celery_client.py COUNT``: queue COUNT ``charge`` tasks and one ``fail``, wait for every result."""

import sys

from celery_app import charge, fail

if __name__ == "__main__":
    pending = [charge.delay(n) for n in range(int(sys.argv[1]))] + [fail.delay()]
    results = [r.get(timeout=60, interval=0.05) for r in pending]
    print(f"results {len(results)} total {sum(r for r in results if isinstance(r, int))}", flush=True)
