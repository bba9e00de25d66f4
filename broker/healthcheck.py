"""``python -m broker.healthcheck``: exit 0 if this container's broker answers /healthz.

Reads the HTTP address from LOGFABRIC_BROKER_HTTP like the broker does, so the
image's HEALTHCHECK follows a changed port.
"""

from __future__ import annotations

import os
import sys
import urllib.request

from broker._options import env_var
from broker.config import SERVICE_HTTP, parse_http


def main() -> int:
    """Probe /healthz on the local broker; 0 when healthy, 1 otherwise."""
    host, port = parse_http(os.environ.get(env_var("http"), SERVICE_HTTP))
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
