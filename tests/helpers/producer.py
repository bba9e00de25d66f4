"""A producer process for the end-to-end tests.

Usage::

    python tests/helpers/producer.py ENDPOINT COUNT [options]

Logs ``COUNT`` INFO records ``"record %d of %d"`` on logger ``--logger``, each
with ``extra={"n": i}``, then the records of each ``--plan NAME:LEVEL:COUNT``
(on logger NAME at level LEVEL, numbered the same way), then ends as ``--end``
says. ``--pad N`` appends N characters to every message. Prints one JSON line
with the handler's stats, pid and producer id before it ends (with ``--end
close``, after the close, so that the stats are final). ``ENDPOINT``
may be ``-`` to take it from ``$LOGFABRIC_ENDPOINT`` (``--setup install``).

``--wait-ready`` waits for a first pub subscriber. ``--probe NAME`` then logs
ERROR records ``"probe N"`` on logger NAME, one every 10 ms, until the file
``--go-file`` exists (at most 15 s): the test creates it once its subscribers
have a probe, so the records that follow find them subscribed. ``--sentinel
NAME`` logs one more ERROR record ``"sentinel"`` on logger NAME after all the
others: once a subscriber has it, it has everything this producer sent before.
The report counts the probes sent in ``probes``.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import sys
import time

import fabric


def _handler(args: argparse.Namespace) -> fabric.ZmqHandler:
    endpoint = None if args.endpoint == "-" else args.endpoint
    options = {"mode": args.mode, "codec": args.codec, "linger": args.linger}
    if args.setup == "install":
        return fabric.install(endpoint, level="DEBUG", logger=args.logger, service=args.service, **options)
    if args.setup == "dictconfig":
        handler_config = {"class": "fabric.ZmqHandler", "endpoint": endpoint, "level": "DEBUG", **options}
        if args.service:
            handler_config["service"] = args.service
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"plain": {"format": "%(message)s"}},
                "handlers": {"zmq": {**handler_config, "formatter": "plain"}},
                "loggers": {args.logger: {"handlers": ["zmq"], "level": "DEBUG", "propagate": False}},
            }
        )
        (handler,) = logging.getLogger(args.logger).handlers
        assert isinstance(handler, fabric.ZmqHandler), handler
        return handler
    return _attach(fabric.ZmqHandler(endpoint, service=args.service, **options), args.logger)


def _attach(handler: fabric.ZmqHandler, name: str) -> fabric.ZmqHandler:
    """Feed ``handler`` from logger ``name`` alone (every level, no propagation)."""
    logger = logging.getLogger(name)
    if handler not in logger.handlers:
        logger.addHandler(handler)
    logger.setLevel(1)
    logger.propagate = False
    return handler


def _plan(text: str) -> tuple[str, int, int]:
    name, level, count = text.rsplit(":", 2)
    return name, int(level) if level.isdigit() else logging.getLevelNamesMapping()[level], int(count)


def _probe_until(handler: fabric.ZmqHandler, name: str, go: str, timeout: float = 15.0) -> int | None:
    """Send probes on logger ``name`` until the file ``go`` exists; return how many (None at the timeout)."""
    deadline = time.monotonic() + timeout
    sent = 0
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            return None
        handler.handle(logging.LogRecord(name, logging.ERROR, __file__, 1, "probe %d", (sent,), None))
        sent += 1
        time.sleep(0.01)  # a steady stream of probes while the test looks for one
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("endpoint")
    parser.add_argument("count", type=int)
    parser.add_argument("--mode", default="push", choices=["push", "pub"])
    parser.add_argument("--codec", default="protobuf", choices=["protobuf", "json"])
    parser.add_argument("--service", default=None)
    parser.add_argument("--logger", default="helper.producer")
    parser.add_argument("--linger", type=float, default=1.0)
    parser.add_argument("--setup", default="handler", choices=["handler", "install", "dictconfig"])
    parser.add_argument("--plan", type=_plan, action="append", default=[], help="NAME:LEVEL:COUNT, repeatable")
    parser.add_argument("--pad", type=int, default=0, help="characters appended to every message")
    parser.add_argument("--wait-ready", type=float, default=0.0, help="wait this long for a pub subscriber first")
    parser.add_argument("--probe", default=None, help="log ERROR probes on this logger until --go-file exists")
    parser.add_argument("--go-file", default=None, help="the file whose existence ends the probes")
    parser.add_argument("--sentinel", default=None, help="log one ERROR 'sentinel' on this logger at the end")
    parser.add_argument("--exception", action="store_true", help="log one ERROR with a traceback at the end")
    parser.add_argument(
        "--end",
        default="exit",
        choices=["exit", "close", "hard"],
        help="exit: sys.exit(0) (flush at exit); close: close() then exit; hard: os._exit(0), no flush",
    )
    args = parser.parse_args()
    if bool(args.probe) != bool(args.go_file):
        parser.error("--probe and --go-file go together")

    handler = _handler(args)
    if args.wait_ready and not handler.wait_ready(args.wait_ready):
        print("no subscriber arrived", file=sys.stderr)
        sys.exit(3)
    probes = 0
    if args.probe:
        if (sent := _probe_until(handler, args.probe, args.go_file)) is None:
            print(f"{args.go_file} did not appear", file=sys.stderr)
            sys.exit(3)
        probes = sent
    pad = "x" * args.pad
    plan = [(args.logger, logging.INFO, args.count), *args.plan]
    for name, _, _ in args.plan:
        _attach(handler, name)
    started = time.monotonic()
    for name, level, count in plan:
        log = logging.getLogger(name)
        for i in range(count):
            if pad:
                log.log(level, "record %d of %d %s", i, count, pad, extra={"n": i})
            else:
                log.log(level, "record %d of %d", i, count, extra={"n": i})
    if args.exception:
        try:
            raise ValueError("helper failure")
        except ValueError:
            logging.getLogger(args.logger).exception("failed at the end")
    if args.sentinel:
        handler.handle(logging.LogRecord(args.sentinel, logging.ERROR, __file__, 1, "sentinel", (), None))
    log_seconds = time.monotonic() - started
    if args.end == "close":
        handler.close()  # first, so that the stats reported are final

    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "producer_id": f"{handler.identity.producer_id:016x}",
                "service": handler.service,
                "stats": dict(handler.stats),
                "probes": probes,
                "log_seconds": log_seconds,
            }
        ),
        flush=True,
    )
    if args.end == "hard":
        os._exit(0)
    sys.exit(0)


if __name__ == "__main__":
    main()
