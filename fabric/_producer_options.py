"""The producer options, defined once: ``ZmqHandler()``, ``install()``, their checks and environment variables.

Each :class:`Option` gives a name, its Python type, its default, a one-line
help, what a value must be, how it is checked, and the environment variable
read in its place. Derived from :data:`OPTIONS`: the checks a handler makes at
construction (:func:`fabric._options.check`), the environment variables
:func:`fabric.install` and the handler read, and the README's options table
and signatures. The two signatures are written out (for readers and type
checkers) and a test holds them to this table. Nothing here runs per record.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fabric import _sockets
from fabric._errors import ConfigError
from fabric.codec import CODECS
from fabric.curve import ENV_ALLOW_OPEN_KEY, ENV_CLIENT_KEY, ENV_SERVER_KEY

__all__ = [
    "ARGS_PLACEHOLDER",
    "HANDLER",
    "INSTALL",
    "OPTIONS",
    "Option",
    "Target",
    "docstring_args",
    "for_target",
    "options_table",
    "signature",
]

#: The line of a docstring's ``Args:`` section that :func:`fill_docstring` replaces
#: (at whatever indentation the interpreter kept: 3.13+ dedents docstrings).
ARGS_PLACEHOLDER = "(every option, from :data:`fabric._producer_options.OPTIONS`)"

#: Where an option applies: ``ZmqHandler()`` (and so a dictConfig handler entry) or ``install()``.
Target = Literal["handler", "install"]
Kind = Literal["positional-only", "positional", "keyword"]

_NAMES: Mapping[Target, str] = {"handler": "ZmqHandler", "install": "install()"}


@dataclass(frozen=True)
class Option:
    """One producer option and everything derived from it."""

    name: str
    """The argument name (and a dictConfig handler entry's key)."""
    annotation: str
    """The Python type, as the signatures spell it."""
    default: Any
    """The default in the signatures."""
    help: str
    """One line: what the option means."""
    expects: str
    """What a value must be, as the README's table says it."""
    targets: frozenset[Target]
    """Where the option applies."""
    check: Callable[[str, Any], None] | None = None
    """Raise :class:`fabric.ConfigError` if the value (of the option named by the first argument) cannot be used."""
    kind: Kind = "keyword"
    """How the signatures take it: ``positional-only``, ``positional`` or keyword-only."""
    env: str = ""
    """The environment variable read when the option is not given."""
    env_reader: Target = "handler"
    """Who reads :attr:`env`: the handler (so dictConfig too), or :func:`fabric.install` only."""
    shown: str = ""
    """The default as the README writes it, when not its ``repr``."""
    required_by: frozenset[Target] = frozenset()
    """Where a value must be given after all (the README then shows no default there)."""

    @property
    def documented(self) -> bool:
        """Whether the README lists the option (not the positional slot dictConfig fills with its own queue)."""
        return not self.name.startswith("_")

    @property
    def shown_default(self) -> str:
        """The default as the README writes it."""
        return self.shown or repr(self.default).replace("'", '"')


def _choice(*choices: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"unknown {name} {value!r}: use {' or '.join(map(repr, choices))}")

    return check


def _codec(name: str, value: Any) -> None:
    if value not in CODECS:
        raise ConfigError(f"unknown codec {value!r}: use one of {', '.join(CODECS)}")


def _endpoint(name: str, value: Any) -> None:
    if value is not None:
        try:
            _sockets.check_endpoint(value)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _level(optional: bool) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if (value is None and optional) or isinstance(value, int):
            return
        if not isinstance(value, str) or not isinstance(logging.getLevelNamesMapping().get(value), int):
            raise ConfigError(f"unknown {name} {value!r}: use a level name such as 'INFO', or a number")

    return check


def _not_negative(name: str, value: Any) -> None:
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}")


def _seconds_up_to(most: float) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not (isinstance(value, (int, float)) and 0 <= value <= most):
            raise ConfigError(f"{name} must be a number of seconds from 0 to {most:g}, got {value!r}")

    return check


def _hwm(name: str, value: Any) -> None:
    _not_negative(name, value)
    if value == 0:
        raise ConfigError(
            "hwm=0 would let the queue grow without limit (0 means 'no limit' to ZeroMQ); "
            f"give the number of records to queue per peer, e.g. the default {_sockets.DEFAULT_HWM}"
        )


def _positive(name: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be positive, e.g. the default {_sockets.DEFAULT_BUFFER_BYTES}, got {value!r}")


_BOTH: frozenset[Target] = frozenset({"handler", "install"})
_HANDLER: frozenset[Target] = frozenset({"handler"})
_INSTALL: frozenset[Target] = frozenset({"install"})
_PATH = "str | os.PathLike[str] | None"

#: Every producer option, in the order of the signatures.
OPTIONS: tuple[Option, ...] = (
    Option(
        name="_queue_or_endpoint", annotation="object", default=None, targets=_HANDLER,
        help="the endpoint by position (dictConfig on Python 3.12+ puts its own queue here, ignored)",
        expects="an endpoint", kind="positional-only",
    ),
    Option(
        name="endpoint", annotation="str | None", default=None, targets=_BOTH,
        help="where to send: `tcp://`, `ipc://`, `inproc://`, ...; checked at construction",
        expects="a ZeroMQ address, e.g. `tcp://broker:5557`", kind="positional", check=_endpoint,
        env="LOGFABRIC_ENDPOINT", env_reader="install", required_by=_HANDLER,
    ),
    Option(
        name="level", annotation="int | str | None", default=None, targets=_INSTALL,
        help="set on the *logger* (not the handler) when given",
        expects="a level name or number", check=_level(optional=True),
    ),
    Option(
        name="logger", annotation="logging.Logger | str | None", default=None, targets=_INSTALL,
        help="the logger (or its name) to attach the handler to; `None`: the root logger",
        expects="a logger or a logger name",
    ),
    Option(
        name="service", annotation="str | None", default=None, targets=_BOTH,
        help="the service name on every record; then the program name (`sys.argv[0]` without `.py`), then `python`",
        expects="a string", env="LOGFABRIC_SERVICE",
    ),
    Option(
        name="mode", annotation="Mode", default="push", targets=_BOTH,
        help='`"push"`: a PUSH socket, to a broker\'s PULL ingest or a `ZmqListener(mode="pull")`; '
        '`"pub"`: an XPUB socket, to a broker\'s XSUB ingest or a `ZmqListener(mode="sub")`',
        expects='`"push"` or `"pub"`', check=_choice("push", "pub"),
    ),
    Option(
        name="codec", annotation="Codec", default="protobuf", targets=_BOTH,
        help="the wire encoding: protobuf (compact) or JSON",
        expects='`"protobuf"` or `"json"`', check=_codec,
    ),
    Option(
        name="bind", annotation="bool", default=False, targets=_BOTH,
        help="bind instead of connect (a producer with a fixed address)",
        expects="true or false",
    ),
    Option(
        name="level", annotation="int | str", default=logging.NOTSET, targets=_HANDLER,
        help="the handler level",
        expects="a level name or number", check=_level(optional=False), shown="logging.NOTSET",
    ),
    Option(
        name="hwm", annotation="int", default=_sockets.DEFAULT_HWM, targets=_BOTH,
        help="the most records kept in memory for the sender thread (waiting for a peer, a first subscriber "
        "or room), and the most libzmq queues per peer",
        expects="a whole number of at least 1", check=_hwm, shown="50_000",
    ),
    Option(
        name="buffer_bytes", annotation="int", default=_sockets.DEFAULT_BUFFER_BYTES, targets=_BOTH,
        help="the most bytes kept in memory for the sender thread (an absent peer, no subscriber yet, a slow "
        "peer); records beyond are dropped and counted (waiting for a first subscriber: the oldest)",
        expects="a number of bytes above 0", check=_positive, shown="64 * 1024 * 1024",
    ),
    Option(
        name="send_timeout", annotation="float", default=0.0, targets=_BOTH,
        help="seconds a logging call may wait for room when the in-memory queue is full; `0` drops at once (counted)",
        expects="a number of seconds, at least 0", check=_not_negative,
    ),
    Option(
        name="linger", annotation="float", default=1.0, targets=_BOTH,
        help="seconds `close()` (and so interpreter exit), `flush()` and death by signal may wait for queued records",
        expects="a number of seconds, at least 0", check=_not_negative,
    ),
    Option(
        name="max_message", annotation="int", default=_sockets.DEFAULT_MAX_MESSAGE, targets=_BOTH,
        help="message bytes (topic and payload) above which a record is dropped and counted as `oversize`",
        expects="a number of bytes", shown="1024 * 1024",
    ),
    Option(
        name="curve_server_key", annotation=_PATH, default=None, targets=_BOTH,
        help="CurveZMQ: the broker's public key file (with `curve_client_key`; neither: plaintext)",
        expects="a file path", env=ENV_SERVER_KEY,
    ),
    Option(
        name="curve_client_key", annotation=_PATH, default=None, targets=_BOTH,
        help="CurveZMQ: this producer's secret key file (NAME.key_secret)",
        expects="a file path", env=ENV_CLIENT_KEY,
    ),
    Option(
        name="curve_allow_open_key", annotation="bool", default=False, targets=_BOTH,
        help="accept a secret key file that group or others may read",
        expects="true or false (the variable: `1`)", env=ENV_ALLOW_OPEN_KEY,
    ),
    Option(
        name="batch_delay", annotation="float", default=0.002, targets=_BOTH,
        help="seconds a record may wait in memory for others to be sent with it (one wake-up of the sender "
        "thread per burst); `0` sends each record as soon as the sender thread takes it",
        expects="a number of seconds from 0 to 1", check=_seconds_up_to(1.0),
    ),
    Option(
        name="flush_level", annotation="int | str", default=logging.WARNING, targets=_BOTH,
        help="records of this level or above are sent at once, with whatever waits before them",
        expects="a level name or number", check=_level(optional=False), shown="logging.WARNING",
    ),
    Option(
        name="flush_on_signal", annotation="bool", default=True, targets=_BOTH,
        help="made in the main thread while SIGTERM (or SIGINT) has its default disposition: flush every "
        "handler before dying of it; `False` leaves signals alone",
        expects="true or false",
    ),
    Option(
        name="control", annotation="bool | str", default=False, targets=_BOTH,
        help="take runtime level changes (`logfabric level`) from the broker's control endpoint: `True` is "
        "the endpoint's host on port 5560, a string the control endpoint itself; levels only, each reverting "
        "by itself (see Runtime levels)",
        expects="true or false, or an endpoint (the variable: `1` or an endpoint)", env="LOGFABRIC_CONTROL",
    ),
)  # fmt: skip


def for_target(target: Target) -> tuple[Option, ...]:
    """The options that apply to ``target``, in :data:`OPTIONS` order."""
    return tuple(option for option in OPTIONS if target in option.targets)


#: The options of ``ZmqHandler()``, by name.
HANDLER: Mapping[str, Option] = {option.name: option for option in for_target("handler")}
#: The options of ``install()``, by name.
INSTALL: Mapping[str, Option] = {option.name: option for option in for_target("install")}


def _where(option: Option) -> str:
    if option.targets == _BOTH:
        return "both"
    return ", ".join(_NAMES[target] for target in sorted(option.targets))


def _meaning(option: Option) -> str:
    if not option.env:
        return option.help
    if option.env_reader == "install":
        return f"{option.help} (`install()` reads `${option.env}` when not given)"
    return f"{option.help} (environment: `${option.env}`)"


def options_table() -> str:
    """The producer options as a Markdown table: option, where, value, default, meaning."""
    rows = ["| option | for | value | default | meaning |", "|---|---|---|---|---|"]
    for option in OPTIONS:
        if option.documented:
            default = f"`{option.shown_default}`"
            rows.append(f"| `{option.name}` | {_where(option)} | {option.expects} | {default} | {_meaning(option)} |")
    return "\n".join(rows)


def signature(target: Target, width: int = 100) -> str:
    """The signature of ``fabric.ZmqHandler`` or ``fabric.install`` as the README shows it, wrapped at ``width``."""
    call = f"fabric.{'ZmqHandler' if target == 'handler' else 'install'}("
    parts: list[str] = []
    for option in for_target(target):
        if not option.documented:
            continue
        if option.kind == "keyword" and "*" not in parts:
            parts.append("*")
        parts.append(option.name if target in option.required_by else f"{option.name}={option.shown_default}")
    lines, line = [], call
    for i, part in enumerate(parts):
        text = part + (")" if i == len(parts) - 1 else ",")
        if len(line) + len(text) + 1 > width and line.strip() and line != call:
            lines.append(line.rstrip())
            line = " " * len(call)
        line += text if line.endswith(("(", " ")) else " " + text
    lines.append(line)
    return "\n".join(lines)


def fill_docstring(doc: str, target: Target) -> str:
    """``doc`` with its :data:`ARGS_PLACEHOLDER` line replaced by :func:`docstring_args`, indented alike."""
    lines = doc.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == ARGS_PLACEHOLDER:
            lines[i] = docstring_args(target, line[: len(line) - len(line.lstrip())])
    return "".join(lines)


def docstring_args(target: Target, indent: str = "        ") -> str:
    """The ``Args:`` lines of a docstring for ``target``'s options: name, meaning, default, environment."""
    lines = []
    for option in for_target(target):
        if option.documented:
            env = f"; else ${option.env}" if option.env and option.env_reader in ("handler", target) else ""
            help_text = option.help.replace("`", "``")
            lines.append(f"{indent}{option.name}: {help_text} (default {option.shown_default}{env}).\n")
    return "".join(lines)
