"""A receiving process for the producer benchmarks: every candidate's messages land here.

It binds a PULL socket (push producers), a SUB socket (pub-mode producers that
connect), a TCP listener (``SocketHandler``), and connects SUB sockets to the
PUB sockets that PUBHandler and Logbook bind. It reads everything and counts,
so no candidate measures a peer that is not reading.
"""

from __future__ import annotations

import socket
from typing import Any

import zmq


def serve(ports: dict[str, int], ready: Any, stop: Any, counts: Any) -> None:
    """Run until ``stop`` is set; ``counts`` (a shared dict) gets messages per socket."""
    ctx = zmq.Context()
    socks: dict[str, zmq.Socket[bytes]] = {}
    pull = socks["pull"] = ctx.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{ports['pull']}")
    sub = socks["sub"] = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(f"tcp://127.0.0.1:{ports['sub']}")
    for name in ("pubhandler", "logbook"):
        s = socks[name] = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(f"tcp://127.0.0.1:{ports[name]}")
    for s in socks.values():
        s.setsockopt(zmq.RCVHWM, 0)
    server = socket.create_server(("127.0.0.1", ports["tcp"]))
    server.setblocking(False)
    poller = zmq.Poller()
    for s in socks.values():
        poller.register(s, zmq.POLLIN)
    poller.register(server, zmq.POLLIN)
    conns: list[socket.socket] = []
    seen = dict.fromkeys([*socks, "tcp"], 0)
    ready.set()
    while not stop.is_set():
        for which, _ in poller.poll(100):
            if which is server.fileno() or which == server.fileno() or which is server:
                conn, _ = server.accept()
                conn.setblocking(False)
                conns.append(conn)
                poller.register(conn, zmq.POLLIN)
                continue
            for name, s in socks.items():
                if which is s:
                    while True:
                        try:
                            s.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        seen[name] += 1
            for conn in conns:
                if which is conn or which == conn.fileno():
                    try:
                        data = conn.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    seen["tcp"] += len(data)
        counts.update(seen)
    for s in socks.values():
        s.close(linger=0)
    server.close()
    ctx.term()
