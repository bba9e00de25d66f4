"""How producers survive fork(): the handlers alive in this process, and what a child must leave alone."""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["INHERITED", "live", "track"]


class _Forkable(Protocol):
    def _after_fork_in_child(self) -> None: ...

    def close(self) -> None: ...


#: zmq objects inherited across fork() must never be used or freed in the child:
#: they are kept here, untouched, for the life of the child process.
INHERITED: list[object] = []
_LIVE: weakref.WeakSet[_Forkable] = weakref.WeakSet()


def track(handler: _Forkable) -> None:
    """Give ``handler`` fresh state in every forked child, and a final close in multiprocessing children.

    A multiprocessing child ends with ``os._exit()``, which skips atexit and so
    ``logging.shutdown()``: without the close its last records would be lost.
    """
    import multiprocessing
    import multiprocessing.util as mp_util

    _LIVE.add(handler)
    mp_util.register_after_fork(handler, _finalize_in_mp_child)
    if multiprocessing.parent_process() is not None:
        # Made inside a multiprocessing child (install() in a worker, say): no
        # after-fork hook will run for it, so arrange the close here.
        _finalize_in_mp_child(handler)


def live() -> list[_Forkable]:
    """The handlers alive in this process (made here or inherited across fork)."""
    return list(_LIVE)


def _finalize_in_mp_child(handler: _Forkable) -> None:
    import multiprocessing.util as mp_util

    mp_util.Finalize(handler, _close_at_exit, args=(handler,), exitpriority=100)


def _close_at_exit(handler: _Forkable) -> None:
    """A multiprocessing child's exit: closed handlers stay closed from now on, then close this one."""
    from fabric import _exit

    _exit.mark_exiting()
    handler.close()


def _after_fork_in_child() -> None:
    for handler in list(_LIVE):
        handler._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
