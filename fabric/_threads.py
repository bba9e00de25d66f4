"""The fabric's own background threads: daemons that block every signal.

Python runs signal handlers in the main thread, but the kernel hands a
process-directed signal (SIGTERM from an orchestrator, say) to any thread that
does not block it. A helper thread that gets it leaves a main thread asleep in
a blocking call unwoken, and the handler (the flush before dying, say) waits
for that call to end. A thread started here inherits a mask that blocks every
signal, so the kernel picks a thread that can run the handler at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["signals_blocked", "start_daemon"]

_SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block every signal in the calling thread meanwhile: threads started inside inherit the mask."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def start_daemon(target: Callable[..., Any], name: str, args: tuple[Any, ...] = ()) -> threading.Thread:
    """Start a daemon thread running ``target(*args)`` with every signal blocked; return it."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    with signals_blocked():
        thread.start()
    return thread
