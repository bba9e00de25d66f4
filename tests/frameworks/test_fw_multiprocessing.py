"""multiprocessing pools under fork, spawn and forkserver (the 3.14 default on Linux): where to set up logging."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from tests.frameworks.fwkit import APPS, App, Fabric, assert_delivered, exactly_once

pytestmark = pytest.mark.timeout(60)

COUNT = 40


def run(fabric: Fabric, start_app: Callable[..., App], method: str, where: str) -> tuple[App, list[int]]:
    """Run ``mp_children.py METHOD WHERE COUNT``; return the app and the pids of its pool processes."""
    env = fabric.env(LOGFABRIC_SERVICE=f"batch-{method}-{where}")
    app = start_app([sys.executable, str(APPS / "mp_children.py"), method, where, str(COUNT)], env=env)
    (line,) = [line for line in app.finish(timeout=45).splitlines() if line.startswith("workers ")]
    fabric.settle()
    return app, [int(pid) for pid in line.split()[1:]]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_logging_set_up_in_the_pool_initializer_ships_every_child_record(
    method: str, fw_fabric: Fabric, start_app: Callable[..., App]
) -> None:
    """install() in the pool's initializer: every item's record arrives once, from the process that ran it."""
    app, workers = run(fw_fabric, start_app, method, "initializer")
    records = exactly_once(fw_fabric.records(f"batch-{method}-initializer", "shop.batch"), key=lambda r: r.item)
    assert_delivered(records, range(-1, COUNT), f"{method} pool records")
    assert records[-1].process == app.pid
    for n in range(COUNT):
        assert records[n].getMessage() == f"item {n} done" and records[n].levelname == "INFO"
        assert records[n].process in workers and records[n].process != app.pid
    fw_fabric.check()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_logging_set_up_only_under_main_ships_nothing_from_fresh_interpreters(
    method: str, fw_fabric: Fabric, start_app: Callable[..., App]
) -> None:
    """install() only under ``if __name__ == "__main__"``: spawn and forkserver children ship nothing."""
    app, workers = run(fw_fabric, start_app, method, "main")
    records = fw_fabric.records(f"batch-{method}-main", "shop.batch")
    assert [(r.getMessage(), r.process) for r in records] == [("batch started", app.pid)]
    assert workers and app.pid not in workers
    fw_fabric.check()
