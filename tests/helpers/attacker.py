"""A hostile subscriber for the broker tests: a raw XSUB asking for many long prefixes.

Usage::

    python tests/helpers/attacker.py ENDPOINT COUNT SIZE [SERVER_PUBLIC_KEY_FILE CLIENT_SECRET_KEY_FILE]

It connects to ``ENDPOINT`` (a CURVE client with the two key files), queues
``COUNT`` distinct subscriptions of ``SIZE`` bytes, prints ``SENT`` and stays
until its stdin closes. libzmq reconnects it and subscribes again whenever it
is dropped.
"""

from __future__ import annotations

import sys

import zmq

from fabric.curve import CurveKeys


def main() -> None:
    endpoint, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    xsub = ctx.socket(zmq.XSUB)
    xsub.setsockopt(zmq.LINGER, 0)
    xsub.setsockopt(zmq.SNDHWM, 0)
    if len(sys.argv) > 5:
        CurveKeys.load(sys.argv[4], sys.argv[5]).apply(xsub)
    xsub.connect(endpoint)
    for i in range(count):
        xsub.send(b"\x01" + b"%08d" % i + b"a" * (size - 8))
    print("SENT", flush=True)
    sys.stdin.read()  # libzmq's I/O thread keeps reconnecting meanwhile; the test closes stdin or kills it


if __name__ == "__main__":
    main()
