"""A receiving process for the producer benchmarks: every candidate's messages land here.

It binds a PULL socket (push producers), a SUB socket (pub-mode producers that
connect), a TCP listener (``SocketHandler``), and connects SUB sockets to the
PUB sockets that PUBHandler and Logbook bind. Each ZeroMQ socket is drained by a
``zmq.proxy_steerable`` into a PUB socket nobody subscribes to, so messages are
read and discarded in C: the receiver takes as little CPU as it can from the
producer on a 2-core machine, the same for every candidate. The proxies'
statistics count what arrived.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from typing import Any

import zmq


def serve(ports: dict[str, int], ready: Any, stop: Any, counts: Any) -> None:
    """Run until ``stop`` is set; ``counts`` (a shared dict) gets messages per socket."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    socks: dict[str, zmq.Socket[bytes]] = {}
    socks["pull"] = ctx.socket(zmq.PULL)
    socks["pull"].bind(f"tcp://127.0.0.1:{ports['pull']}")
    socks["sub"] = ctx.socket(zmq.SUB)
    socks["sub"].setsockopt(zmq.SUBSCRIBE, b"")
    socks["sub"].bind(f"tcp://127.0.0.1:{ports['sub']}")
    for name in ("pubhandler", "logbook"):
        s = socks[name] = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(f"tcp://127.0.0.1:{ports[name]}")
    controls: dict[str, zmq.Socket[bytes]] = {}
    threads = []
    for name, s in socks.items():
        s.setsockopt(zmq.RCVHWM, 0)
        nowhere = ctx.socket(zmq.PUB)  # no subscriber: everything is dropped, in C
        nowhere.bind(f"inproc://sink-nowhere-{name}")
        theirs = ctx.socket(zmq.PAIR)
        theirs.bind(f"inproc://sink-control-{name}")
        ours = controls[name] = ctx.socket(zmq.PAIR)
        ours.connect(f"inproc://sink-control-{name}")
        t = threading.Thread(target=_drain, args=(s, nowhere, theirs), daemon=True)
        t.start()
        threads.append(t)
    server = socket.create_server(("127.0.0.1", ports["tcp"]))
    server.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    tcp_bytes = 0
    ready.set()
    while not stop.is_set():
        for key, _ in selector.select(0.1):
            sock = key.fileobj
            if sock is server:
                conn, _ = server.accept()
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ)
                continue
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(sock)
                sock.close()
            tcp_bytes += len(data)
    seen: dict[str, int] = {"tcp_bytes": tcp_bytes}
    for name, control in controls.items():
        control.send(b"STATISTICS")
        if control.poll(2000):
            seen[name] = struct.unpack("=Q", control.recv_multipart()[0])[0]  # frontend messages in
        control.send(b"TERMINATE")
    counts.update(seen)
    server.close()


def _drain(front: zmq.Socket[bytes], back: zmq.Socket[bytes], control: zmq.Socket[bytes]) -> None:
    with contextlib.suppress(zmq.ZMQError):  # ETERM at exit
        zmq.proxy_steerable(front, back, None, control)
