"""The ``logfabric`` command's parser and the client side's subcommands (tail, export, level, keys).

The client library never imports the broker: the ``logfabric`` console script
(:func:`broker.command.main`) adds the subcommands that run one (``broker``,
``demo``) through ``main(commands=...)``. ``python -m fabric.cli`` offers the
client side's alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fabric import __version__

__all__ = ["Command", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand that parses its own arguments: ``run(argv)`` returns the exit code."""

    help: str
    """Its line in ``logfabric --help``."""
    run: Callable[[list[str]], int]


def main(argv: Sequence[str] | None = None, commands: Mapping[str, Command] | None = None) -> int:
    """Run ``logfabric``, with ``commands`` beside the client side's subcommands; return the exit code."""
    more = dict(commands or {})
    parser = argparse.ArgumentParser(prog="logfabric", description="ZeroMQ logging fabric for Python.")
    parser.add_argument("--version", action="version", version=f"logfabric {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in more.items():
        subcommands.add_parser(name, help=command.help, add_help=False)
    subcommands.add_parser("tail", help="print live records (see 'logfabric tail --help')", add_help=False)
    subcommands.add_parser(
        "export", help="export live records over OTLP (see 'logfabric export otlp --help')", add_help=False
    )
    subcommands.add_parser(
        "level", help="change a service's logger levels for a while (see 'logfabric level --help')", add_help=False
    )

    keys = subcommands.add_parser("keys", help="CurveZMQ key pairs (see docs/security.md)")
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
    if argv[:1] and argv[0] in more:
        return more[argv[0]].run(argv[1:])
    if argv[:1] == ["tail"]:
        from fabric.tail import main as tail_main

        return tail_main(argv[1:])
    if argv[:1] == ["export"]:
        from fabric.export import main as export_main

        return export_main(argv[1:])
    if argv[:1] == ["level"]:
        from fabric.level import main as level_main

        return level_main(argv[1:])
    args = parser.parse_args(argv)
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
