"""Celery: a prefork worker (two pool processes) on the filesystem transport, logging set up in ``setup_logging``."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.frameworks.fwkit import APPS, App, Fabric, assert_delivered, exactly_once
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

TASKS = 40
WORKER = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork", "--concurrency", "2"]
QUIET = ["--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", "shop@localhost"]


def test_prefork_pool_delivers_every_task_record_once(
    fw_fabric: Fabric, start_app: Callable[..., App], tmp_path: Path
) -> None:
    """40 tasks over two pool processes: each task's record and the failing task's traceback arrive exactly once."""
    env = fw_fabric.env(SHOP_CELERY_DATA=str(tmp_path / "celery"))
    worker = start_app([*WORKER, *QUIET], env=env)
    # The worker's own records come through the fabric too: its "ready" line says it is consuming.
    ready = lambda: any(r.getMessage() == "shop@localhost ready." for r in fw_fabric.records("shop-worker"))  # noqa: E731
    if not wait_until(lambda: ready() or worker.proc.poll() is not None, timeout=60) or not ready():
        pytest.fail(f"the worker never logged that it is ready; output:\n{worker.output()[-4000:]}")
    out = start_app([sys.executable, str(APPS / "celery_client.py"), str(TASKS)], env=env).finish(timeout=90)
    assert f"results {TASKS + 1} total {sum(n * 150 for n in range(TASKS))}" in out, out
    worker.signal(signal.SIGTERM)  # warm shutdown
    assert worker.wait(30) == 0, worker.output()[-4000:]
    fw_fabric.settle()

    tasks = exactly_once(fw_fabric.records("shop-worker", "celery_app"), key=lambda r: r.order)
    assert_delivered(tasks, range(-1, TASKS), "task records")
    for n in range(TASKS):
        record = tasks[n]
        assert (record.getMessage(), record.levelname, record.cents) == (f"charged order {n}", "INFO", n * 150)
        assert type(record.order) is int
    pool = {r.process for r in tasks.values()}
    assert len(pool) == 2 and worker.pid not in pool, f"tasks ran in {pool}, worker {worker.pid}"
    failed = tasks[-1]
    assert failed.getMessage() == "charge failed" and failed.levelname == "ERROR"
    assert failed.exc_text.rstrip().endswith("ValueError: invalid literal for int() with base 10: 'not a number'")
    assert failed.exceptions[0]["type"] == "builtins.ValueError"
    fw_fabric.check()
