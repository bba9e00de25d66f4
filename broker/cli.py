"""``logfabric broker`` / ``python -m broker``: run a broker until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from broker._connections import raise_fd_limit
from broker._options import add_flags, flags_of
from broker.broker import Broker
from broker.config import CONFIG_VAR, ENV_PREFIX, BrokerConfig, ConfigError

__all__ = ["build_parser", "main"]

_log = logging.getLogger("logfabric.broker")

#: What the broker imports beyond the core install (the ``broker`` extra).
_BROKER_NEEDS = frozenset({"prometheus_client"})


def build_parser(prog: str = "logfabric broker") -> argparse.ArgumentParser:
    """The broker's flags: one per :class:`BrokerConfig` field (each also has a LOGFABRIC_BROKER_* variable)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Forward log records from producers to subscribers through ZeroMQ proxies. "
        f"Every flag can also be set with {ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}DRAIN_TIMEOUT).",
    )
    add_flags(p, BrokerConfig)
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (flags and variables win over it)")
    p.add_argument("--log-level", default="INFO", help="the broker's own log level (default INFO)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "logfabric broker") -> int:
    """Run the broker; exit 0 after a clean drain, 2 on a configuration error."""
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = BrokerConfig.load(args.config or os.environ.get(CONFIG_VAR), **flags_of(args, BrokerConfig))
        raise_fd_limit()  # a descriptor per connection: use what the hard limit allows
        broker = Broker(config)
        broker.start()
    except (ConfigError, RuntimeError) as exc:
        print(f"logfabric broker: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # imported where first needed, e.g. /metrics
        if exc.name not in _BROKER_NEEDS:
            raise
        print(
            f"logfabric broker: the broker needs {exc.name}, which is not installed: pip install 'logfabric[broker]'",
            file=sys.stderr,
        )
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _log.info("received %s: draining (at most %.1f s)", signal.Signals(signum).name, config.drain_timeout)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.5):
        if not broker.alive:
            _log.error("a proxy stopped unexpectedly; exiting so the broker can be restarted")
            broker.stop(drain_timeout=0)
            return 1
    broker.stop()
    _log.info("stopped cleanly")
    return 0
