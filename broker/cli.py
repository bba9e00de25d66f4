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
from broker.broker import Broker
from broker.config import BrokerConfig, ConfigError

__all__ = ["main"]

_log = logging.getLogger("logfabric.broker")


def build_parser(prog: str = "logfabric broker") -> argparse.ArgumentParser:
    """The broker's flags; each also has a LOGFABRIC_BROKER_* variable."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Forward log records from producers to subscribers through ZeroMQ proxies. "
        "Every flag can also be set with LOGFABRIC_BROKER_<FLAG> (e.g. LOGFABRIC_BROKER_DRAIN_TIMEOUT).",
    )
    d = BrokerConfig()
    p.add_argument("--pub-ingest", metavar="EP", help=f"XSUB endpoint for PUB producers (default {d.pub_ingest})")
    p.add_argument("--push-ingest", metavar="EP", help=f"PULL endpoint for PUSH producers (default {d.push_ingest})")
    p.add_argument("--egress", metavar="EP", help=f"XPUB endpoint for subscribers (default {d.egress})")
    p.add_argument(
        "--pipeline", metavar="EP", help="PUSH endpoint load-balancing every record over consumers (default off)"
    )
    p.add_argument(
        "--http", metavar="HOST:PORT", help=f"metrics and health endpoints; 'off' disables (default {d.http})"
    )
    p.add_argument(
        "--drain-timeout", metavar="SECONDS", type=float, help=f"longest SIGTERM drain (default {d.drain_timeout:g})"
    )
    p.add_argument(
        "--upstream", metavar="EP", action="append", help="another broker's egress to subscribe to (repeatable)"
    )
    p.add_argument("--hwm", type=int, help=f"high-water mark of every socket, in messages (default {d.hwm})")
    p.add_argument(
        "--max-message", type=int, metavar="BYTES", help=f"largest message accepted (default {d.max_message})"
    )
    p.add_argument(
        "--subscription-budget",
        type=int,
        metavar="BYTES",
        help="bytes of distinct subscription prefixes held for subscribers; past it the connection that sent "
        f"the most is dropped (default {d.subscription_budget})",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help=f"connections each bound socket holds at most (default {d.max_connections}; "
        "fewer if the descriptor limit leaves less room)",
    )
    p.add_argument(
        "--max-connections-per-ip",
        type=int,
        metavar="N",
        help=f"connections each bound socket holds at most from one IP address (default {d.max_connections_per_ip})",
    )
    p.add_argument(
        "--handshake-timeout",
        type=float,
        metavar="SECONDS",
        help=f"a peer that has not finished its ZMTP handshake by then is dropped (default {d.handshake_timeout:g})",
    )
    curve = p.add_argument_group("CurveZMQ (docs/security.md)")
    curve.add_argument(
        "--curve-secret-key", metavar="FILE", help="the broker's secret key file; turns CURVE on (default off)"
    )
    curve.add_argument("--curve-producers", metavar="DIR", help="public keys (*.key) allowed to produce at the ingests")
    curve.add_argument(
        "--curve-subscribers", metavar="DIR", help="public keys (*.key) allowed at the egress and the pipeline"
    )
    curve.add_argument("--curve-client-key", metavar="FILE", help="this broker's secret key file for --upstream")
    curve.add_argument("--curve-upstream-key", metavar="FILE", help="the upstream brokers' public key file")
    curve.add_argument(
        "--allow-open-secret-key",
        action="store_true",
        default=None,
        help="accept secret key files that group or others may read or write (refused by default)",
    )
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
        config = BrokerConfig.load(
            args.config or os.environ.get("LOGFABRIC_BROKER_CONFIG"),
            pub_ingest=args.pub_ingest,
            push_ingest=args.push_ingest,
            egress=args.egress,
            pipeline=args.pipeline,
            http=args.http,
            drain_timeout=args.drain_timeout,
            upstream=args.upstream,
            hwm=args.hwm,
            max_message=args.max_message,
            subscription_budget=args.subscription_budget,
            max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip,
            handshake_timeout=args.handshake_timeout,
            curve_secret_key=args.curve_secret_key,
            curve_producers=args.curve_producers,
            curve_subscribers=args.curve_subscribers,
            curve_client_key=args.curve_client_key,
            curve_upstream_key=args.curve_upstream_key,
            allow_open_secret_key=args.allow_open_secret_key,
        )
        raise_fd_limit()  # a descriptor per connection: use what the hard limit allows
        broker = Broker(config)
        broker.start()
    except (ConfigError, ValueError, RuntimeError) as exc:
        print(f"logfabric broker: {exc}", file=sys.stderr)
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
