"""How each :class:`~broker.config.BrokerConfig` field becomes a flag, a variable and a value.

Every field carries an :class:`Option` in its metadata (help, metavar, flag
group, and what ``logfabric broker`` uses if that differs from the field's
default). Its flag is ``--`` plus the name with dashes, its variable
``LOGFABRIC_BROKER_`` plus the name in capitals; how a string or a file's value
is converted follows the field's type. Nothing here is written per field.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import Field
from typing import Any

from broker._errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "UNSET",
    "Option",
    "add_flags",
    "coerce",
    "env_var",
    "flag_of",
    "flags_of",
    "from_env",
    "option",
    "service_defaults",
]

ENV_PREFIX = "LOGFABRIC_BROKER_"
"""Every setting's variable is this plus the field's name in capitals."""

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
_OFF = ("", "off", "none", "None")


class _Unset:
    """The type of :data:`UNSET`."""

    def __repr__(self) -> str:
        return "UNSET"


#: An :attr:`Option.service` that is not set: ``logfabric broker`` uses the field's default.
UNSET: Any = _Unset()


@dataclasses.dataclass(frozen=True)
class Option:
    """How one setting shows on the command line; its name and type say the rest."""

    help: str
    """The flag's help; ``{default}`` becomes the default ``logfabric broker`` uses."""
    metavar: str | None = None
    group: str | None = None
    """Title of the ``--help`` section the flag is listed in (None: the main one)."""
    service: Any = UNSET
    """What ``logfabric broker`` (:meth:`BrokerConfig.load`) uses when nothing sets it, if not the field's default."""


def option(
    help: str, metavar: str | None = None, *, group: str | None = None, service: Any = UNSET
) -> dict[str, Option]:
    """Field metadata: ``field(default=..., metadata=option(...))``."""
    return {"option": Option(help, metavar, group, service)}


def _option(f: Field[Any]) -> Option:
    opt = f.metadata.get("option")
    if not isinstance(opt, Option):
        raise TypeError(f"BrokerConfig.{f.name} has no Option in its metadata")
    return opt


def flag_of(name: str) -> str:
    """The command-line flag of setting ``name``."""
    return "--" + name.replace("_", "-")


def env_var(name: str) -> str:
    """The environment variable of setting ``name``."""
    return ENV_PREFIX + name.upper()


def _kind(cls: type, name: str) -> tuple[type, bool]:
    """The field's value type, and whether None (off) is allowed."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return inner, True
    return typing.get_origin(hint) or hint, False


def service_defaults(cls: type) -> dict[str, Any]:
    """The settings ``logfabric broker`` starts from where they differ from the dataclass defaults."""
    return {f.name: _option(f).service for f in dataclasses.fields(cls) if _option(f).service is not UNSET}


def coerce(cls: type, name: str, value: Any) -> Any:
    """``value`` (a string from a variable, or a file's value) as setting ``name`` of ``cls`` takes it."""
    kind, optional = _kind(cls, name)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(f"{name} must be true or false (1 or 0), got {value!r}")
    if kind is tuple:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, (list, tuple)):
            return tuple(value)
        raise ConfigError(f"{name} must be a list of endpoints, got {value!r}")
    if optional and value in _OFF:
        return None
    if kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    return value


def from_env(cls: type, env: Mapping[str, str], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings ``LOGFABRIC_BROKER_*`` variables set (a misspelt one stays, under its own name, to be refused)."""
    names = {env_var(f.name): f.name for f in dataclasses.fields(cls)}
    return {
        names.get(key, key[len(ENV_PREFIX) :].lower()): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key not in skip
    }


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of ``cls``; each defaults to None (unset), so files and variables show through."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)} | service_defaults(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        opt = _option(f)
        where: Any = parser
        if opt.group is not None:
            where = groups.get(opt.group) or groups.setdefault(opt.group, parser.add_argument_group(opt.group))
        default = defaults[f.name]
        shown = f"{default:g}" if isinstance(default, float) else default
        kind, _ = _kind(cls, f.name)
        extra: dict[str, Any] = {"help": opt.help.format(default=shown)}
        if kind is bool:
            extra.update(action="store_true", default=None)
        else:
            extra["metavar"] = opt.metavar
            if kind is tuple:
                extra["action"] = "append"
            elif kind in (int, float):
                extra["type"] = kind
        where.add_argument(flag_of(f.name), dest=f.name, **extra)


def flags_of(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings parsed flags give (None where a flag was not given)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
