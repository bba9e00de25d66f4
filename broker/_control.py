"""The control endpoint: a ROUTER carrying runtime level changes from operators to producers, on its own thread.

The protocol is :mod:`fabric._control_wire`'s. Producers (``control=True``) say
hello every few seconds and are known by service until they fall silent;
operators (``logfabric level``) send ``set``, ``reset`` and ``list``. The
broker keeps the changes in force per service, each with its deadline, so a
process that connects later gets them at its first hello; every change also
carries its time to live to the producers, which revert on their own clock.

Who may command: with CurveZMQ, only a key of the operators' allow-list (the
``User-Id`` of the message; a producer's key is refused, ``forbidden``);
without it, anyone who reaches the endpoint, which the broker only binds when
told the network is trusted (:class:`~broker.config.BrokerConfig`). Every
message is untrusted: one frame of at most
:data:`~fabric._control_wire.MAX_MESSAGE` bytes, every field checked, every
table bounded (producers, services, loggers, pending answers), changing
commands rate-limited. Each request is counted by operation and outcome for
``/metrics``; every change is logged with who, what and until when.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zmq
import zmq.auth

from broker.auth import BrokerAuth
from fabric import _control_wire as wire

__all__ = ["MAX_PRODUCERS", "OPS", "OUTCOMES", "ControlServer", "tune_socket"]

_log = logging.getLogger("logfabric.broker")

#: Producer processes known at once; hellos beyond are refused (``too_many``).
MAX_PRODUCERS = 10_000
#: Services with changes in force at once.
MAX_SERVICES = 1_000
#: Operator requests waiting for producers' answers at once; more are refused (``busy``).
MAX_PENDING = 16
#: Changing commands (set, reset): a burst of this many, then one every :data:`_REFILL` seconds.
BURST = 20
_REFILL = 2.0
#: Processes a ``list`` reply shows at most.
LIST_PROCESSES = 200
#: Seconds without a hello after which a producer is forgotten.
SILENT = 3 * wire.HELLO_EVERY
#: Messages read at one time; requests queued per peer before libzmq stops reading it.
_READ = 256
_QUEUE = 64
_LOG_EVERY = 10.0
OPS = ("hello", "applied", "set", "reset", "list", "other")
OUTCOMES = ("ok", "malformed", "invalid", "forbidden", "too_many", "rate_limited", "busy")
_COMMANDS = frozenset({"set", "reset", "list"})


def tune_socket(sock: zmq.Socket[bytes]) -> None:
    """The control ROUTER's bounds: message size, queues both ways, sends that never block."""
    sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE)
    sock.setsockopt(zmq.RCVHWM, _QUEUE)
    sock.setsockopt(zmq.SNDHWM, _QUEUE)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.LINGER, 0)


@dataclass
class _Producer:
    service: str
    host: str
    pid: int
    producer: str
    seen: float
    active: list[Any] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "producer": self.producer}


@dataclass
class _Change:
    id: int
    level: int
    deadline: float  # monotonic
    until: float  # wall clock, for people
    by: str


@dataclass
class _Pending:
    operator: bytes
    reply: dict[str, Any]
    targets: dict[bytes, _Producer]
    deadline: float
    answers: dict[bytes, str | None] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ControlServer:
    """Serve the control endpoint on ``sock`` (a bound, tuned ROUTER) on a thread of its own."""

    def __init__(self, sock: zmq.Socket[bytes], auth: BrokerAuth | None) -> None:
        self.sock = sock
        self.auth = auth
        self.outcomes: Counter[tuple[str, str]] = Counter()
        """Requests by (op, outcome)."""
        self.unanswered = 0
        """Producers that did not confirm a change in time."""
        self.producers: dict[bytes, _Producer] = {}
        self.changes: dict[str, dict[str, _Change]] = {}
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._tokens = float(BURST)
        self._filled = time.monotonic()
        self._names: dict[str, str] = {}
        self._last_log: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logfabric-control", daemon=True)

    @property
    def changed_loggers(self) -> int:
        """Loggers with a change in force, over every service."""
        return sum(len(c) for c in list(self.changes.values()))

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop answering (within about 0.1 s); the thread closes the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._thread.ident is None:
            self.sock.close(linger=0)

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(100):
                    for _ in range(_READ):
                        try:
                            frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._serve(frames)
                self._housekeeping()
        except zmq.ContextTerminated:
            pass
        except Exception:
            _log.exception("control: the control thread failed; level changes are no longer served")
        finally:
            self.sock.close(linger=0)

    # ------------------------------------------------------------------ messages

    def _serve(self, frames: list[zmq.Frame]) -> None:
        op = "other"
        try:
            if len(frames) != 2:
                raise _Refused("malformed", "one frame per message")
            peer, frame = frames[0].bytes, frames[1]
            try:
                doc = orjson.loads(frame.buffer)
            except orjson.JSONDecodeError:
                raise _Refused("malformed", "the message is not JSON") from None
            if not isinstance(doc, dict):
                raise _Refused("malformed", "the message must be a JSON object")
            op = str(doc["op"]) if doc.get("op") in OPS else "other"
            if doc.get("v") != wire.VERSION:
                raise _Refused("malformed", f"unsupported version: this broker speaks version {wire.VERSION}")
            if op == "hello":
                self._hello(peer, doc)
            elif op == "applied":
                self._applied(peer, doc)
            elif op in _COMMANDS:
                who = self._operator(frame)
                if op == "list":
                    self._reply(peer, self._list(doc))
                else:
                    self._command(peer, op, doc, who)
                    return  # counted when the command is accepted
            else:
                raise _Refused("malformed", f"unknown op; known: {', '.join(OPS[:-1])}")
            self.outcomes[(op, "ok")] += 1
        except (_Refused, wire.Invalid) as exc:
            self.outcomes[(op, exc.code)] += 1
            self._note(exc.code, f"refused a control message ({op}, {exc.code}): {str(exc)[:200]}")
            if op in _COMMANDS and len(frames) == 2:
                self._reply(frames[0].bytes, {"ok": False, "error": exc.code, "message": str(exc)})

    def _operator(self, frame: zmq.Frame) -> str:
        """Who sent a command: an operator's key name, or (trusted network) the peer's address."""
        if self.auth is None:
            with contextlib.suppress(zmq.ZMQError):
                return f"{frame.get('Peer-Address')} (network trusted)"
            return "? (network trusted)"
        try:
            key = str(frame.get("User-Id"))
        except zmq.ZMQError:
            key = ""
        operators = self.auth.operators
        if not key or operators is None or not operators.allows(key.encode()):
            raise _Refused(
                "forbidden",
                "only an operator's key may change levels: ask the broker's operator to add your public key "
                "file to its operators allow-list (curve_operators)",
            )
        return f"{self._name(Path(operators.directory), key)} ({key[:8]}...)"

    def _name(self, directory: Path, key: str) -> str:
        if key not in self._names:
            self._names = {}
            for path in itertools.islice(sorted(directory.glob("*.key")), 1000):
                with contextlib.suppress(OSError, ValueError):
                    public, _ = zmq.auth.load_certificate(path)
                    self._names[public.decode()] = path.stem
        return self._names.get(key, "operator")

    def _hello(self, peer: bytes, doc: dict[str, Any]) -> None:
        service = wire.check_name(doc.get("service"), "service")
        host = wire.check_name(doc.get("host"), "host")
        pid = wire.field(doc, "pid", int, "a whole number")
        producer = wire.check_name(doc.get("producer"), "producer")[:16]
        active = doc.get("active", [])
        if not isinstance(active, list) or len(active) > wire.MAX_LOGGERS:
            raise _Refused("invalid", "active must be a list of at most 64 changes")
        known = self.producers.get(peer)
        if known is None and len(self.producers) >= MAX_PRODUCERS:
            raise _Refused("too_many", f"{MAX_PRODUCERS} producers are connected already")
        shown = [a for a in active if isinstance(a, list) and len(a) == 3 and isinstance(a[0], str)]
        self.producers[peer] = _Producer(service, host, pid, producer, time.monotonic(), shown)
        in_force = self.changes.get(service)
        if in_force:
            now = time.monotonic()
            changes = [
                {"id": c.id, "loggers": [name], "level": c.level, "ttl": round(c.deadline - now, 3), "by": c.by}
                for name, c in in_force.items()
                if c.deadline > now
            ]
            self._send(peer, {"v": wire.VERSION, "op": "state", "changes": changes})

    def _applied(self, peer: bytes, doc: dict[str, Any]) -> None:
        ident = wire.field(doc, "id", int, "a whole number")
        pending = self._pending.get(ident)
        if pending is None or peer not in pending.targets or peer in pending.answers:
            return  # late, or not asked: nothing to do
        error = doc.get("error")
        pending.answers[peer] = None if doc.get("ok") is True else str(error or "refused")[:200]
        if len(pending.answers) == len(pending.targets):
            self._finish(ident)

    def _command(self, peer: bytes, op: str, doc: dict[str, Any], who: str) -> None:
        service = wire.check_name(doc.get("service"), "service")
        if not service:
            raise _Refused("invalid", "name the service whose levels change")
        wait = doc.get("wait", wire.DEFAULT_WAIT)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= wire.MAX_WAIT:
            raise _Refused("invalid", f"wait must be a number of seconds from 0 to {wire.MAX_WAIT:g}")
        if op == "set":
            level = wire.check_level(doc.get("level"))
            loggers = wire.check_loggers(doc.get("loggers", []))
            duration = wire.parse_duration(doc.get("duration", wire.DEFAULT_DURATION))
            in_force = self.changes.get(service, {})
            if len(set(in_force) | set(loggers)) > wire.MAX_LOGGERS:
                too_many = f"service {service!r} would have over {wire.MAX_LOGGERS} loggers changed: reset it first"
                raise _Refused("too_many", too_many)
            if service not in self.changes and len(self.changes) >= MAX_SERVICES:
                raise _Refused("too_many", f"{MAX_SERVICES} services have changes in force already")
        if len(self._pending) >= MAX_PENDING:
            raise _Refused("busy", "the broker is waiting for answers to other changes: try again in a few seconds")
        self._take_token()
        ident = next(self._ids)
        now, wall = time.monotonic(), time.time()
        reply: dict[str, Any] = {"ok": True, "op": op, "id": ident, "service": service, "by": who}
        if op == "set":
            change = _Change(ident, level, now + duration, wall + duration, who)
            self.changes.setdefault(service, {}).update(dict.fromkeys(loggers, change))
            message = {"op": "set", "id": ident, "loggers": list(loggers), "level": level, "ttl": duration, "by": who}
            reply |= {"loggers": list(loggers), "level": level, "duration": duration, "until": change.until}
            what = f"{_names(loggers)} to {wire.level_name(level)} for {wire.duration_text(duration)}"
            what += f" until {_utc(wall + duration)}"
        else:
            self.changes.pop(service, None)
            message = {"op": "reset", "id": ident, "by": who}
            what = "back to their own levels"
        targets = {p: info for p, info in self.producers.items() if info.service == service}
        _log.warning(
            "level change %d by %s: service %r, %s (%d process(es) connected)", ident, who, service, what, len(targets)
        )
        self.outcomes[(op, "ok")] += 1
        message["v"] = wire.VERSION
        pending = self._pending[ident] = _Pending(peer, reply, targets, now + float(wait))
        for target in targets:
            if not self._send(target, message):
                pending.answers[target] = "not reachable: its queue is full or it is gone"
        if len(pending.answers) == len(targets) or wait <= 0:
            self._finish(ident)

    def _take_token(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(BURST), self._tokens + (now - self._filled) / _REFILL)
        self._filled = now
        if self._tokens < 1:
            raise _Refused(
                "rate_limited",
                f"too many level changes: at most {BURST} at once, then one every {_REFILL:g} s; try again shortly",
            )
        self._tokens -= 1

    def _finish(self, ident: int) -> None:
        pending = self._pending.pop(ident)
        applied, failed, missing = [], [], []
        for peer, info in pending.targets.items():
            if peer not in pending.answers:
                missing.append(info.info())
            elif pending.answers[peer] is None:
                applied.append(info.info())
            else:
                failed.append(info.info() | {"error": pending.answers[peer]})
        self.unanswered += len(missing)
        reply = pending.reply | {"applied": applied, "failed": failed, "missing": missing}
        _log.info(
            "level change %d on %r: applied by %d of %d process(es)%s",
            ident, reply["service"], len(applied), len(pending.targets),
            f"; {len(missing)} did not answer, {len(failed)} refused" if missing or failed else "",
        )  # fmt: skip
        self._reply(pending.operator, reply)

    def _list(self, doc: dict[str, Any]) -> dict[str, Any]:
        only = doc.get("service")
        if only is not None:
            wire.check_name(only, "service")
        now = time.monotonic()
        services: dict[str, dict[str, Any]] = {}
        for service, in_force in self.changes.items():
            if only is None or service == only:
                entry = services.setdefault(service, {"service": service, "changes": [], "processes": []})
                for name, c in in_force.items():
                    shown_change = {"logger": name, "level": c.level, "until": c.until, "by": c.by}
                    entry["changes"].append(shown_change | {"left": round(c.deadline - now)})
        shown = 0
        for info in self.producers.values():
            if (info.service == only or (only is None and info.active)) and shown < LIST_PROCESSES:
                entry = services.setdefault(info.service, {"service": info.service, "changes": [], "processes": []})
                entry["processes"].append(info.info() | {"active": info.active})
                shown += 1
        return {"ok": True, "op": "list", "services": list(services.values()), "truncated": shown >= LIST_PROCESSES}

    # ------------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        now = time.monotonic()
        for ident in [i for i, p in self._pending.items() if p.deadline <= now]:
            self._finish(ident)
        for service in list(self.changes):
            in_force = self.changes[service]
            for name in [n for n, c in in_force.items() if c.deadline <= now]:
                change = in_force.pop(name)
                _log.info("level change %d on %r: %s expired", change.id, service, _names((name,)))
            if not in_force:
                del self.changes[service]
        for peer in [p for p, info in self.producers.items() if now - info.seen > SILENT]:
            del self.producers[peer]

    def _send(self, peer: bytes, doc: dict[str, Any]) -> bool:
        try:
            self.sock.send_multipart([peer, orjson.dumps(doc)], zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.producers.pop(peer, None)
                return False
            raise

    def _reply(self, peer: bytes, doc: dict[str, Any]) -> None:
        doc["v"] = wire.VERSION
        if not self._send(peer, doc):
            self._note("unread", "an operator's answer could not be sent (gone, or not reading)")

    def _note(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -_LOG_EVERY) >= _LOG_EVERY:
            self._last_log[key] = now
            _log.warning("control: %s", message)


def _names(loggers: tuple[str, ...]) -> str:
    text = ", ".join(repr(n) if n else "the root logger" for n in loggers[:5])
    return text + (f" and {len(loggers) - 5} more" if len(loggers) > 5 else "")


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
