"""P7: the cost of CurveZMQ, records/s with and without it on the same path.

Two paths, each run plaintext and with CURVE in alternating trials (medians
compared):

- ``direct``: one PUSH sender process to a PULL receiver (one hop; with CURVE
  the receiver is a CURVE server without a ZAP handler, so this is the price of
  the encryption alone);
- ``broker``: a PUSH sender process to a broker process's push ingest, out of
  its egress to a SUB receiver (two hops; with CURVE both are encrypted and
  every client key is checked against the broker's allow-lists).

Messages are what a producer's ``ZmqHandler`` sends: one frame, ``topic NUL
payload`` (``fabric.topic.join_message``), the payload a typical record encoded
with the protobuf codec (``bench.size.typical_record``, about 210 bytes in all),
encoded beforehand with increasing sequence numbers. The receiver counts in C:
its socket is the frontend of a ``zmq.proxy_steerable`` whose backend discards,
and the proxy's STATISTICS (frames in, one per message) are polled every 5 ms.
So the rates are those of libzmq (and the broker), not of a Python receive loop.
Loopback only.
"""

from __future__ import annotations

import multiprocessing
import socket
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from bench.size import IDENTITY, typical_record
from fabric.codec import Encoder
from fabric.curve import CurveKeys, generate, load_key_pair
from fabric.topic import join_message, make_topic, split_message

#: Distinct messages the sender cycles through (their sequence numbers differ).
VARIANTS = 1024


def messages(n: int = VARIANTS) -> list[bytes]:
    """``n`` one-frame messages as a producer sends them: a typical record, protobuf, seq 1 to ``n``."""
    enc = Encoder(IDENTITY, "protobuf")
    out = []
    for seq in range(1, n + 1):
        record = typical_record(seq)
        out.append(join_message(make_topic(record.levelno, record.name, IDENTITY.service), enc.encode(record, seq)))
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keys(root: Path) -> dict[str, str]:
    """Generate the broker pair, a producer and a subscriber, with their allow-lists."""
    files: dict[str, str] = {}
    public, secret = generate("broker", root / "broker")
    files["server_public"], files["server_secret"] = str(public), str(secret)
    for name in ("producers", "subscribers"):
        allow = root / name
        allow.mkdir()
        client_public, client_secret = generate(name[:-1], root / "secrets")
        (allow / client_public.name).write_bytes(client_public.read_bytes())
        files[name] = str(allow)
        files[name[:-1]] = str(client_secret)
    return files


def _client(keys: dict[str, str] | None, who: str) -> CurveKeys | None:
    return CurveKeys.load(keys["server_public"], keys[who]) if keys else None


def _broker(ingest: str, egress: str, keys: dict[str, str] | None, ready: Any) -> None:
    from broker import Broker

    options: dict[str, Any] = {}
    if keys:
        options = {
            "curve_secret_key": keys["server_secret"],
            "curve_producers": keys["producers"],
            "curve_subscribers": keys["subscribers"],
        }
    with Broker(push_ingest=ingest, pub_ingest=f"tcp://127.0.0.1:{_port()}", egress=egress, **options):
        ready.set()
        threading.Event().wait()


def _send(ingest: str, count: int, keys: dict[str, str] | None, go: Any) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    client = _client(keys, "producer")
    if client is not None:
        client.apply(sock)
    sock.connect(ingest)
    pool = messages()
    send = sock.send
    go.wait()
    for i in range(count):
        send(pool[i % VARIANTS])
    sock.close(linger=-1)
    ctx.term()


class _Counter:
    """Receive on ``sock`` at C speed (a proxy into a PUB nobody reads) and count frames (= messages)."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], sock: zmq.Socket[bytes]) -> None:
        self.sink = ctx.socket(zmq.PUB)
        self.sink.bind(f"inproc://bench-sink-{id(self)}")
        self.theirs = ctx.socket(zmq.PAIR)
        self.theirs.bind(f"inproc://bench-control-{id(self)}")
        self.ours = ctx.socket(zmq.PAIR)
        self.ours.connect(f"inproc://bench-control-{id(self)}")
        self.thread = threading.Thread(
            target=zmq.proxy_steerable, args=(sock, self.sink, None, self.theirs), daemon=True
        )
        self.thread.start()

    def frames(self) -> int:
        self.ours.send(b"STATISTICS")
        values = [struct.unpack("=Q", f)[0] for f in self.ours.recv_multipart()]
        return int(values[0])  # frontend frames in

    def close(self) -> None:
        self.ours.send(b"TERMINATE")
        self.thread.join(5)
        for s in (self.ours, self.theirs, self.sink):
            s.close(linger=0)


def trial(path: str, curve: bool, count: int, keys: dict[str, str]) -> dict[str, float]:
    """One trial: returns received, lost and records/s."""
    mp = multiprocessing.get_context("spawn")
    used = keys if curve else None
    ingest, egress = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}"
    ready, go = mp.Event(), mp.Event()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    server = None
    if path == "broker":
        server = mp.Process(target=_broker, args=(ingest, egress, used, ready), daemon=True)
        server.start()
        if not ready.wait(20):
            server.kill()
            raise RuntimeError("broker did not start")
        recv = ctx.socket(zmq.SUB)
        recv.setsockopt(zmq.SUBSCRIBE, b"")
        client = _client(used, "subscriber")
        if client is not None:
            client.apply(recv)
        recv.setsockopt(zmq.RCVHWM, 0)
        watch = recv.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        recv.connect(egress)
        shaken = watch.poll(10_000)  # the (CURVE) handshake is done: the subscription can travel
        recv.disable_monitor()
        watch.close(linger=0)
        if not shaken:
            raise RuntimeError("the receiver never completed its handshake with the broker")
    else:
        recv = ctx.socket(zmq.PULL)
        recv.setsockopt(zmq.RCVHWM, 0)
        if used:
            public, secret = load_key_pair(used["server_secret"])
            recv.setsockopt(zmq.CURVE_SERVER, 1)
            recv.setsockopt(zmq.CURVE_PUBLICKEY, public)
            recv.setsockopt(zmq.CURVE_SECRETKEY, secret)
        recv.bind(ingest)
    time.sleep(0.5)  # the subscription reaches the broker (it follows the handshake)
    sender = mp.Process(target=_send, args=(ingest, count, used, go), daemon=True)
    sender.start()
    time.sleep(0.5)
    counter = _Counter(ctx, recv)
    go.set()
    frames = seen = base = 0
    first = last = changed = time.perf_counter()
    while frames < count and time.perf_counter() - changed < 3.0:
        time.sleep(0.005)
        frames = counter.frames()
        now = time.perf_counter()
        if frames != seen:
            if seen == 0:  # the clock starts at the first poll that saw messages
                first, base = now, frames
            seen, last, changed = frames, now, now
    received = frames  # one frame per message
    sender.join(10)
    for p in (sender, server):
        if p is not None:
            p.kill()
            p.join(5)
    counter.close()
    recv.close(linger=0)
    ctx.term()
    rate = (frames - base) / (last - first) if last > first else 0.0
    return {"received": received, "lost": count - received, "rate": rate}


def run(count: int = 200_000, rounds: int = 5) -> dict[str, Any]:
    """Alternate plaintext and CURVE trials per path; return medians and the CURVE/plaintext ratio."""
    results: dict[str, Any] = {}
    sample = messages(1)[0]
    with tempfile.TemporaryDirectory(prefix="logfabric-bench-curve-") as tmp:
        keys = _keys(Path(tmp))
        for path in ("direct", "broker"):
            rates: dict[str, list[float]] = {"plaintext": [], "curve": []}
            lost = {"plaintext": 0, "curve": 0}
            for _ in range(rounds):
                for kind in ("plaintext", "curve"):
                    t = trial(path, kind == "curve", count, keys)
                    rates[kind].append(t["rate"])
                    lost[kind] += int(t["lost"])
            plain, curve = statistics.median(rates["plaintext"]), statistics.median(rates["curve"])
            results[path] = {
                "plaintext_median_rps": round(plain),
                "curve_median_rps": round(curve),
                "ratio": round(curve / plain, 3) if plain else None,
                "plaintext_rps": [round(r) for r in rates["plaintext"]],
                "curve_rps": [round(r) for r in rates["curve"]],
                "lost": lost,
                "messages_per_trial": count,
                "frames_per_message": 1,
                "message_bytes": len(sample),
                "payload_bytes": len(split_message(sample)[1]),
            }
    return results


if __name__ == "__main__":
    import json
    import sys

    n, r = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (100_000, 3)
    print(json.dumps(run(n, r), indent=2))
