"""The call sites and loggers of a realistic service, for P1's second round.

P1's first round logs one call from one line to one logger: after the first
call every cache of the producer (the encoder's per call site, the handler's per
``(level, logger)``) hits. A service logs from many places. This module makes,
at import:

* :data:`SITES` call sites: one function each, compiled from generated source
  into :data:`FILES` module files (synthetic paths under ``/srv/app``), so each
  has its own ``pathname``, ``lineno`` and ``funcName``, as a real module's
  functions do;
* :data:`LOGGERS` logger names (``orders``, ``orders.db``, ...); each site logs
  to its module's area logger or one of the area's sub-loggers;
* three levels: 70 % of the sites call ``info``, 20 % ``warning``, 10 % ``error``;
* a handful of message templates with one to three arguments of str, int or float.

:func:`loop` builds one candidate's loop: its own tree of loggers, the
candidate's handler on their common parent (the children propagate to it, as
application loggers propagate to a handler on the root), and the sites visited
in one fixed shuffled order, the same for every candidate.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

SITES = 200
FILES = 25
LOGGERS = 50  # every area with every part

_AREAS = ("orders", "payments", "users", "catalog", "search", "cart", "auth", "billing", "mail", "jobs")
_PARTS = ("", ".db", ".http", ".cache", ".worker")

#: (format, argument expressions) written into each site; ``i`` is the loop counter.
_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("msg %s %d", '"x", i'),
    ("order %d placed by %s", 'i, "customer-42"'),
    ("cache miss for key %r", '"user:1234"'),
    ("request %s %s took %.2f ms", '"GET", "/api/orders", 12.5'),
    ("retrying %s (attempt %d of %d)", '"payments", i, 5'),
    ("job finished", ""),
    ("%d rows written to %s", 'i, "orders_archive"'),
)

Site = Callable[[logging.Logger, int], None]


def logger_names() -> list[str]:
    """The :data:`LOGGERS` names below the parent: ``orders``, ``orders.db``, ..., ``jobs.worker``."""
    return [area + part for area in _AREAS for part in _PARTS][:LOGGERS]


def _level_method(k: int) -> str:
    """70 % info, 20 % warning, 10 % error, spread over the sites."""
    return "error" if k % 10 == 9 else "warning" if k % 10 in (3, 6) else "info"


def _compile_sites() -> list[tuple[Site, int]]:
    """Compile every site; return ``(function, index of its logger)`` in site order."""
    per_file = -(-SITES // FILES)
    sites: list[tuple[Site, int]] = []
    for f in range(FILES):
        path = f"/srv/app/svc/{_AREAS[f % len(_AREAS)]}/module_{f:02d}.py"
        lines = ["# generated for the benchmark: one logging call per function", ""]
        names = []
        for j in range(per_file):
            k = f * per_file + j
            if k >= SITES:
                break
            fmt, args = _TEMPLATES[k % len(_TEMPLATES)]
            call_args = f"{fmt!r}, {args}" if args else repr(fmt)
            lines += ["", f"def handle_{k:03d}(log, i):", f"    log.{_level_method(k)}({call_args})"]
            lines += [""] * (k % 5)  # uneven gaps, as real modules have
            names.append((f"handle_{k:03d}", k))
        namespace: dict[str, Any] = {}
        exec(compile("\n".join(lines) + "\n", path, "exec"), namespace)
        # each site logs to its module's area logger or one of the area's sub-loggers
        sites += [(namespace[name], (f % len(_AREAS)) * len(_PARTS) + k % len(_PARTS)) for name, k in names]
    return sites


_SITES = _compile_sites()
#: The order in which every candidate visits the sites (each site five times, shuffled once).
ORDER: tuple[int, ...] = tuple(random.Random(13).sample(list(range(SITES)) * 5, SITES * 5))


def loop(handler: logging.Handler, name: str) -> Callable[[int], None]:
    """A loop of ``n`` logging calls from the sites, through ``handler``, on loggers of its own."""
    parent = logging.getLogger(f"bench.p1r.{name}")
    parent.handlers[:] = [handler]
    parent.propagate = False
    parent.setLevel(logging.INFO)
    loggers = []
    for child in logger_names():
        logger = logging.getLogger(f"{parent.name}.{child}")
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
        loggers.append(logger)
    plan = [(_SITES[k][0], loggers[_SITES[k][1]]) for k in ORDER]
    size = len(plan)

    def run(n: int) -> None:
        for i in range(n):
            site, logger = plan[i % size]
            site(logger, i)

    return run


def describe() -> dict[str, Any]:
    """What the realistic round is made of (for results.json)."""
    levels: dict[str, int] = {}
    for k in range(SITES):
        levels[_level_method(k)] = levels.get(_level_method(k), 0) + 1
    return {
        "call_sites": SITES,
        "files": FILES,
        "loggers": LOGGERS,
        "sites_per_level": levels,
        "templates": len(_TEMPLATES),
        "calls_per_cycle": len(ORDER),
    }
