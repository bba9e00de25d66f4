"""A handler's sender in one process: one thread that owns the socket and sends queued records in bursts.

The logging call encodes and numbers a record, appends the message to
:attr:`Sender.queue` and returns; it never touches the socket. The sender
thread wakes when a record arrives while it sleeps, waits up to ``delay``
for more (an urgent record, WARNING and above by default, cuts that short),
then hands everything queued to libzmq in one burst, so libzmq's I/O thread
is woken once per burst instead of once per record. Every message stays one
record (``topic NUL payload``).

Threads share the queue without a lock: ``deque.append`` and ``popleft`` are
atomic, the byte counts are each written by one thread only, and the flags
that say whether the sender sleeps (:attr:`Sender.idle`,
:attr:`Sender.gathering`) are written by the sender and read by callers, each
side writing before it reads the other's state, so a record is never left
without a wake-up.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field

import zmq

from fabric import curve
from fabric._link import Link, open_link, send
from fabric._threads import start_daemon

__all__ = ["LinkSpec", "Sender", "merged"]

# The link is looked after (what peers sent, whether the peer is connected) once
# the records sent since the last look weigh _SLICE: a record weighs its size
# plus _WEIGHT, so that happens every 256 records at the latest.
_SLICE = 4 * 1024 * 1024
_WEIGHT = _SLICE // 256
# Waits on a full socket: first this long, doubling up to _FULL_MAX.
_FULL_MIN = 0.001
_FULL_MAX = 0.02
_STATS = ("sent", "dropped", "upstream_discarded", "subscriptions_reset", "errors")


@dataclass(frozen=True)
class LinkSpec:
    """What the sender needs to open its socket (again)."""

    mode: str
    endpoint: str
    bind: bool
    hwm: int
    linger: float
    keys: curve.CurveKeys | None

    def open(self, endpoint: str | None = None) -> Link:
        """Open a link to ``endpoint`` (default: :attr:`endpoint`); sends never block (the sender waits instead)."""
        return open_link(self.mode, endpoint or self.endpoint, self.bind, self.hwm, self.linger, self.keys)


@dataclass
class _Request:
    """A flush or a close, asked of the sender thread by another thread."""

    close: bool
    deadline: float
    release: bool = False
    """A close asked because the handler was garbage-collected."""
    done: threading.Event = field(default_factory=threading.Event)
    delivered: bool = False


class Sender:
    """The queue of encoded records and the thread that sends them, for one handler in one process.

    Attributes:
        queue: messages waiting to be sent, oldest first.
        taken_bytes: bytes of messages the sender has taken from the queue (sender thread only).
        idle: the sender sleeps until a record arrives; a caller that queues one must :meth:`wake` it.
        gathering: the sender waits ``delay`` for more records; only an urgent one needs :meth:`wake`.
        hurry: an urgent record is queued: send without gathering.
        ready: push: always; pub: once a subscriber has subscribed.
        stats: what the sender thread counts (``sent``, ``dropped``, ``upstream_discarded``,
            ``subscriptions_reset``, ``errors``).
    """

    def __init__(self, spec: LinkSpec, delay: float) -> None:
        self.spec = spec
        self.delay = delay
        self.queue: deque[bytes] = deque()
        self.taken_bytes = 0
        self.idle = True
        self.gathering = False
        self.hurry = False
        self.ready = spec.mode == "push"
        self.link: Link | None = None
        self.endpoint: str | None = None
        """The endpoint last attached to (for a bound ``*`` port: the one it got), to open again there."""
        self.stats = dict.fromkeys(_STATS, 0)
        self.thread: threading.Thread | None = None
        self.crashed = False
        """The thread failed (it may still be printing why): the next record starts a new one."""
        self.confirmed = True
        """Whether the thread answered the last :meth:`finish` (else it may still close the link)."""
        self.links_closed = 0
        """Links that carried records and were closed by a flush or close."""
        self.ident = 0
        """The sender thread's ``threading.get_ident()`` once it runs (0: none yet)."""
        self._requests: deque[_Request] = deque()
        self._sent_at_open = 0
        self._wake_r = self._wake_w = -1  # the wake-up pipe, open while a thread may run
        self._pid = os.getpid()
        self._starting = False
        self._poller: zmq.Poller | None = None
        self._poller_link: Link | None = None

    # ------------------------------------------------------------------ any thread

    @property
    def running(self) -> bool:
        """Whether the sender thread is alive."""
        return self.thread is not None and self.thread.is_alive() and not self.crashed

    def is_current(self) -> bool:
        """Whether the calling thread is the sender thread."""
        return self.ident == threading.get_ident()

    def start(self) -> None:
        """Open the link (in the calling thread, so its errors reach the caller) and start the thread.

        A signal handler that logs while this runs finds it starting and leaves
        it to finish: one thread, never two.
        """
        if self._starting:
            return
        self._starting = True
        try:
            if self.link is None:
                self._open()
            if self._wake_r < 0:
                self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                self._poller = None
            self.idle = False  # the new thread looks at the queue before it first sleeps
            self.crashed = False
            thread = start_daemon(self._run, "logfabric-sender")  # blocks every signal (see fabric._threads)
            self.thread = thread
        finally:
            self._starting = False

    def kick(self) -> None:
        """Wake the sender thread, or start a new one if it died.

        Says at once that the sender is no longer idle: the callers that queue
        records before it runs again need not wake it too.
        """
        self.idle = False
        if self.running:
            self.wake()
        else:
            self.start()

    def wake(self) -> None:
        """Wake the sender thread (a write to its pipe; a full pipe already wakes it)."""
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"\x00")

    def finish(self, deadline: float, close: bool) -> bool:
        """Have the thread send everything queued until ``deadline``, then (``close``) close the link and end.

        Returns whether everything queued so far left the process. A flush
        leaves the link closed (libzmq can only wait for its queue while
        closing); the next burst opens a new one.
        """
        self.confirmed = True
        if self.is_current():  # from the sender's own thread: nothing else will send
            return self._finish(_Request(close, deadline))
        if not self.running:
            if close:
                self._abandon()
            return not self.queue and self.link is None
        request = _Request(close, deadline)
        self._requests.append(request)
        self.wake()
        self.confirmed = request.done.wait(max(0.0, deadline - time.monotonic()) + 0.5)
        if not self.confirmed:  # the thread is still at it: it may yet close the link
            return False
        if close and self.thread is not None:
            self.thread.join(0.5)
            if not self.thread.is_alive():
                self._close_pipe()
        return request.delivered

    def release(self) -> None:
        """Ask the thread to send what is queued (within ``linger``), close the link and end; do not wait.

        Called when the handler is garbage-collected, in the process that made
        this sender only: a forked child leaves its parent's zmq objects alone.
        """
        if self._pid != os.getpid():
            return
        if self.running:
            self._requests.append(_Request(True, time.monotonic() + self.spec.linger, release=True))
            self.wake()
        else:
            self._abandon()

    def forget(self) -> list[tuple[object, object]]:
        """In a forked child: the parent's zmq objects to set aside; the pipe is closed."""
        self._close_pipe()
        return self.link.inherited() if self.link is not None else []

    # ------------------------------------------------------------------ the sender thread

    def _run(self) -> None:
        self.ident = threading.get_ident()
        try:
            self._loop()
        except BaseException:  # reported and counted; the next wake starts a new thread
            self.crashed = True  # first: a caller that sees it starts a new thread, though this one still runs
            self.stats["errors"] += 1
            self.idle = True
            if not sys.is_finalizing():  # a daemon thread writing at interpreter shutdown aborts the process
                print("logfabric: the sender thread failed; a new one starts at the next record", file=sys.stderr)
                traceback.print_exc()

    def _loop(self) -> None:
        queue, requests = self.queue, self._requests
        while True:
            if not queue and not requests:
                self.idle = True
                if not queue and not requests:  # checked again after saying so: no record waits unseen
                    self._wait(None)
                self.idle = False
            if requests:
                if self._serve(requests.popleft()):
                    return
                continue
            if not self.hurry and self.delay > 0:
                self.gathering = True
                until = time.monotonic() + self.delay
                while not self.hurry and not requests:  # a stale wake-up or the link's news does not end it
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._wait(left)
                self.gathering = False
            self.hurry = False
            self._send_queued()

    def _serve(self, request: _Request) -> bool:
        request.delivered = self._finish(request)
        request.done.set()
        if request.release:  # the handler is gone: nobody will wake this sender again
            self._close_pipe()
        return request.close

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
        self._poller = None

    def _finish(self, request: _Request) -> bool:
        """Send what is queued until the request's deadline, then drain (flush) or close the link."""
        self._send_queued(request.deadline)
        left = len(self.queue)
        link = self.link
        if request.close:
            self.stats["dropped"] += left
            self.queue.clear()
        elif left:
            return False
        self.link = None
        if link is None:
            return left == 0
        if not request.close and self.stats["sent"] == self._sent_at_open:
            self.link = link  # nothing was handed to this link: nothing to wait for
            return True
        self.links_closed += 1
        wait_ms = int(max(0.0, request.deadline - time.monotonic()) * 1000)
        return link.close(wait_ms) and left == 0

    def _send_queued(self, until: float | None = None) -> bool:
        """Hand queued messages to the socket until none is left (True).

        Returns False early when a request is waiting or ``until`` has passed.
        While the peer is away (or, in pub mode, no one has subscribed yet)
        the messages stay queued and the thread sleeps until that changes; on
        a full socket it waits for room, in short naps.
        """
        queue, stats = self.queue, self.stats
        full = _FULL_MIN
        while queue:
            if self._requests and until is None:
                return False
            link = self.link
            if link is None:
                link = self._open()
            if not (link.up and self.ready):
                self._look(link)
                if not (link.up and self.ready):
                    if not self._nap(None, until):
                        return False
                    continue
            sock, sent, taken = link.sock, 0, 0
            popleft = queue.popleft
            # Counted as sent before it leaves the queue: stats read meanwhile from
            # another thread never miss a record (sent + queued + dropped holds).
            while queue and taken + sent * _WEIGHT < _SLICE:
                message = queue[0]
                try:
                    send(sock, message, zmq.NOBLOCK)
                except zmq.Again:
                    break
                stats["sent"] += 1
                popleft()
                self.taken_bytes += len(message)
                sent += 1
                taken += len(message)
            self._look(link)
            if taken + sent * _WEIGHT < _SLICE and queue:  # the socket is full: wait for room
                if not self._nap(full, until):
                    return False
                full = min(full * 2, _FULL_MAX)
            else:
                full = _FULL_MIN
        return True

    def _nap(self, timeout: float | None, until: float | None) -> bool:
        """Wait ``timeout`` (None: for news) but not past ``until``; False once ``until`` has passed."""
        if until is not None:
            left = until - time.monotonic()
            if left <= 0:
                return False
            timeout = left if timeout is None else min(timeout, left)
        self._wait(timeout)
        return until is None or time.monotonic() < until

    def _look(self, link: Link) -> None:
        """Read what peers sent up (pub) and whether the peer is there; drop subscribers over budget."""
        link.look(self.stats)
        if link.sock.type == zmq.XPUB and link.subscriptions:
            self.ready = True
        if self.spec.bind and link.over_budget():
            self._reopen(link)

    def _reopen(self, link: Link) -> None:
        """Drop every subscriber of a bound pub socket by opening a new one.

        libzmq cannot drop one subscription or one peer of a bound socket, and
        it keeps every distinct subscription it is sent (about 85 bytes of
        memory per byte), so when they exceed the budget this is the only way to
        give the memory back. Subscribers reconnect and subscribe again; what
        they miss meanwhile shows as gaps. A connecting socket's one peer is the
        broker it was given, whose subscriptions are trusted.
        """
        self.stats["subscriptions_reset"] += 1
        self.link = None
        link.close(0)
        self.ready = False  # records wait for a subscriber again, as at the start
        self._open(link.endpoint)

    def _open(self, endpoint: str | None = None) -> Link:
        link = self.spec.open(endpoint or self.endpoint)
        self.link, self.endpoint, self._sent_at_open = link, link.endpoint, self.stats["sent"]
        self.ready = self.spec.mode == "push"  # pub: records wait for a subscription to this socket
        return link

    def _wait(self, timeout: float | None) -> None:
        """Sleep until woken, the link has news (a peer, a subscription), or ``timeout`` seconds."""
        poller = self._poller
        if poller is None or self._poller_link is not self.link:
            poller = self._poller = zmq.Poller()
            poller.register(self._wake_r, zmq.POLLIN)
            link = self._poller_link = self.link
            if link is not None:
                if link.sock.type == zmq.XPUB:
                    poller.register(link.sock, zmq.POLLIN)
                if link.monitor is not None:
                    poller.register(link.monitor, zmq.POLLIN)
        events = poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        if events:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except (BlockingIOError, OSError):
                pass
            if self.link is not None:
                self._look(self.link)

    def _abandon(self) -> None:
        """No thread to send: count what is queued as dropped, close the link at once and the pipe."""
        self._close_pipe()
        self.stats["dropped"] += len(self.queue)
        self.queue.clear()
        link, self.link = self.link, None
        if link is not None:
            link.close(0)


def merged(caller: dict[str, int], sender: Sender) -> dict[str, int]:
    """A handler's stats: what its callers counted plus what its sender counted, and what is queued."""
    counts = dict(caller)
    for key, value in sender.stats.items():
        counts[key] = counts.get(key, 0) + value
    counts["queued"] = len(sender.queue)
    return counts
