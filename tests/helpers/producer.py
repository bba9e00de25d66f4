"""A producer process for the end-to-end tests.

Usage::

    python tests/helpers/producer.py ENDPOINT COUNT [options]

Logs ``COUNT`` INFO records ``"record %d of %d"`` on logger ``--logger``, each
with ``extra={"n": i}``, then ends as ``--end`` says. Prints one JSON line with
the handler's stats, pid and producer id before it ends. ``ENDPOINT`` may be
``-`` to take it from ``$LOGFABRIC_ENDPOINT`` (``--setup install``).
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
    handler = fabric.ZmqHandler(endpoint, service=args.service, **options)
    logger = logging.getLogger(args.logger)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return handler


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
    parser.add_argument("--wait-ready", type=float, default=0.0, help="wait this long for a pub subscriber first")
    parser.add_argument("--exception", action="store_true", help="log one ERROR with a traceback at the end")
    parser.add_argument(
        "--end",
        default="exit",
        choices=["exit", "close", "hard"],
        help="exit: sys.exit(0) (flush at exit); close: close() then exit; hard: os._exit(0), no flush",
    )
    args = parser.parse_args()

    handler = _handler(args)
    if args.wait_ready and not handler.wait_ready(args.wait_ready):
        print("no subscriber arrived", file=sys.stderr)
        sys.exit(3)
    log = logging.getLogger(args.logger)
    started = time.monotonic()
    for i in range(args.count):
        log.info("record %d of %d", i, args.count, extra={"n": i})
    if args.exception:
        try:
            raise ValueError("helper failure")
        except ValueError:
            log.exception("failed at the end")
    report = {
        "pid": os.getpid(),
        "producer_id": f"{handler.identity.producer_id:016x}",
        "service": handler.service,
        "stats": dict(handler.stats),
        "log_seconds": time.monotonic() - started,
    }
    print(json.dumps(report), flush=True)
    if args.end == "close":
        handler.close()
    elif args.end == "hard":
        os._exit(0)
    sys.exit(0)


if __name__ == "__main__":
    main()
