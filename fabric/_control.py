"""Level changes from the broker: a producer's control thread, and the logger levels it changed.

A ``ZmqHandler(..., control=True)`` starts an :class:`Agent` with its sender (the
first record in a process, again in a forked child). The agent has its own
thread, context and DEALER socket, connected to the broker's control endpoint
(by default the handler's broker host on port 5560): it says hello every
:data:`~fabric._control_wire.HELLO_EVERY` seconds, takes the changes the broker
sends, applies each to logger levels only (``Logger.setLevel``; never a
handler, formatter, file or code), confirms it, and reverts it when its time
to live runs out, on this process's own clock, whether or not the broker is
still there.

The changed levels are kept per process in :data:`LEVELS` (at most
:data:`~fabric._control_wire.MAX_LOGGERS` loggers), which a forked child
inherits with the levels themselves, so its own agent reverts them on time.
Nothing here runs in a logging call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
import zmq

from fabric import _control_wire as wire
from fabric import _sockets, curve
from fabric._errors import ConfigError
from fabric._threads import start_daemon

__all__ = ["LEVELS", "Agent", "Levels", "attach", "control_endpoint"]

_log = logging.getLogger("logfabric.control")
#: Messages read from the socket at one time.
_READ_LIMIT = 64
#: Lines this process logs about changes per minute at most (then one line says how many were not logged).
_LOG_PER_MINUTE = 30
#: Loggers a process creates for changes over its life at most (a name it never had); then only existing ones.
_MAX_CREATED = 1024
#: Seconds between retries of a hello that found no broker connected.
_RETRY = 0.1
_TRUE = ("1", "true", "yes", "on")


def control_endpoint(control: object, endpoint: str, bind: bool) -> str | None:
    """The control endpoint a handler with option ``control`` connects to, or None (off).

    ``False`` (the default) reads ``$LOGFABRIC_CONTROL`` (``1`` or an
    endpoint); ``True`` is the handler's broker host on port
    :data:`~fabric._control_wire.DEFAULT_PORT`; a string is the endpoint.
    """
    if control is False or control is None:
        env = os.environ.get(wire.ENV, "").strip()
        control = True if env.lower() in _TRUE else env or False
        if control is False:
            return None
    if bind:
        raise ConfigError("control needs a broker: a handler that binds (bind=True) has none; drop control or bind")
    if control is True:
        scheme, _, rest = endpoint.partition("://")
        host = rest.rpartition(":")[0]
        if scheme != "tcp" or not host or host == "*":
            raise ConfigError(
                f"control=True takes the broker's host from a tcp:// endpoint, not {endpoint!r}: "
                f"give the control endpoint itself, e.g. control='tcp://broker:{wire.DEFAULT_PORT}'"
            )
        return f"tcp://{host}:{wire.DEFAULT_PORT}"
    if isinstance(control, str):
        try:
            return _sockets.check_endpoint(control)
        except ValueError as exc:
            raise ConfigError(f"control: {exc}") from None
    raise ConfigError(f"control must be True, False or a control endpoint, got {control!r}")


@dataclass
class _Changed:
    """One logger's level as changed from outside, and what to put back."""

    level: int
    deadline: float  # time.monotonic()
    original: int
    change: int
    by: str


class Levels:
    """The logger levels this process changed on the broker's word, each with its deadline; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed: dict[str, _Changed] = {}
        self._seen: deque[int] = deque(maxlen=256)
        self._logged: deque[float] = deque(maxlen=_LOG_PER_MINUTE)
        self._unlogged = 0
        self.version = 0
        """Counts the changes made and reverted (a hello reports them)."""
        self._created: set[str] = set()

    def apply(self, change: int, loggers: tuple[str, ...], level: int, ttl: float, by: str) -> str | None:
        """Set ``loggers`` to ``level`` for ``ttl`` seconds; None, or why not (nothing changed then)."""
        with self._lock:
            if change in self._seen:
                return None
            new = [name for name in loggers if name not in self._changed]
            if len(self._changed) + len(new) > wire.MAX_LOGGERS:
                return f"this process has {len(self._changed)} loggers changed already: at most {wire.MAX_LOGGERS}"
            existing = logging.Logger.manager.loggerDict
            unknown = {n for n in loggers if n and not isinstance(existing.get(n), logging.Logger)}
            if len(self._created | unknown) > _MAX_CREATED:
                return f"this process made {_MAX_CREATED} loggers for level changes already: change existing ones"
            self._created |= unknown
            self._seen.append(change)
            deadline = time.monotonic() + min(ttl, wire.MAX_DURATION)
            for name in loggers:
                logger = logging.getLogger(name or None)
                old = self._changed.get(name)
                original = old.original if old is not None else logger.level
                self._changed[name] = _Changed(level, deadline, original, change, by)
                logger.setLevel(level)
            self.version += 1
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl))
        self._say(
            "level of %s set to %s by %s until %s (change %d)",
            _shown(loggers), wire.level_name(level), by, until, change,
        )  # fmt: skip
        return None

    def revert(
        self, names: list[str] | None = None, why: str = "expired", by: str = "", quiet: bool = False
    ) -> list[str]:
        """Put back the levels of ``names`` (None: every changed logger); return those reverted."""
        with self._lock:
            chosen = list(self._changed) if names is None else [n for n in names if n in self._changed]
            for name in chosen:
                entry = self._changed.pop(name)
                logger = logging.getLogger(name or None)
                if logger.level == entry.level:  # unless the program changed it meanwhile
                    logger.setLevel(entry.original)
            self.version += len(chosen)
        if chosen and not quiet:
            self._say("level of %s back to what it was (%s%s)", _shown(chosen), why, f" by {by}" if by else "")
        return chosen

    def expire(self) -> float | None:
        """Revert what is due; return the next deadline (monotonic), or None."""
        now = time.monotonic()
        with self._lock:
            due = [name for name, entry in self._changed.items() if entry.deadline <= now]
        if due:
            self.revert(due)
        with self._lock:
            return min((entry.deadline for entry in self._changed.values()), default=None)

    def active(self) -> list[list[Any]]:
        """``[[logger, level, seconds left], ...]``: what a hello reports."""
        now = time.monotonic()
        with self._lock:
            return [[n, e.level, round(max(0.0, e.deadline - now), 1)] for n, e in self._changed.items()]

    def _say(self, message: str, *args: object) -> None:
        now = time.monotonic()
        logged = self._logged
        if len(logged) == logged.maxlen and now - logged[0] < 60:
            self._unlogged += 1
            return
        logged.append(now)
        if self._unlogged:
            message += f" ({self._unlogged} more change(s) not logged in the last minute)"
            self._unlogged = 0
        _log.warning(message, *args)


def _shown(names: tuple[str, ...] | list[str]) -> str:
    text = ", ".join(repr(n) if n else "the root logger" for n in names[:5])
    return text + (f" and {len(names) - 5} more" if len(names) > 5 else "")


#: This process's changed levels (a forked child inherits them with the levels).
LEVELS = Levels()


def attach(handler: Any, control: object, endpoint: str, bind: bool, keys: curve.CurveKeys | None) -> Agent | None:
    """The :class:`Agent` of a handler made with option ``control``, or None when control is off."""
    where = control_endpoint(control, endpoint, bind)
    return Agent(handler, where, keys) if where is not None else None


class Agent:
    """One handler's control link in one process: a thread with its own context and DEALER socket."""

    def __init__(self, handler: Any, endpoint: str, keys: curve.CurveKeys | None) -> None:
        self._handler = weakref.ref(handler)
        self.endpoint = endpoint
        self.keys = keys
        self._pid = 0
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._thread: threading.Thread | None = None
        self.stats = dict.fromkeys(("applied", "refused", "malformed"), 0)

    @property
    def running(self) -> bool:
        """Whether this process's thread runs."""
        return self._pid == os.getpid() and self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start this process's thread (again after a fork or a stop); at once, nothing waits for the broker."""
        if self.running:
            return
        self._pid = os.getpid()
        self._ctx = ctx = zmq.Context(io_threads=1)
        self._thread = start_daemon(self._run, "logfabric-control", (ctx,))  # blocks every signal

    def stop(self, revert: bool = True) -> None:
        """End the thread (within a second) and, with ``revert``, put back every level changed."""
        ctx, thread = self._ctx, self._thread
        self._ctx = self._thread = None
        if ctx is not None and self._pid == os.getpid():
            ender = start_daemon(ctx.term, "logfabric-control-end")  # wakes the thread's poll with ETERM
            ender.join(1.0)
            if thread is not None and thread is not threading.current_thread():
                thread.join(1.0)
        if revert:
            LEVELS.revert(why="its handler closed", quiet=True)

    def forget(self) -> list[object]:
        """In a forked child: drop the parent's context unused; return it to be kept alive, never touched."""
        ctx = self._ctx
        self._ctx = self._thread = None
        self._pid = 0
        return [ctx] if ctx is not None else []

    # ------------------------------------------------------------------ the thread

    def _run(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        try:
            sock = ctx.socket(zmq.DEALER)
        except zmq.ZMQError:
            return  # stopped before it began
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE)
            sock.setsockopt(zmq.RCVHWM, _READ_LIMIT)
            sock.setsockopt(zmq.SNDHWM, 16)
            sock.setsockopt(zmq.IMMEDIATE, 1)  # a hello waits for no absent broker: it is sent again
            _sockets.tune(sock)
            if self.keys is not None:
                self.keys.apply(sock)
            sock.connect(self.endpoint)
            self._loop(sock)
        except zmq.ContextTerminated:
            pass
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                _log.error("level control stopped: %s", exc)
        finally:
            sock.close(linger=0)
            if self._handler() is None:  # the handler was collected without a close: end the context too
                with contextlib.suppress(zmq.ZMQError):
                    ctx.term()

    def _loop(self, sock: zmq.Socket[bytes]) -> None:
        next_hello = 0.0
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while True:
            now = time.monotonic()
            if now >= next_hello:
                next_hello = now + (wire.HELLO_EVERY if self._hello(sock) else _RETRY)
            before = LEVELS.version
            deadline = LEVELS.expire()
            wake = min(next_hello, deadline if deadline is not None else next_hello)
            if poller.poll(max(1, int((wake - time.monotonic()) * 1000) + 1)):
                for _ in range(_READ_LIMIT):
                    try:
                        frame = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._take(sock, frame)
            if LEVELS.version != before:  # what this process reports changed: tell the broker now
                next_hello = 0.0

    def _hello(self, sock: zmq.Socket[bytes]) -> bool:
        handler = self._handler()
        if handler is None:
            raise zmq.ContextTerminated()
        me = handler.identity
        hello = {
            "v": wire.VERSION, "op": "hello", "service": me.service[: wire.MAX_NAME], "host": me.host[:255],
            "pid": me.pid, "producer": f"{me.producer_id:016x}", "active": LEVELS.active(),
        }  # fmt: skip
        return _send(sock, hello)

    def _take(self, sock: zmq.Socket[bytes], frame: bytes) -> None:
        """Apply one message from the broker (set, reset or state); answer set and reset."""
        try:
            doc = orjson.loads(frame)
            if not isinstance(doc, dict) or doc.get("v") != wire.VERSION:
                raise wire.Invalid("malformed", "not a version 1 object")
            op = doc.get("op")
            if op == "state":
                changes = doc.get("changes")
                if not isinstance(changes, list) or len(changes) > wire.MAX_LOGGERS:
                    raise wire.Invalid("malformed", "changes must be a short list")
                for change in changes:
                    if isinstance(change, dict):
                        self._set(change)
                return
            ident = wire.field(doc, "id", int, "a whole number")
        except (orjson.JSONDecodeError, wire.Invalid):
            self.stats["malformed"] += 1
            return
        try:
            if op == "set":
                error = self._set(doc)
            elif op == "reset":
                LEVELS.revert(why=f"reset, change {ident}", by=_by(doc))
                error = None
            else:
                error = f"unknown op {str(op)[:20]!r}"
        except wire.Invalid as exc:
            error = str(exc)
        self.stats["refused" if error else "applied"] += 1
        _send(sock, {"v": wire.VERSION, "op": "applied", "id": ident, "ok": error is None, "error": error})

    def _set(self, doc: dict[str, Any]) -> str | None:
        ident = wire.field(doc, "id", int, "a whole number")
        loggers = wire.check_loggers(doc.get("loggers"))
        level = wire.check_level(doc.get("level"))
        ttl = wire.field(doc, "ttl", (int, float), "a number of seconds")
        if not 0 < ttl <= wire.MAX_DURATION:
            raise wire.Invalid("invalid", "ttl out of range")
        return LEVELS.apply(ident, loggers, level, float(ttl), _by(doc))


def _by(doc: dict[str, Any]) -> str:
    by = doc.get("by")
    return by[:120].encode("ascii", "backslashreplace").decode() if isinstance(by, str) else "?"


def _send(sock: zmq.Socket[bytes], doc: dict[str, Any]) -> bool:
    with contextlib.suppress(zmq.Again):
        sock.send(orjson.dumps(doc), zmq.NOBLOCK)
        return True
    return False
