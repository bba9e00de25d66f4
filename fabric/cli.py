"""The ``logfabric`` command: one entry point whose subcommands grow with the project."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fabric import __version__

#: What the broker imports beyond the core install (the ``broker`` extra).
_BROKER_NEEDS = frozenset({"prometheus_client"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``logfabric``; return the exit code."""
    parser = argparse.ArgumentParser(prog="logfabric", description="ZeroMQ logging fabric for Python.")
    parser.add_argument("--version", action="version", version=f"logfabric {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="run producers, a listener and a live tail, all local")
    demo.add_argument("--seconds", type=float, default=4.0, help="how long producers log (default 4)")
    demo.add_argument("--producers", type=int, default=3, help="number of producer processes (default 3)")

    commands.add_parser("broker", help="run a broker (see 'logfabric broker --help')", add_help=False)
    commands.add_parser("tail", help="print live records (see 'logfabric tail --help')", add_help=False)
    commands.add_parser(
        "export", help="export live records over OTLP (see 'logfabric export otlp --help')", add_help=False
    )

    keys = commands.add_parser("keys", help="CurveZMQ key pairs (see docs/security.md)")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    generate = key_commands.add_parser(
        "generate",
        help="create NAME.key (public) and NAME.key_secret (private, mode 0600)",
        description="Create a CURVE key pair: NAME.key (public: give it to the broker's allow-list, or to clients "
        "if NAME is the broker) and NAME.key_secret (keep it private). Existing files are never overwritten.",
    )
    generate.add_argument("name", metavar="NAME", help="the key's name, e.g. broker, checkout, analyst-jane")
    generate.add_argument("--dir", default=".", help="where to write the files (created if missing; default .)")

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["broker"]:
        from broker.cli import main as broker_main

        try:
            return broker_main(argv[1:])
        except ModuleNotFoundError as exc:  # imported where first needed, e.g. /metrics
            if exc.name not in _BROKER_NEEDS:
                raise
            print(
                f"logfabric broker: the broker needs {exc.name}, which is not installed: "
                "pip install 'logfabric[broker]'",
                file=sys.stderr,
            )
            return 2
    if argv[:1] == ["tail"]:
        from fabric.tail import main as tail_main

        return tail_main(argv[1:])
    if argv[:1] == ["export"]:
        from fabric.export import main as export_main

        return export_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "demo":
        from fabric.demo import run_demo

        return run_demo(seconds=args.seconds, producers=args.producers)
    if args.command == "keys" and args.keys_command == "generate":
        return _generate_keys(args.name, args.dir)
    if args.command == "keys":
        keys.print_help(sys.stderr)
        return 2
    parser.print_help(sys.stderr)
    return 2


def _generate_keys(name: str, directory: str) -> int:
    from fabric.curve import CurveError, generate, load_public_key

    try:
        public, secret = generate(name, directory)
    except (CurveError, OSError) as exc:
        print(f"logfabric keys: {exc}", file=sys.stderr)
        return 2
    print(f"public key  {public}  ({load_public_key(public).decode()})")
    print(
        f"secret key  {secret}  (mode 0600: keep it private; only the public .key file goes to allow-lists and clients)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
