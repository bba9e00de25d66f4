"""How producers end: interpreter exit, death by a signal, and a close by ``logging.shutdown()`` before exit.

* **Interpreter exit.** An ``atexit`` hook registered when this module is
  imported (after :mod:`logging`, so it runs before logging's own
  ``shutdown()`` hook: ``atexit`` runs last-registered-first) marks the process
  as exiting. From then on a closed handler stays closed, so a record logged
  late at exit cannot open a socket that nobody would close.
* **A close by logging.shutdown() before exit.** ``logging.config.dictConfig``
  (Django, uvicorn, gunicorn) and ``fileConfig`` close every existing handler
  through ``logging.shutdown()``, but leave the root logger's handlers in place
  when the configuration does not name the root. A handler closed that way
  opens its socket again at its next record, as ``logging.FileHandler`` does;
  one closed by its own ``close()`` call stays closed.
* **Death by a signal.** A process whose SIGTERM (or SIGINT) has its default
  disposition dies at once, with no exit hook: what libzmq still queues is
  lost. :func:`arm_signals` sets a handler that flushes every handler of this
  process (bounded by their ``linger``), restores the default disposition and
  raises the signal again, so the process still dies of it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Any, Protocol

from fabric import _fork

__all__ = [
    "arm_signals",
    "by_logging_shutdown",
    "close_deadline",
    "exiting",
    "flush_all",
    "mark_exiting",
    "rejoin_shutdown",
]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_LOGGING_FILE = logging.__file__
_state = {"exiting": False}
_deadline: dict[str, float] = {}


class _Flushable(Protocol):
    linger: float
    _pid: int

    def flush(self, timeout: float | None = None) -> bool: ...


def exiting() -> bool:
    """Whether this process has begun its interpreter exit (or its multiprocessing exit)."""
    return _state["exiting"]


def mark_exiting() -> None:
    """Note that the process is exiting: closed handlers stay closed from now on.

    Also fixes when exit's waiting ends: ``linger`` after now (the largest
    ``linger`` of this process's handlers), however many handlers
    ``logging.shutdown()`` then closes one after another.
    """
    if not _state["exiting"]:
        lingers = [getattr(h, "linger", 0.0) for h in _fork.live()]
        _deadline["exit"] = time.monotonic() + max(lingers, default=0.0)
    _state["exiting"] = True


def close_deadline(linger: float) -> float:
    """When a handler closing now must stop waiting: ``linger`` from now, or exit's deadline if earlier."""
    deadline = time.monotonic() + linger
    if _state["exiting"]:
        deadline = min(deadline, _deadline.get("exit", deadline))
    return deadline


atexit.register(mark_exiting)


def by_logging_shutdown(frame: FrameType | None) -> bool:
    """Whether the method running in ``frame`` was called by :func:`logging.shutdown`.

    Frames of the same name above it (a subclass's ``close()`` or ``flush()``
    calling this one) are looked through.
    """
    name = frame.f_code.co_name if frame is not None else ""
    for _ in range(4):
        if frame is None or frame.f_code.co_name != name:
            break
        frame = frame.f_back
    return frame is not None and frame.f_code.co_name == "shutdown" and frame.f_code.co_filename == _LOGGING_FILE


def rejoin_shutdown(handler: logging.Handler) -> None:
    """Put ``handler`` back among those ``logging.shutdown()`` closes at exit, if it is not there.

    ``dictConfig`` forgets the handlers it closes; a handler that opens again
    afterwards would otherwise never be closed at exit, and lose what it
    queued. Not under logging's module lock: ``dictConfig`` holds that lock
    while it takes handler locks, and the caller holds its handler's lock.
    """
    handlers = logging._handlerList  # type: ignore[attr-defined]
    if not any(ref() is handler for ref in list(handlers)):
        handlers.append(weakref.ref(handler, logging._removeHandlerRef))  # type: ignore[attr-defined]


def flush_all(timeout: float | None = None) -> bool:
    """Flush every live handler of this process; ``timeout`` bounds the whole (default: the largest ``linger``).

    Returns whether every record handed to them has left the process. The
    handlers flush one after another, but their queues drain at the same time
    (each has its own I/O thread), so the total wait is the timeout, not a sum.
    """
    pid = os.getpid()
    handlers: list[_Flushable] = [h for h in _fork.live() if getattr(h, "_pid", None) == pid]  # type: ignore[misc]
    if timeout is None:
        timeout = max((h.linger for h in handlers), default=0.0)
    deadline = time.monotonic() + timeout
    done = True
    for handler in handlers:
        done = handler.flush(max(0.0, deadline - time.monotonic())) and done
    return done


def arm_signals() -> None:
    """Flush before dying of SIGTERM or SIGINT, for each whose disposition is still the default.

    Only from the main thread (Python runs signal handlers there), and never
    over a handler someone else set: a framework that sets its own (gunicorn,
    Celery) or saves and restores this one (uvicorn) keeps its behaviour.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _SIGNALS:
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _flush_then_die)
        except (OSError, ValueError):  # not settable here (an embedded interpreter, say)
            continue


def _flush_then_die(signum: int, frame: Any) -> None:
    """Deliver what is queued (bounded by linger), then die of ``signum`` as if no handler had been set."""
    signal.signal(signum, signal.SIG_DFL)  # a second signal meanwhile ends the process at once
    try:
        flush_all()
    finally:
        signal.raise_signal(signum)
        os.kill(os.getpid(), signum)  # only reached if this thread blocks the signal
