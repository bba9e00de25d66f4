"""P3: broker forwarding rate next to a raw ``zmq.proxy`` doing the same forwarding.

For each path (pub: PUB producer -> XSUB/XPUB; push: PUSH producer -> PULL/PUB)
one sender process blasts pre-encoded one-frame messages through either a raw
``zmq.proxy`` process or a broker process (HTTP on, /metrics scraped every
second), and the receiver counts them. Trials alternate raw and broker, and the
median rate of each is compared. Loopback only.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import statistics
import threading
import time
import urllib.request
from typing import Any

import zmq

PAYLOAD = b"\x01" + os.urandom(299)  # about the size of a typical protobuf record
TOPIC = b"2app.bench\x00bench"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raw_proxy(path: str, ingest: str, egress: str, ready: Any) -> None:
    ctx = zmq.Context()
    front = ctx.socket(zmq.XSUB if path == "pub" else zmq.PULL)
    back = ctx.socket(zmq.XPUB if path == "pub" else zmq.PUB)
    for s in (front, back):
        s.setsockopt(zmq.SNDHWM, 100_000)
        s.setsockopt(zmq.RCVHWM, 100_000)
    front.bind(ingest)
    back.bind(egress)
    ready.set()
    zmq.proxy(front, back)


def _raw_two_hops(path: str, ingest: str, egress: str, ready: Any) -> None:
    """The broker's shape without the broker: ingest =proxy=> inproc bridge, central =proxy=> egress."""
    ctx = zmq.Context()
    front = ctx.socket(zmq.XSUB if path == "pub" else zmq.PULL)
    bridge = ctx.socket(zmq.XPUB if path == "pub" else zmq.PUB)
    central = ctx.socket(zmq.XSUB)
    back = ctx.socket(zmq.XPUB)
    for s in (front, bridge, central, back):
        s.setsockopt(zmq.SNDHWM, 100_000)
        s.setsockopt(zmq.RCVHWM, 100_000)
    front.bind(ingest)
    bridge.bind("inproc://bridge")
    central.connect("inproc://bridge")
    back.bind(egress)
    threading.Thread(target=zmq.proxy, args=(front, bridge), daemon=True).start()
    ready.set()
    zmq.proxy(central, back)


def _broker(path: str, ingest: str, egress: str, http: str, ready: Any) -> None:
    from broker import Broker

    other = f"tcp://127.0.0.1:{_port()}"
    kwargs: dict[str, Any] = (
        {"pub_ingest": ingest, "push_ingest": other} if path == "pub" else {"push_ingest": ingest, "pub_ingest": other}
    )
    with Broker(egress=egress, http=http, **kwargs):
        ready.set()
        threading.Event().wait()


def _send(path: str, ingest: str, count: int, go: Any) -> None:
    ctx = zmq.Context()
    if path == "pub":
        sock = ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_NODROP, 1)  # block at the HWM instead of dropping
    else:
        sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.connect(ingest)
    if path == "pub":
        sock.recv()  # the proxy's subscription: from here nothing is filtered out
    go.wait()
    message = TOPIC + b"\x00" + PAYLOAD  # one frame: topic NUL payload, as ZmqHandler sends
    for _ in range(count):
        sock.send(message)
    sock.close(linger=-1)
    ctx.term()


def _scrape(http: str, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://{http}/metrics", timeout=2).read()


def trial(kind: str, path: str, count: int) -> dict[str, float]:
    """One trial of ``kind`` (raw, raw2 or broker): returns received, lost and records/s."""
    mp = multiprocessing.get_context("spawn")
    ingest, egress = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}"
    http = f"127.0.0.1:{_port()}"
    ready, go = mp.Event(), mp.Event()
    if kind == "broker":
        server = mp.Process(target=_broker, args=(path, ingest, egress, http, ready), daemon=True)
    else:
        target = _raw_proxy if kind == "raw" else _raw_two_hops
        server = mp.Process(target=target, args=(path, ingest, egress, ready), daemon=True)
    server.start()
    if not ready.wait(20):
        server.kill()
        raise RuntimeError(f"{kind} proxy did not start")
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(egress)
    time.sleep(0.5)  # the subscription reaches the proxy (and, for pub, the sender)
    sender = mp.Process(target=_send, args=(path, ingest, count, go), daemon=True)
    sender.start()
    time.sleep(0.5)
    stop = threading.Event()
    if kind == "broker":
        threading.Thread(target=_scrape, args=(http, stop), daemon=True).start()
    go.set()
    received = 0
    first = last = 0.0
    while received < count and sub.poll(3000):
        sub.recv_multipart()
        last = time.perf_counter()
        if received == 0:
            first = last
        received += 1
    stop.set()
    sender.join(10)
    for p in (sender, server):
        p.kill()
        p.join(5)
    sub.close(linger=0)
    ctx.term()
    rate = (received - 1) / (last - first) if received > 1 and last > first else 0.0
    return {"received": received, "lost": count - received, "rate": rate}


def run(count: int = 200_000, rounds: int = 5) -> dict[str, Any]:
    """Alternate raw, raw two-hop and broker trials per path; return medians and ratios.

    "raw2" is the broker's forwarding shape (two proxies joined by an inproc
    bridge) built from bare sockets: broker / raw2 is what the broker adds to
    its topology, raw2 / raw what the second hop costs.
    """
    results: dict[str, Any] = {}
    kinds = ("raw", "raw2", "broker")
    for path in ("pub", "push"):
        rates: dict[str, list[float]] = {k: [] for k in kinds}
        lost: dict[str, int] = dict.fromkeys(kinds, 0)
        for r in range(rounds):
            for kind in kinds[r % 3 :] + kinds[: r % 3]:
                t = trial(kind, path, count)
                rates[kind].append(t["rate"])
                lost[kind] += int(t["lost"])
        raw, raw2, ours = (statistics.median(rates[k]) for k in kinds)
        results[path] = {
            "raw_median_rps": round(raw),
            "raw_two_hops_median_rps": round(raw2),
            "broker_median_rps": round(ours),
            "ratio": round(ours / raw, 3) if raw else None,
            "ratio_vs_two_hops": round(ours / raw2, 3) if raw2 else None,
            "raw_rps": [round(x) for x in rates["raw"]],
            "raw_two_hops_rps": [round(x) for x in rates["raw2"]],
            "broker_rps": [round(x) for x in rates["broker"]],
            "lost": lost,
            "messages_per_trial": count,
        }
    return results
