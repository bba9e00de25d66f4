"""The handler that keeps what a listener delivers, and the records tests send to synchronise with it.

A test never sleeps to let records arrive. It waits (bounded) for a known
record instead:

- a *probe* goes out, again and again, until one comes back, so the path
  (a subscription, a connection) is known to work before counting starts
  (:func:`probe_until_seen`);
- a *sentinel* goes out once, after the records under test, on the same path;
  once it arrived, whatever was sent before it has arrived too, so a test can
  assert that nothing more came (:func:`send_sentinel`).

Probe and sentinel loggers are named ``probe`` or ``*.probe``, and
:meth:`Capture.count` leaves them out.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from tests.helpers.waiting import send_until, wait_until

#: The default logger name of probes and sentinels.
PROBE = "probe"
#: The logger name of the gap notices a listener makes.
GAPS = "logfabric.gaps"


def is_probe(name: str) -> bool:
    """Whether ``name`` is a probe logger (``probe`` or ``*.probe``)."""
    return name == PROBE or name.endswith("." + PROBE)


def emit(handler: logging.Handler, name: str, msg: str, *args: object, level: int = logging.ERROR) -> None:
    """Hand one record of logger ``name`` to ``handler``, no logger tree involved (ERROR passes any level filter)."""
    handler.handle(logging.LogRecord(name, level, __file__, 1, msg, args, None))


class Capture(logging.Handler):
    """A handler that keeps every record it is given, counted by logger and by service, safely across threads."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._records: list[logging.LogRecord] = []
        self._names: Counter[str] = Counter()
        self._services: Counter[tuple[str, str]] = Counter()
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self._records.append(record)
            self._names[record.name] += 1
            self._services[(str(record.__dict__.get("service", "")), record.name)] += 1

    @property
    def records(self) -> list[logging.LogRecord]:
        """A snapshot of the records received so far (probes and gap notices included)."""
        with self._guard:
            return list(self._records)

    def __len__(self) -> int:
        with self._guard:
            return len(self._records)

    def clear(self) -> None:
        """Forget every record received so far, and their counts."""
        with self._guard:
            self._records.clear()
            self._names.clear()
            self._services.clear()

    def named(self, name: str) -> list[logging.LogRecord]:
        """The records whose logger is ``name``."""
        return [r for r in self.records if r.name == name]

    def wait_for(self, count: int, timeout: float = 5.0, name: str | None = None) -> bool:
        """Wait (bounded) until at least ``count`` records (of logger ``name``) arrived."""
        if name is None:
            return wait_until(lambda: len(self) >= count, timeout)
        return wait_until(lambda: self.count(name) >= count, timeout)

    def count(self, name: str | None = None) -> int:
        """Records of logger ``name``; with no name, every record except probes and gap notices."""
        with self._guard:
            if name is not None:
                return self._names[name]
            return sum(n for k, n in self._names.items() if k != GAPS and not is_probe(k))

    def by_service(self, service: str, name: str | None = None) -> int:
        """Records from producers of ``service``: of logger ``name``, else all but probes."""
        with self._guard:
            if name is not None:
                return self._services[(service, name)]
            return sum(n for (svc, k), n in self._services.items() if svc == service and not is_probe(k))

    def names_seen(self) -> set[str]:
        """Every logger name received so far."""
        with self._guard:
            return set(self._names)

    def messages(self) -> list[str]:
        """``SERVICE/LOGGER/MESSAGE`` of every record but gap notices, in arrival order."""
        return [f"{r.__dict__.get('service')}/{r.name}/{r.getMessage()}" for r in self.records if r.name != GAPS]

    def of(self, service: str, name: str | None = None) -> list[logging.LogRecord]:
        """The records of ``service`` (and of logger ``name``), gap notices excluded."""
        return [
            r
            for r in self.records
            if r.__dict__.get("service") == service and r.name != GAPS and (name is None or r.name == name)
        ]

    def gaps(self) -> list[logging.LogRecord]:
        """The gap notices (records a producer sent that never arrived)."""
        return self.named(GAPS)


def probe_until(
    handler: logging.Handler, arrived: Callable[[], object], name: str = PROBE, timeout: float = 10.0
) -> int:
    """Send ERROR probe records through ``handler`` until ``arrived()`` holds; return how many were sent.

    Fails the test if ``arrived()`` does not hold within ``timeout``.
    """
    sent = send_until(lambda n: emit(handler, name, "probe %d", n), arrived, timeout)
    if sent is None:
        pytest.fail(f"no probe {name!r} arrived within {timeout} s")
    return sent


def probe_until_seen(
    handler: logging.Handler,
    captures: list[Capture],
    name: str = PROBE,
    level: int = logging.ERROR,
    timeout: float = 10.0,
) -> int:
    """Send probe records through ``handler`` until every capture got a new one; return how many were sent.

    This is how a test knows that subscriptions have travelled all the way
    from its subscribers (through any broker) before it starts counting.
    """
    before = [c.count(name) for c in captures]

    def arrived() -> list[bool]:
        return [c.count(name) > n for c, n in zip(captures, before, strict=True)]

    sent = send_until(lambda n: emit(handler, name, "probe %d", n, level=level), lambda: all(arrived()), timeout)
    if sent is None:
        missing = [i for i, ok in enumerate(arrived()) if not ok]
        pytest.fail(f"probe {name!r} never reached subscriber(s) {missing} within {timeout} s")
    return sent


def send_sentinel(
    handler: logging.Handler,
    captures: list[Capture],
    name: str = PROBE,
    level: int = logging.ERROR,
    timeout: float = 10.0,
) -> None:
    """Send one sentinel record through ``handler`` and wait (bounded) until every capture has it.

    Records travel in order from one handler to one subscriber, so what the
    handler sent before the sentinel has arrived (or never will) once it is
    there: a test can then assert that nothing more came.
    """
    before = [c.count(name) for c in captures]
    emit(handler, name, "sentinel", level=level)
    if not wait_until(lambda: all(c.count(name) > n for c, n in zip(captures, before, strict=True)), timeout, 0.01):
        pytest.fail(f"sentinel {name!r} did not arrive within {timeout} s")
