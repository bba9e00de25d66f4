"""Subscriber configuration: one dictConfig-style file for a listener and its local handlers."""

from __future__ import annotations

import configparser
import json
import logging
import logging.config
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fabric import _subscriber_options
from fabric._errors import ConfigError
from fabric.listener import ZmqListener

__all__ = ["ConfigError", "listen_from_config", "load_logging_config"]

#: The keys a config file's "listener" section may set (see fabric._subscriber_options).
_LISTENER_KEYS = _subscriber_options.file_keys()


def load_logging_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any] | Path:
    """Read a dictConfig mapping from a dict or a JSON/YAML file; INI files come back as a Path.

    Raises :class:`ConfigError` with a one-line reason for a missing or invalid file.
    """
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    if suffix in (".ini", ".cfg", ".conf"):
        try:
            configparser.ConfigParser().read_string(text)
        except configparser.Error as exc:
            raise ConfigError(f"{str(path)!r} is not a valid INI file: {str(exc).splitlines()[0]}") from None
        return path
    if suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise ConfigError(f"{str(path)!r} is YAML but PyYAML is not installed: pip install pyyaml") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{str(path)!r} is not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} must hold a mapping (a dictConfig dictionary)")
    return data


def apply_logging_config(config: dict[str, Any] | Path) -> None:
    """Apply a loaded config (dictConfig, or fileConfig for INI), with a one-line error."""
    try:
        if isinstance(config, Path):
            logging.config.fileConfig(config, disable_existing_loggers=False)
        else:
            config.setdefault("version", 1)
            config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
    except (ValueError, TypeError, KeyError, AttributeError, ImportError, OSError) as exc:
        raise ConfigError(f"invalid logging configuration: {exc}") from None


def listen_from_config(source: str | Path | Mapping[str, Any], **overrides: Any) -> ZmqListener:
    """Configure local logging from ``source`` and return a started :class:`ZmqListener`.

    ``source`` is a dictConfig dictionary (or a JSON/YAML file holding one) with
    one extra top-level key, ``"listener"``, holding ``ZmqListener`` arguments::

        {
          "version": 1,
          "handlers": {"file": {"class": "logging.handlers.RotatingFileHandler",
                                "filename": "fleet.log", "maxBytes": 1000000, "backupCount": 5}},
          "root": {"handlers": ["file"], "level": "DEBUG"},
          "listener": {"endpoints": ["tcp://127.0.0.1:5558"], "level": "INFO"}
        }

    By default records go through the local logging tree (``dispatch="loggers"``),
    so the loggers' handlers decide where they land. ``"handlers": ["file"]``
    instead sends every record straight to the named handlers. The section
    takes every ``ZmqListener`` option a file can hold (:data:`_LISTENER_KEYS`):
    ``"limits"`` as a mapping of :class:`fabric.codec.Limits` fields, e.g.
    ``{"message": 4096}``, ``"resolve_interval"`` in seconds, and so on. For
    CurveZMQ, add ``"curve_server_key"`` and ``"curve_client_key"`` (key file
    paths), and ``"curve_allow_open_key": true`` to accept a secret key file that
    group or others may read. ``overrides`` replace keys of the section, and may
    also give what a file cannot hold: ``resolver``. A bad key or value raises
    :class:`ConfigError` naming the key and what it expects.
    """
    loaded = load_logging_config(source)
    if isinstance(loaded, Path):
        raise ConfigError("listen_from_config needs a dictConfig mapping (JSON, YAML or a dict), not an INI file")
    settings = _listener_settings(loaded.pop("listener", None) or {}, overrides)
    if "endpoints" not in settings:
        raise ConfigError('the "listener" section needs "endpoints", e.g. ["tcp://127.0.0.1:5558"]')
    apply_logging_config(loaded)
    names = settings.pop("handlers", None)
    handlers: list[logging.Handler] = []
    if names:
        known = logging._handlers  # type: ignore[attr-defined]  # the names dictConfig registered
        missing = [n for n in names if n not in known]
        if missing:
            raise ConfigError(f"listener handlers not defined in the config: {', '.join(missing)}")
        handlers = [known[n] for n in names]
        settings.setdefault("dispatch", "handlers")
    else:
        settings.setdefault("dispatch", "loggers")
    endpoints = settings.pop("endpoints")
    try:
        listener = ZmqListener(endpoints, *handlers, **settings)
        listener.start()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return listener


def _listener_settings(section: object, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Check the "listener" section and the keyword overrides; return them converted, overrides winning.

    The section may set the keys in :data:`_LISTENER_KEYS`; a keyword may also
    set what a file cannot hold (a ``resolver`` callable). Raises
    :class:`ConfigError` naming the key and what it expects.
    """
    if not isinstance(section, Mapping):
        raise ConfigError(f'the "listener" section must be a mapping of settings, got {type(section).__name__}')
    listener_keys = {option.name for option in _subscriber_options.for_target("listener")}
    refused = [key for key in section if key not in _LISTENER_KEYS]
    refused += [key for key in overrides if key not in listener_keys]
    if refused:
        raise ConfigError(_subscriber_options.refusal(map(str, refused)))
    settings: dict[str, Any] = {}
    for key, value in {**section, **overrides}.items():
        try:
            settings[key] = _subscriber_options.BY_NAME[key].convert(value)
        except ValueError as exc:
            raise ConfigError(f'listener setting "{key}": {exc}') from None
    return settings
