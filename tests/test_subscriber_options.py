"""The subscriber options, defined once in ``fabric._subscriber_options``, and everything derived from them.

``ZmqListener()`` and ``subscribe()`` keep explicit signatures; these tests
hold them to the definition, with the config file's keys, the commands' flags
and the environment they read. What is received comes over real sockets.
"""

from __future__ import annotations

import argparse
import inspect
import logging
from pathlib import Path
from typing import Any

import pytest

import fabric
import fabric.config
from fabric import export, tail
from fabric._subscriber_args import add_subscriber_arguments, open_subscription
from fabric._subscriber_options import BY_NAME, OPTIONS, file_keys, file_table, for_target
from fabric.codec import Limits
from tests.helpers.net import ROOT

KINDS = {
    "positional": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "variadic": inspect.Parameter.VAR_POSITIONAL,
    "keyword": inspect.Parameter.KEYWORD_ONLY,
}


def parameters(function: Any, target: str) -> list[inspect.Parameter]:
    """The parameters of ``function`` (``self`` left out for the listener)."""
    params = list(inspect.signature(function).parameters.values())
    return params[1:] if target == "listener" else params


class TestSignatures:
    """ZmqListener() and subscribe() take exactly the options the definition gives them."""

    @pytest.mark.parametrize(
        ("target", "function"),
        [("listener", fabric.ZmqListener.__init__), ("subscribe", fabric.subscribe)],
        ids=["ZmqListener", "subscribe"],
    )
    def test_parameters_match_the_definition(self, target, function):
        """Names, kinds, defaults and annotations of the signature equal the definition's, positionals in order."""
        params = parameters(function, target)
        options = for_target(target)
        got = {p.name: (p.kind, p.default, p.annotation) for p in params}
        want = {o.name: (KINDS[o.kind], o.default, o.annotation) for o in options}
        assert got == want
        assert [p.name for p in params if p.kind != inspect.Parameter.KEYWORD_ONLY] == [
            o.name for o in options if o.kind != "keyword"
        ]

    def test_every_option_applies_somewhere(self):
        """Each option has a target, a help line and a description of its values; names are unique."""
        assert len(BY_NAME) == len(OPTIONS)
        for option in OPTIONS:
            assert option.targets and option.help and option.expects, option.name
            assert "\n" not in option.help, option.name


class TestConfigKeys:
    """The keys of a config file's "listener" section are derived from the definition."""

    def test_listener_keys_are_every_option_a_file_can_hold(self):
        """A file can set every listener option but the resolver callable; limits and resolve_interval included."""
        assert file_keys() == fabric.config._LISTENER_KEYS
        assert file_keys() == {
            *("endpoints", "handlers", "respect_handler_level", "loggers", "level", "services", "mode", "bind"),
            *("dispatch", "limits", "resolve_interval", "curve_server_key", "curve_client_key"),
            "curve_allow_open_key",
        }

    def test_readme_lists_the_keys(self):
        """README.md's subscriber configuration section holds the table generated from the definition."""
        assert file_table() in (ROOT / "README.md").read_text()

    def test_values_from_python_are_accepted(self):
        """A keyword override may give Python values: a Limits, a Path, a level number, a resolver."""
        limits = Limits(message=5)
        assert BY_NAME["limits"].convert(limits) is limits
        assert BY_NAME["limits"].convert({"message": 5, "extras": 0}) == Limits(message=5, extras=0)
        assert BY_NAME["curve_server_key"].convert(Path("broker.key")) == Path("broker.key")
        assert BY_NAME["level"].convert("warning") == logging.WARNING
        assert BY_NAME["resolve_interval"].convert(1) == 1.0
        assert BY_NAME["resolver"].convert(print) is print


@pytest.fixture
def refuse_logging_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if listen_from_config gets as far as applying the logging configuration."""

    def refuse(config: object) -> None:
        raise AssertionError("the bad listener setting was not refused before logging was configured")

    monkeypatch.setattr(fabric.config, "apply_logging_config", refuse)


@pytest.mark.usefixtures("refuse_logging_changes")
class TestBadValues:
    """A bad listener key or value is a one-line ConfigError naming the key and what it expects."""

    @pytest.mark.parametrize(
        ("setting", "mentions"),
        [
            ({"limits": {"message": -1}}, '"limits": message: expected a whole number of at least 0, got -1'),
            ({"limits": {"message": True}}, '"limits": message: expected a whole number of at least 0, got True'),
            ({"limits": {"mesage": 10}}, '"limits": unknown field(s) mesage: use message, traceback, field'),
            ({"limits": 4096}, '"limits": expected a mapping of message, traceback, field, extras, extra_value'),
            ({"resolve_interval": "10s"}, "\"resolve_interval\": expected a number of seconds above 0, got '10s'"),
            ({"resolve_interval": 0}, '"resolve_interval": expected a number of seconds above 0, got 0'),
            ({"bind": "yes"}, "\"bind\": expected true or false, got 'yes'"),
            ({"curve_allow_open_key": 1}, '"curve_allow_open_key": expected true or false, got 1'),
            ({"mode": "push"}, "\"mode\": unknown mode 'push': use 'sub' or 'pull'"),
            ({"dispatch": "tree"}, "\"dispatch\": unknown dispatch 'tree': use 'handlers' or 'loggers'"),
            ({"level": True}, '"level": expected a level name or number'),
            ({"level": "LOUD"}, "\"level\": unknown level 'LOUD'"),
            ({"loggers": ["app", 1]}, '"loggers": expected a string or a list of logger prefixes'),
            ({"handlers": "file"}, '"handlers": expected a list of handler names this config defines'),
            ({"curve_server_key": 5}, '"curve_server_key": expected a file path or null, got 5'),
            ({"endpoints": {"url": "tcp://127.0.0.1:1"}}, '"endpoints": expected a string or a list of endpoints'),
        ],
        ids=lambda v: "-".join(map(str, v)) if isinstance(v, dict) else None,
    )
    def test_bad_value(self, setting, mentions):
        """The error names the key and says what it expects."""
        section = {"endpoints": ["tcp://127.0.0.1:1"], **setting}
        with pytest.raises(fabric.ConfigError) as info:
            fabric.listen_from_config({"version": 1, "listener": section})
        assert str(info.value).startswith(f'listener setting "{next(iter(setting))}": ')
        assert mentions in str(info.value)
        assert "\n" not in str(info.value)

    @pytest.mark.parametrize(
        ("key", "value", "why"),
        [
            ("resolver", "dns", "a callable: pass it as listen_from_config(..., resolver=...) or to ZmqListener"),
            ("timeout", 5, "for subscribe() and the commands only"),
            ("grep", "error", "for the commands only"),
        ],
    )
    def test_option_a_file_cannot_hold(self, key, value, why):
        """An option that makes no sense in a file is refused, saying why; the keys a file can set are listed."""
        section = {"endpoints": ["tcp://127.0.0.1:1"], key: value}
        with pytest.raises(fabric.ConfigError) as info:
            fabric.listen_from_config({"version": 1, "listener": section})
        what = "cannot come from a file" if key == "resolver" else "is not a listener option"
        assert f"{key} {what} ({why})" in str(info.value)
        assert "a file can set: bind, curve_allow_open_key, " in str(info.value)
        assert "limits" in str(info.value) and "resolve_interval" in str(info.value)

    def test_keyword_override_for_subscribe_only_is_refused(self):
        """A keyword that is not a listener option (timeout) is refused like a file key."""
        with pytest.raises(fabric.ConfigError, match=r"timeout is not a listener option \(for subscribe\(\)"):
            fabric.listen_from_config({"version": 1, "listener": {"endpoints": ["tcp://127.0.0.1:1"]}}, timeout=1.0)

    def test_keyword_override_is_checked(self):
        """A keyword override is checked like the file's value."""
        with pytest.raises(fabric.ConfigError, match=r'^listener setting "limits": unknown field'):
            fabric.listen_from_config({"listener": {"endpoints": ["tcp://127.0.0.1:1"]}}, limits={"size": 1})

    def test_section_that_is_not_a_mapping(self):
        """A "listener" section that is a list says it must be a mapping."""
        with pytest.raises(fabric.ConfigError, match='the "listener" section must be a mapping of settings, got list'):
            fabric.listen_from_config({"version": 1, "listener": ["tcp://127.0.0.1:1"]})


class TestCommandFlags:
    """The flags tail and export share come from the definition, and mean what the options mean."""

    def test_flags_are_the_options_with_flags(self):
        """add_subscriber_arguments adds one argument per command option: its flags, dest and default."""
        parser = argparse.ArgumentParser()
        add_subscriber_arguments(parser)
        actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        assert [(a.dest, tuple(a.option_strings) or (a.dest,)) for a in actions] == [
            (o.name, o.flags) for o in for_target("command")
        ]
        defaults = vars(parser.parse_args([]))
        for option in for_target("command"):
            if option.kind == "keyword":
                assert defaults[option.name] == (list(option.default) if option.default == () else option.default)

    def test_help_names_the_environment_variables(self):
        """The help of a flag read from the environment names the variable."""
        text = tail.build_parser().format_help() + export.build_parser().format_help()
        for name in ("LOGFABRIC_SUBSCRIBE", "LOGFABRIC_CURVE_SERVER_KEY", "LOGFABRIC_CURVE_CLIENT_KEY"):
            assert text.count(f"${name}") == 2, name

    def test_no_endpoint_subscribes_to_logfabric_subscribe(self, monkeypatch, endpoint, make_handler, make_logger):
        """Without an ENDPOINT, the command binds $LOGFABRIC_SUBSCRIBE and receives what a producer pushes there."""
        monkeypatch.setenv(BY_NAME["endpoints"].env, endpoint)
        args = tail.build_parser().parse_args(["--mode", "pull", "--bind", "--timeout", "5", "--level", "info"])
        records, pattern = open_subscription(args)
        with records:
            assert pattern is None
            make_logger(None, make_handler(endpoint)).info("from the environment's endpoint")
            record = next(records)
        assert record.getMessage() == "from the environment's endpoint"
        assert records.bound == [endpoint]
