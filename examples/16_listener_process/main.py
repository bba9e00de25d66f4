"""Recipes 9 and 17, the multiprocessing listener process, with the fabric in place of the queue.

The main process starts a broker, a listener process and worker processes.
Workers call ``fabric.install()`` and log at random levels to random loggers;
the listener process is a fabric subscriber whose handler (the cookbook's
MyHandler) dispatches each record to the loggers configured by its own
dictConfig: a console, a file for everything, a file for the ``foo`` loggers
and a file for errors. Each of the three kinds of process has its own
configuration, as in the cookbook.

Run from the repository root: python examples/16_listener_process/main.py [OUTPUT_DIR]
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import random
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import fabric
from broker import Broker

LOCAL = "tcp://127.0.0.1:*"
WORKERS = 4
MESSAGES = 25
LOGGERS = ["foo", "foo.bar", "foo.bar.baz", "spam", "spam.ham", "spam.ham.eggs"]
LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]


def plan(worker: int) -> list[tuple[str, int]]:
    """The (logger, level) of each message a worker logs: random, but the same on every run."""
    rng = random.Random(worker)
    return [(rng.choice(LOGGERS), rng.choice(LEVELS)) for _ in range(MESSAGES)]


class MyHandler(logging.Handler):
    """The cookbook's MyHandler: dispatch each received record to the logger it names."""

    def handle(self, record: logging.LogRecord) -> bool:
        logger = logging.getLogger(record.name)
        # The process name is transformed just to show that it's the listener
        # doing the logging to files and console
        record.processName = f"{multiprocessing.current_process().name} (for {record.processName})"
        logger.handle(record)
        return True


def listener_process(endpoint: str, config: dict[str, Any], expected: int, ready: Event, stop: Event) -> None:
    """Configure logging, subscribe, and handle records until told to stop and all have arrived."""
    logging.config.dictConfig(config)
    listener = fabric.ZmqListener(endpoint, MyHandler())
    listener.start()
    ready.set()
    stop.wait(60)
    deadline = time.monotonic() + 10  # records still crossing the broker
    while listener.stats["received"] < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    listener.stop()


def worker_process(endpoint: str, worker: int) -> None:
    """Ship every record with fabric.install(), then log the planned messages."""
    handler = fabric.install(endpoint, level=logging.DEBUG, service="mp-demo", mode="pub")
    handler.wait_ready(20)
    for i, (name, level) in enumerate(plan(worker)):
        logging.getLogger(name).log(level, "Message no. %d", i)


def listener_config(out_dir: Path) -> dict[str, Any]:
    detailed = {"format": "%(asctime)s %(name)-15s %(levelname)-8s %(processName)-10s %(message)s"}

    def file(name: str) -> dict[str, Any]:
        return {"class": "logging.FileHandler", "filename": str(out_dir / name), "mode": "w", "formatter": "detailed"}

    return {
        "version": 1,
        "disable_existing_loggers": True,
        "formatters": {
            "detailed": detailed,
            "simple": {"format": "%(name)-15s %(levelname)-8s %(processName)-10s %(message)s"},
        },
        "handlers": {
            # the cookbook's console shows INFO and up; ERROR keeps this example's output short
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "level": "ERROR",
                "formatter": "simple",
            },
            "file": file("mplog.log"),
            "foofile": file("mplog-foo.log"),
            "errors": {**file("mplog-errors.log"), "level": "ERROR"},
        },
        "loggers": {"foo": {"handlers": ["foofile"]}},
        "root": {"level": "DEBUG", "handlers": ["console", "file", "errors"]},
    }


def main(out_dir: Path) -> None:
    # The main process gets a simple configuration which prints to the console.
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(name)-15s %(levelname)-8s %(processName)-10s %(message)s"
    )
    logging.getLogger("logfabric.broker").setLevel(logging.WARNING)  # keep the embedded broker quiet
    logger = logging.getLogger("setup")
    spawn = multiprocessing.get_context("spawn")
    with Broker(pub_ingest=LOCAL, push_ingest=LOCAL, egress=LOCAL) as broker:
        ready, stop = spawn.Event(), spawn.Event()
        logger.info("About to create listener ...")
        args = (broker.endpoints["egress"], listener_config(out_dir), WORKERS * MESSAGES, ready, stop)
        lp = spawn.Process(target=listener_process, name="listener", args=args)
        lp.start()
        if not ready.wait(30):
            raise SystemExit("the listener process did not start")
        logger.info("Started listener")
        workers = []
        for i in range(WORKERS):
            wp = spawn.Process(target=worker_process, name=f"worker {i + 1}", args=(broker.endpoints["pub_ingest"], i))
            workers.append(wp)
            wp.start()
            logger.info("Started worker: %s", wp.name)
        for wp in workers:
            wp.join(60)
        logger.info("Telling listener to stop ...")
        stop.set()
        lp.join(60)
    logger.info("All done.")

    records = [entry for worker in range(WORKERS) for entry in plan(worker)]
    expected = {
        "mplog.log": len(records),
        "mplog-foo.log": sum(1 for name, _ in records if name.split(".")[0] == "foo"),
        "mplog-errors.log": sum(1 for _, level in records if level >= logging.ERROR),
    }
    for name, count in expected.items():
        lines = (out_dir / name).read_text().splitlines()
        print(f"{name}: {len(lines)} lines, expected {count}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="logfabric-16-")))
