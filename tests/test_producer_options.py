"""The producer options, defined once in ``fabric._producer_options``, and everything derived from them.

``ZmqHandler()`` and ``install()`` keep explicit signatures; these tests hold
them to the definition, with the checks, the environment variables and the
README's table. What is sent goes over real sockets.
"""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path
from typing import Any

import pytest

import fabric
import fabric.curve
from fabric import _producer_options
from fabric._producer_options import HANDLER, INSTALL, OPTIONS, for_target, options_table, signature
from tests.helpers.net import ROOT

KINDS = {
    "positional-only": inspect.Parameter.POSITIONAL_ONLY,
    "positional": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "keyword": inspect.Parameter.KEYWORD_ONLY,
}
RECORD = {"name": "app", "msg": "hi", "levelno": 20, "levelname": "INFO"}


def parameters(function: Any, target: str) -> list[inspect.Parameter]:
    """The parameters of ``function`` (``self`` left out for the handler)."""
    params = list(inspect.signature(function).parameters.values())
    return params[1:] if target == "handler" else params


@pytest.fixture
def no_fabric_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No test inherits a producer option from the environment running the suite."""
    for option in OPTIONS:
        if option.env:
            monkeypatch.delenv(option.env, raising=False)
    return monkeypatch


@pytest.fixture
def attached(make_logger: Any) -> Any:
    """install() onto an isolated logger; the handlers it attached are closed at teardown."""
    loggers: list[logging.Logger] = []

    def install(*args: Any, **kwargs: Any) -> fabric.ZmqHandler:
        logger = kwargs.setdefault("logger", make_logger())
        loggers.append(logger)
        return fabric.install(*args, **kwargs)

    yield install
    for logger in loggers:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


class TestSignatures:
    """ZmqHandler() and install() take exactly the options the definition gives them, in its order."""

    @pytest.mark.parametrize(
        ("target", "function"),
        [("handler", fabric.ZmqHandler.__init__), ("install", fabric.install)],
        ids=["ZmqHandler", "install"],
    )
    def test_parameters_match_the_definition(self, target: str, function: Any) -> None:
        """Names, kinds, defaults and annotations equal the definition's, in the definition's order."""
        got = [(p.name, p.kind, p.default, p.annotation) for p in parameters(function, target)]
        want = [(o.name, KINDS[o.kind], o.default, o.annotation) for o in for_target(target)]  # type: ignore[arg-type]
        assert got == want

    def test_every_option_is_described(self) -> None:
        """Each option has a target, a one-line help and what a value must be; names are unique per target."""
        assert len(HANDLER) == len(for_target("handler")) and len(INSTALL) == len(for_target("install"))
        for option in OPTIONS:
            assert option.targets and option.help and option.expects, option.name
            assert "\n" not in option.help and "|" not in option.help, option.name

    def test_docstring_lists_every_documented_option(self) -> None:
        """ZmqHandler's docstring has one Args line per option, from the definition."""
        doc = fabric.ZmqHandler.__doc__ or ""
        assert _producer_options.ARGS_PLACEHOLDER not in doc
        for option in for_target("handler"):
            # 3.13+ dedents docstrings, so the Args lines are indented 4 or 8 spaces.
            listed = re.search(rf"\n {{4,8}}{option.name}: ", doc) is not None
            assert listed == option.documented, option.name


class TestReadme:
    """README.md's "ZmqHandler options" section holds what is generated from the definition."""

    def test_readme_holds_the_table(self) -> None:
        """The options table, with every variable read in an option's place."""
        readme = (ROOT / "README.md").read_text()
        assert options_table() in readme
        for option in OPTIONS:
            assert not option.env or f"`${option.env}`" in options_table(), option.name

    @pytest.mark.parametrize("target", ["handler", "install"])
    def test_readme_holds_the_signatures(self, target: Any) -> None:
        """The signatures of ZmqHandler() and install(), as the README shows them."""
        assert f"```python\n{signature(target)}\n```" in (ROOT / "README.md").read_text()


class TestChecks:
    """A bad option is one fabric.ConfigError (a ValueError) naming it, raised at construction."""

    @pytest.mark.parametrize(
        ("options", "mentions"),
        [
            ({"mode": "sub"}, "unknown mode 'sub': use 'push' or 'pub'"),
            ({"codec": "xml"}, "unknown codec 'xml': use one of "),
            ({"level": "LOUD"}, "unknown level 'LOUD'"),
            ({"hwm": 0}, "hwm=0 would let the queue grow without limit"),
            ({"hwm": -1}, "hwm must not be negative, got -1"),
            ({"buffer_bytes": 0}, "buffer_bytes must be positive"),
            ({"send_timeout": -1}, "send_timeout must not be negative, got -1"),
            ({"linger": -0.5}, "linger must not be negative, got -0.5"),
            ({"endpoint": "broker:5557"}, "invalid endpoint 'broker:5557'"),
        ],
        ids=lambda v: "-".join(map(str, v)) if isinstance(v, dict) else None,
    )
    @pytest.mark.parametrize("through", ["ZmqHandler", "install"])
    def test_bad_value(self, no_fabric_env: Any, attached: Any, through: str, options: Any, mentions: str) -> None:
        """ZmqHandler() and install() refuse the value with the same one-line message; install attaches nothing."""
        options = {"endpoint": "tcp://127.0.0.1:1", **options}
        with pytest.raises(fabric.ConfigError) as info:
            if through == "ZmqHandler":
                fabric.ZmqHandler(**options)
            else:
                attached(**options)
        assert mentions in str(info.value)
        assert "\n" not in str(info.value)
        assert isinstance(info.value, ValueError)

    def test_every_check_is_made(self, endpoint: str) -> None:
        """Each option with a check refuses a bad value through ZmqHandler(): the checks are the table's."""
        bad = {"mode": "sub", "codec": "xml", "level": "LOUD", "hwm": 0, "buffer_bytes": 0}
        bad |= {"send_timeout": -1, "linger": -1, "endpoint": "nowhere", "batch_delay": 2, "flush_level": "LOUD"}
        assert {n for n, o in HANDLER.items() if o.check is not None} == set(bad)
        for name, value in bad.items():
            options = {"endpoint": endpoint, name: value}
            with pytest.raises(fabric.ConfigError, match=name if name != "endpoint" else "nowhere"):
                fabric.ZmqHandler(**options)

    def test_install_checks_the_logger_level_before_attaching(
        self, no_fabric_env: Any, endpoint: str, make_logger: Any
    ) -> None:
        """install(level="LOUD") raises before a handler is made or attached."""
        logger = make_logger()
        with pytest.raises(fabric.ConfigError, match="unknown level 'LOUD'"):
            fabric.install(endpoint, level="LOUD", logger=logger)
        assert logger.handlers == []

    def test_no_endpoint_names_the_variable(self, no_fabric_env: Any, make_logger: Any) -> None:
        """Without an endpoint or its variable, install() says which variable to set."""
        with pytest.raises(fabric.ConfigError, match=f"or set {INSTALL['endpoint'].env}$"):
            fabric.install(logger=make_logger())


class TestEnvironment:
    """The variables the definition names are the ones read, by install() and by the handler."""

    def test_install_reads_its_variables(
        self, no_fabric_env: Any, endpoint: str, make_listener: Any, capture: Any, attached: Any
    ) -> None:
        """Every variable install() reads in an option's place sends to where it says, over a real socket."""
        values = {"endpoint": endpoint, "service": "from-env"}
        for option in OPTIONS:
            if option.env and option.name in values:
                no_fabric_env.setenv(option.env, values[option.name])
        make_listener(endpoint, capture, mode="pull", bind=True)
        handler = attached()
        handler.handle(logging.makeLogRecord(RECORD))
        assert capture.wait_for(1)
        assert (handler.endpoint, capture.records[0].service) == (endpoint, "from-env")

    def test_the_handler_reads_the_service_variable(
        self, no_fabric_env: Any, endpoint: str, make_listener: Any, capture: Any
    ) -> None:
        """ZmqHandler() (so dictConfig too) takes $LOGFABRIC_SERVICE; the endpoint's variable is install()'s only."""
        no_fabric_env.setenv(HANDLER["service"].env, "handler-env")
        no_fabric_env.setenv(INSTALL["endpoint"].env, endpoint)
        with pytest.raises(fabric.ConfigError, match="needs one endpoint"):
            fabric.ZmqHandler()
        make_listener(endpoint, capture, mode="pull", bind=True)
        handler = fabric.ZmqHandler(endpoint)
        try:
            handler.handle(logging.makeLogRecord(RECORD))
            assert capture.wait_for(1)
            assert capture.records[0].service == "handler-env"
        finally:
            handler.close()

    @pytest.mark.parametrize("how", ["keyword", "variable"])
    def test_an_open_key_is_accepted_by_keyword_or_variable(
        self, no_fabric_env: Any, tmp_path: Path, make_logger: Any, attached: Any, how: str
    ) -> None:
        """curve_allow_open_key=True, or its variable set to 1, makes ZmqHandler and install() accept a 0640 key."""
        server, _ = fabric.curve.generate("broker", tmp_path)
        _, secret = fabric.curve.generate("app", tmp_path)
        secret.chmod(0o640)
        keys = {"curve_server_key": server, "curve_client_key": secret}
        with pytest.raises(fabric.ConfigError, match="chmod 600"):
            fabric.ZmqHandler("tcp://127.0.0.1:1", **keys)
        if how == "keyword":
            keys["curve_allow_open_key"] = True
        else:
            no_fabric_env.setenv(HANDLER["curve_allow_open_key"].env, "1")
        handler = fabric.ZmqHandler("tcp://127.0.0.1:1", **keys)
        handler.close()
        assert handler.curve is not None
        assert attached("tcp://127.0.0.1:1", **keys).curve is not None


class TestErrorType:
    """fabric has one public error type, ConfigError, a ValueError; every public name is documented."""

    def test_one_error_type(self) -> None:
        """ConfigError is the one configuration error in fabric.__all__ (MalformedRecord is decode()'s, about data)."""
        errors = [
            n
            for n in fabric.__all__
            if isinstance(getattr(fabric, n), type) and issubclass(getattr(fabric, n), BaseException)
        ]
        assert errors == ["ConfigError", "MalformedRecord"]
        assert issubclass(fabric.ConfigError, ValueError)
        assert issubclass(fabric.curve.CurveError, fabric.ConfigError)
        assert fabric.config.ConfigError is fabric.ConfigError
        assert not hasattr(fabric, "CurveError") and not hasattr(fabric, "CurveKeys")

    def test_a_key_file_error_is_a_config_error(self, tmp_path: Path) -> None:
        """A missing key file raises the package's ConfigError (as CurveError), naming the file."""
        with pytest.raises(fabric.ConfigError, match="does not exist"):
            fabric.ZmqHandler("tcp://127.0.0.1:1", curve_server_key=tmp_path / "no.key", curve_client_key="x")

    def test_every_public_name_is_documented(self) -> None:
        """Each name in fabric.__all__ exists, has a docstring (but __version__), and is named in the package's."""
        for name in fabric.__all__:
            value = getattr(fabric, name)
            if name != "__version__":
                assert inspect.getdoc(value), name
            assert f"{name}`" in (fabric.__doc__ or ""), name
