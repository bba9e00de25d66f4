"""The subscriber options, defined once: ``ZmqListener``, ``subscribe()``, the config file and the commands.

Each :class:`Option` gives a name, its Python type, its default, a one-line
help, how a value is checked and converted, and where it applies: the
arguments of :class:`fabric.ZmqListener` and :func:`fabric.subscribe`, the
keys of the ``"listener"`` section that :func:`fabric.listen_from_config`
accepts, the flags ``logfabric tail`` and ``logfabric export otlp`` share, and
the environment variables read in their place. Those are derived from
:data:`OPTIONS`; the two signatures are written out (for readers and type
checkers) and a test holds them to this table.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fabric._history import parse_time
from fabric._intake import resolve_level
from fabric._record import Limits
from fabric.curve import ENV_ALLOW_OPEN_KEY, ENV_CLIENT_KEY, ENV_SERVER_KEY

__all__ = [
    "BY_NAME",
    "DEFAULT_ENDPOINT",
    "NO_DEFAULT",
    "OPTIONS",
    "Option",
    "Target",
    "file_keys",
    "file_table",
    "for_target",
    "refusal",
]

#: Where an option applies: ``ZmqListener`` (and so a config file's ``"listener"``
#: section), ``subscribe()``, or the subscriber commands (``tail``, ``export otlp``).
Target = Literal["listener", "subscribe", "command"]
Kind = Literal["positional", "variadic", "keyword"]

#: The default of an argument that has none (``endpoints``, ``*handlers``).
NO_DEFAULT: Any = inspect.Parameter.empty
#: Where the commands subscribe when given no endpoint and no ``$LOGFABRIC_SUBSCRIBE``.
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5558"

_LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(Limits) if f.init)


@dataclass(frozen=True)
class Option:
    """One subscriber option and everything derived from it."""

    name: str
    """The argument name, the config key, and the command's ``dest``."""
    annotation: str
    """The Python type, as the signatures spell it."""
    default: Any
    """The default in the signatures (:data:`NO_DEFAULT` for a positional argument)."""
    help: str
    """One line: what the option means."""
    expects: str
    """What a value must be, as the config key table says it (errors come from ``convert``)."""
    targets: frozenset[Target]
    """Where the option applies."""
    convert: Callable[[Any], Any]
    """Check a value (from a file or a keyword) and return the argument; ValueError says why not."""
    kind: Kind = "keyword"
    """How the signatures take it: ``positional``, ``variadic`` (``*handlers``) or keyword-only."""
    not_in_file: str = ""
    """Why a config file cannot set this listener option (empty: it can)."""
    file_default: str = ""
    """The default in a config file, when it is not the signature's."""
    flags: tuple[str, ...] = ()
    """The command's flags (or its positional name); empty: no flag."""
    cli: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """More ``argparse.add_argument`` keywords: ``metavar``, ``type``, ``action``, ``choices``, ``nargs``."""
    env: str = ""
    """The environment variable read when the option is not given (by the commands for
    ``endpoints``, by :func:`fabric.curve.client_keys` for the CURVE options)."""

    @property
    def in_file(self) -> bool:
        """Whether a config file's ``"listener"`` section may set this option."""
        return "listener" in self.targets and not self.not_in_file

    def why_not_in_file(self) -> str:
        """Why a config file cannot set this option."""
        if self.not_in_file:
            return self.not_in_file
        if "subscribe" in self.targets:
            return "for subscribe() and the commands only"
        return "for the commands only"


def _repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _expect(option: str) -> Callable[[object], ValueError]:
    return lambda value: ValueError(f"expected {option}, got {_repr(value)}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _strings(what: str, example: str, *, one: bool) -> Callable[[Any], Any]:
    bad = _expect(f"{'a string or ' if one else ''}a list of {what}, e.g. {example}")

    def convert(value: Any) -> Any:
        if isinstance(value, str) and one:
            return value
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad(value)
        return value

    return convert


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _expect("true or false")(value)
    return value


def _choice(name: str, *choices: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"unknown {name} {_repr(value)}: use {' or '.join(map(repr, choices))}")
        return value

    return convert


def _level(value: Any) -> int | None:
    if isinstance(value, bool) or not (value is None or isinstance(value, (int, str))):
        raise _expect('a level name or number, e.g. "WARNING" or 30')(value)
    return resolve_level(value)


def _limits(value: Any) -> Limits | None:
    if value is None or isinstance(value, Limits):
        return value
    if not isinstance(value, Mapping):
        raise _expect(f'a mapping of {", ".join(_LIMIT_FIELDS)} to whole numbers, e.g. {{"message": 4096}}')(value)
    unknown = sorted(str(k) for k in value if k not in _LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}: use {', '.join(_LIMIT_FIELDS)}")
    for key, cap in value.items():
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ValueError(f"{key}: expected a whole number of at least 0, got {_repr(cap)}")
    return Limits(**value)


def _seconds(optional: bool) -> Callable[[Any], Any]:
    bad = _expect(f"a number of seconds above 0{' or null' if optional else ''}")

    def convert(value: Any) -> Any:
        if value is None and optional:
            return None
        if not _is_number(value) or value <= 0:
            raise bad(value)
        return float(value)

    return convert


def _path(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise _expect("a file path or null")(value)
    return value


def _resolver(value: Any) -> Any:
    if value is not None and not callable(value):
        raise _expect("a callable resolver(host, port) or None")(value)
    return value


def _optional_text(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise _expect("a string or null")(value)
    return value


def _when(value: Any) -> Any:
    if value is not None:
        parse_time(value)  # ValueError says what a time may be
    return value


def _optional_bool(value: Any) -> Any:
    if value is not None and not isinstance(value, bool):
        raise _expect("true, false or null")(value)
    return value


def _history(value: Any) -> Any:
    if value is None:
        return None
    return _strings("history endpoints", '["tcp://broker:5559"]', one=True)(value)


def _count(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise _expect("a whole number of at least 1 or null")(value)
    return value


_BOTH: frozenset[Target] = frozenset({"listener", "subscribe"})
_ALL: frozenset[Target] = frozenset({"listener", "subscribe", "command"})
_LISTENER: frozenset[Target] = frozenset({"listener"})
_SUBSCRIBE_COMMAND: frozenset[Target] = frozenset({"subscribe", "command"})
_COMMAND: frozenset[Target] = frozenset({"command"})
_PATH = "str | os.PathLike[str] | None"
_WHEN = "str | float | datetime.datetime | None"
_FROM_PYTHON = "a history option: pass it to ZmqListener or as listen_from_config(..., since=...)"

#: Every subscriber option, in the order the commands list their flags.
OPTIONS: tuple[Option, ...] = (
    Option(
        name="endpoints", annotation="str | list[str] | tuple[str, ...]", default=NO_DEFAULT, targets=_ALL,
        help="where to subscribe",
        expects="an endpoint or a list of endpoints",
        convert=_strings("endpoints", '["tcp://127.0.0.1:5558"]', one=True),
        kind="positional", file_default="(required)", flags=("endpoints",), cli={"nargs": "*", "metavar": "ENDPOINT"},
        env="LOGFABRIC_SUBSCRIBE",
    ),
    Option(
        name="handlers", annotation="logging.Handler", default=NO_DEFAULT, targets=_LISTENER,
        help="local handlers that receive every record (dispatch handlers)",
        expects='a list of handler names this config defines, e.g. ["file"]',
        convert=_strings("handler names this config defines", '["file"]', one=False),
        kind="variadic", file_default="`[]`",
    ),
    Option(
        name="respect_handler_level", annotation="bool", default=True, targets=_LISTENER,
        help="skip handlers whose level is above the record's",
        expects="true or false",
        convert=_bool,
    ),
    Option(
        name="loggers", annotation="Iterable[str]", default=(), targets=_ALL,
        help="only records of these loggers and their descendants",
        expects="a logger prefix or a list of them",
        convert=_strings("logger prefixes", '["app.db"]', one=True),
        flags=("-l", "--logger"), cli={"action": "append", "metavar": "PREFIX"},
    ),
    Option(
        name="level", annotation="int | str | None", default=None, targets=_ALL,
        help="minimum level, a name or a number",
        expects="a level name or number",
        convert=_level,
        flags=("--level",),
    ),
    Option(
        name="services", annotation="Iterable[str]", default=(), targets=_ALL,
        help="only records from these services",
        expects="a service name or a list of them",
        convert=_strings("service names", '["checkout"]', one=True),
        flags=("-s", "--service"), cli={"action": "append", "metavar": "NAME"},
    ),
    Option(
        name="grep", annotation="str | None", default=None, targets=_COMMAND,
        help="only records whose message matches",
        expects="a regular expression",
        convert=_optional_text,
        flags=("-g", "--grep"), cli={"metavar": "REGEX"},
    ),
    Option(
        name="count", annotation="int | None", default=None, targets=_COMMAND,
        help="exit after N records",
        expects="a whole number of at least 1",
        convert=_count,
        flags=("-c", "--count"), cli={"type": int, "metavar": "N"},
    ),
    Option(
        name="timeout", annotation="float | None", default=None, targets=_SUBSCRIBE_COMMAND,
        help="exit after SECONDS without a record",
        expects="a number of seconds above 0",
        convert=_seconds(optional=True),
        flags=("--timeout",), cli={"type": float, "metavar": "SECONDS"},
    ),
    Option(
        name="last", annotation="int | None", default=None, targets=_ALL,
        help="first the newest N stored records that match (from the brokers' history)",
        expects="a whole number of at least 1",
        convert=_count, not_in_file=_FROM_PYTHON,
        flags=("-n", "--last"), cli={"type": int, "metavar": "N"},
    ),
    Option(
        name="since", annotation=_WHEN, default=None, targets=_ALL,
        help="first the stored records from then on: a duration before now (10m, 2h, 90s) or an ISO 8601 time",
        expects="a duration such as 10m, an ISO 8601 time, seconds since the epoch or a datetime",
        convert=_when, not_in_file=_FROM_PYTHON,
        flags=("--since",), cli={"metavar": "WHEN"},
    ),
    Option(
        name="until", annotation=_WHEN, default=None, targets=_SUBSCRIBE_COMMAND,
        help="stored records before then only, and no live ones (a time as for since)",
        expects="a time as for since",
        convert=_when,
        flags=("--until",), cli={"metavar": "WHEN"},
    ),
    Option(
        name="follow", annotation="bool", default=True, targets=_SUBSCRIBE_COMMAND,
        help="go on with live records after the history (--no-follow: end after it)",
        expects="true or false",
        convert=_bool,
        flags=("--no-follow",), cli={"action": "store_false"},
    ),
    Option(
        name="history", annotation="str | list[str] | tuple[str, ...] | None", default=None, targets=_ALL,
        help="the brokers' history endpoints (default: each endpoint's host on port 5559)",
        expects="an endpoint or a list of endpoints",
        convert=_history, not_in_file=_FROM_PYTHON,
        flags=("--history",), cli={"metavar": "EP"},
    ),
    Option(
        name="resume", annotation="bool | None", default=None, targets=_BOTH,
        help="after a broker restarts, fetch from its history what was missed (None: when history is used)",
        expects="true, false or null",
        convert=_optional_bool, not_in_file=_FROM_PYTHON,
    ),
    Option(
        name="mode", annotation="Literal['sub', 'pull']", default="sub", targets=_ALL,
        help="sub (a broker's egress) or pull",
        expects='"sub" or "pull"',
        convert=_choice("mode", "sub", "pull"),
        flags=("--mode",), cli={"choices": ("sub", "pull")},
    ),
    Option(
        name="bind", annotation="bool", default=False, targets=_ALL,
        help="bind the endpoints instead of connecting",
        expects="true or false",
        convert=_bool,
        flags=("--bind",), cli={"action": "store_true"},
    ),
    Option(
        name="dispatch", annotation="Dispatch", default="handlers", targets=_LISTENER,
        help="where records go: to the handlers, or through the local logging tree (loggers)",
        expects='"handlers" or "loggers"',
        convert=_choice("dispatch", "handlers", "loggers"),
        file_default='`"loggers"` (`"handlers"` with `handlers`)',
    ),
    Option(
        name="limits", annotation="Limits | None", default=None, targets=_BOTH,
        help="caps for untrusted text (fabric.codec.Limits)",
        expects=f"a mapping of any of {', '.join(_LIMIT_FIELDS)} to whole numbers",
        convert=_limits,
        file_default="the Limits defaults",
    ),
    Option(
        name="resolver", annotation="Resolver | None", default=None, targets=_BOTH,
        help="resolver(host, port) for dns+tcp:// names (default getaddrinfo)",
        expects="a callable",
        convert=_resolver,
        not_in_file="a callable: pass it as listen_from_config(..., resolver=...) or to ZmqListener",
    ),
    Option(
        name="resolve_interval", annotation="float", default=10.0, targets=_BOTH,
        help="seconds between resolutions of dns+tcp:// names",
        expects="a number of seconds above 0",
        convert=_seconds(optional=False),
    ),
    Option(
        name="curve_server_key", annotation=_PATH, default=None, targets=_ALL,
        help="the broker's public key file, for CurveZMQ",
        expects="a file path",
        convert=_path,
        flags=("--curve-server-key",), cli={"metavar": "FILE"}, env=ENV_SERVER_KEY,
    ),
    Option(
        name="curve_client_key", annotation=_PATH, default=None, targets=_ALL,
        help="your secret key file (NAME.key_secret), for CurveZMQ",
        expects="a file path",
        convert=_path,
        flags=("--curve-client-key",), cli={"metavar": "FILE"}, env=ENV_CLIENT_KEY,
    ),
    Option(
        name="curve_allow_open_key", annotation="bool", default=False, targets=_BOTH,
        help="accept a secret key file that group or others may read",
        expects="true or false",
        convert=_bool,
        env=ENV_ALLOW_OPEN_KEY,
    ),
)  # fmt: skip

#: The options by name.
BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}


def for_target(target: Target) -> tuple[Option, ...]:
    """The options that apply to ``target``, in :data:`OPTIONS` order."""
    return tuple(option for option in OPTIONS if target in option.targets)


def file_keys() -> frozenset[str]:
    """The keys a config file's ``"listener"`` section may set."""
    return frozenset(option.name for option in OPTIONS if option.in_file)


def refusal(names: Iterable[str]) -> str:
    """One line saying why listener settings ``names`` are refused, and which keys a file can set."""
    names = sorted(set(names))
    unknown = [name for name in names if name not in BY_NAME]
    parts = [f"unknown listener setting(s) {', '.join(unknown)}"] if unknown else []
    for name in names:
        if name in BY_NAME:
            option = BY_NAME[name]
            what = "cannot come from a file" if "listener" in option.targets else "is not a listener option"
            parts.append(f"{name} {what} ({option.why_not_in_file()})")
    return f"{'; '.join(parts)}; a file can set: {', '.join(sorted(file_keys()))}"


def _json(value: object) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def file_table() -> str:
    """The ``"listener"`` keys as a Markdown table: key, value, default, meaning."""
    rows = ["| key | value | default | meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        if option.in_file:
            default = option.file_default or f"`{_json(option.default)}`"
            meaning = (
                f"{option.help} (environment: `${option.env}`)"
                if option.env and option.kind == "keyword"
                else option.help
            )
            rows.append(f"| `{option.name}` | {option.expects} | {default} | {meaning} |")
    return "\n".join(rows)
