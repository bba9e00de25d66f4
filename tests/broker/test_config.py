"""Broker settings: defaults, files (JSON and TOML), LOGFABRIC_BROKER_* variables, flags, errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from broker import Broker, BrokerConfig, ConfigError
from tests.helpers.net import child_env, free_ports, http_get
from tests.helpers.waiting import poll_until

pytestmark = pytest.mark.timeout(60)

KNOWN = sorted(f.name for f in fields(BrokerConfig))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class TestDefaults:
    """What a broker uses when nothing is configured."""

    def test_documented_defaults(self) -> None:
        """Ports 5556/5557/5558 on every interface, HTTP on 9102, no pipeline or upstream, 10 s drain."""
        c = BrokerConfig.load(env={})
        assert (c.pub_ingest, c.push_ingest, c.egress) == ("tcp://*:5556", "tcp://*:5557", "tcp://*:5558")
        assert c.pipeline is None and c.upstream == ()
        assert c.http == "0.0.0.0:9102"
        assert c.drain_timeout == 10.0
        assert c.hwm == 100_000
        assert c.max_message == 1024 * 1024


class TestPrecedence:
    """Flags beat variables, variables beat the file, the file beats the defaults."""

    def test_flags_beat_env_beat_file_beat_defaults(self, tmp_path: Path) -> None:
        """Each setting comes from the strongest source that sets it."""
        file = write(
            tmp_path / "broker.json",
            json.dumps({"egress": "tcp://127.0.0.1:7001", "push_ingest": "tcp://127.0.0.1:7002", "hwm": 1}),
        )
        env = {"LOGFABRIC_BROKER_PUSH_INGEST": "tcp://127.0.0.1:7012", "LOGFABRIC_BROKER_HWM": "2"}
        c = BrokerConfig.load(file, env=env, hwm=3)
        assert c.hwm == 3  # flag over env over file
        assert c.push_ingest == "tcp://127.0.0.1:7012"  # env over file
        assert c.egress == "tcp://127.0.0.1:7001"  # file over default
        assert c.pub_ingest == "tcp://*:5556"  # default

    def test_none_flags_count_as_unset(self, tmp_path: Path) -> None:
        """A flag passed as None (argparse's 'not given') does not hide the variable or the file."""
        file = write(tmp_path / "b.json", json.dumps({"egress": "tcp://127.0.0.1:7001"}))
        c = BrokerConfig.load(file, env={"LOGFABRIC_BROKER_HWM": "7"}, hwm=None, egress=None, upstream=None)
        assert (c.hwm, c.egress, c.upstream) == (7, "tcp://127.0.0.1:7001", ())

    def test_process_environment_is_the_default_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without env=..., LOGFABRIC_BROKER_* variables of the process are read."""
        monkeypatch.setenv("LOGFABRIC_BROKER_DRAIN_TIMEOUT", "2.5")
        assert BrokerConfig.load().drain_timeout == 2.5

    def test_env_values_are_converted(self) -> None:
        """Variables are strings: numbers become numbers, upstream splits on commas, 'off' disables."""
        c = BrokerConfig.load(
            env={
                "LOGFABRIC_BROKER_UPSTREAM": " tcp://127.0.0.1:1 ,tcp://127.0.0.1:2,, ",
                "LOGFABRIC_BROKER_HWM": "42",
                "LOGFABRIC_BROKER_MAX_MESSAGE": "2048",
                "LOGFABRIC_BROKER_DRAIN_TIMEOUT": "0.5",
                "LOGFABRIC_BROKER_HTTP": "off",
                "LOGFABRIC_BROKER_PIPELINE": "",
            }
        )
        assert c.upstream == ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2")
        assert (c.hwm, c.max_message, c.drain_timeout) == (42, 2048, 0.5)
        assert c.http is None and c.pipeline is None

    def test_config_variable_is_not_a_setting(self) -> None:
        """LOGFABRIC_BROKER_CONFIG names the file; it is not refused as an unknown setting."""
        assert BrokerConfig.load(env={"LOGFABRIC_BROKER_CONFIG": "/nowhere.json"}).hwm == 100_000

    def test_unknown_variable_is_refused(self) -> None:
        """A misspelt LOGFABRIC_BROKER_* variable is an error, not silently ignored."""
        with pytest.raises(ConfigError, match=r"unknown broker setting.*egres"):
            BrokerConfig.load(env={"LOGFABRIC_BROKER_EGRES": "tcp://127.0.0.1:1"})

    def test_with_overrides_validates_again(self) -> None:
        """with_overrides returns a changed copy and checks the new values."""
        base = BrokerConfig(http=None)
        changed = base.with_overrides(hwm=5)
        assert (changed.hwm, base.hwm) == (5, 100_000)
        with pytest.raises(ConfigError, match="egress"):
            base.with_overrides(egress="nonsense")


class TestValidation:
    """Every setting is checked with an error that names it."""

    @pytest.mark.parametrize("field", ["pub_ingest", "push_ingest", "egress", "pipeline"])
    def test_invalid_endpoint_names_the_field(self, field: str) -> None:
        """An endpoint without a ZeroMQ scheme is refused with the field's name first."""
        with pytest.raises(ConfigError) as info:
            BrokerConfig.load(env={}, **{field: "localhost:5557"})
        assert str(info.value).startswith(f"{field}: invalid endpoint 'localhost:5557'")

    def test_invalid_upstream_names_the_field(self) -> None:
        """One bad endpoint in the upstream list is refused as upstream."""
        with pytest.raises(ConfigError, match=r"^upstream: invalid endpoint 'tcp://'"):
            BrokerConfig.load(env={}, upstream=["tcp://127.0.0.1:1", "tcp://"])

    @pytest.mark.parametrize("value", ["nonsense", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000"])
    def test_invalid_http_address(self, value: str) -> None:
        """HTTP must be HOST:PORT with a port in range."""
        with pytest.raises(ConfigError, match=r"^http must be HOST:PORT"):
            BrokerConfig.load(env={}, http=value)

    @pytest.mark.parametrize(
        ("setting", "value", "message"),
        [
            ("drain_timeout", -1, "^drain_timeout must be >= 0"),
            ("hwm", -1, "^hwm must be >= 0"),
            ("max_message", 1023, "^max_message must be at least 1024"),
            ("hwm", "lots", "^hwm must be a number, got 'lots'"),
            ("drain_timeout", "soon", "^drain_timeout must be a number"),
            ("upstream", 5, "^upstream must be a list of endpoints"),
        ],
    )
    def test_invalid_numbers_and_lists(self, setting: str, value: object, message: str) -> None:
        """Out-of-range or non-numeric values are refused with the setting's name."""
        with pytest.raises(ConfigError, match=message):
            BrokerConfig.load(env={}, **{setting: value})

    def test_config_error_is_a_value_error(self) -> None:
        """Callers catching ValueError also catch configuration errors."""
        assert issubclass(ConfigError, ValueError)


class TestConfigFiles:
    """JSON and TOML files of settings."""

    def test_toml_file_loads(self, tmp_path: Path) -> None:
        """A .toml file is read as TOML; hyphenated keys and arrays work."""
        file = write(
            tmp_path / "broker.toml",
            'push-ingest = "tcp://127.0.0.1:7002"\n'
            'upstream = ["tcp://127.0.0.1:8001", "tcp://127.0.0.1:8002"]\n'
            "drain_timeout = 3\n"
            'http = "off"\n',
        )
        c = BrokerConfig.load(file, env={})
        assert c.push_ingest == "tcp://127.0.0.1:7002"
        assert c.upstream == ("tcp://127.0.0.1:8001", "tcp://127.0.0.1:8002")
        assert c.drain_timeout == 3.0 and isinstance(c.drain_timeout, float)
        assert c.http is None

    def test_json_file_loads(self, tmp_path: Path) -> None:
        """A .json file is read as JSON, with the same keys."""
        file = write(
            tmp_path / "broker.json",
            json.dumps({"pipeline": "tcp://127.0.0.1:7004", "max-message": 4096, "http": "127.0.0.1:0"}),
        )
        c = BrokerConfig.load(file, env={})
        assert (c.pipeline, c.max_message, c.http) == ("tcp://127.0.0.1:7004", 4096, "127.0.0.1:0")

    def test_unknown_key_lists_the_known_ones(self, tmp_path: Path) -> None:
        """A key the broker does not know is refused with the full list of known settings."""
        file = write(tmp_path / "broker.toml", 'egres = "tcp://127.0.0.1:1"\n')
        with pytest.raises(ConfigError) as info:
            BrokerConfig.load(file, env={})
        message = str(info.value)
        assert "unknown broker setting(s): egres" in message
        assert f"known: {', '.join(KNOWN)}" in message

    @pytest.mark.parametrize(("name", "text"), [("b.json", "{not json"), ("b.toml", "egress = \n")])
    def test_unparsable_file_names_the_file(self, tmp_path: Path, name: str, text: str) -> None:
        """A syntax error names the file and its format."""
        file = write(tmp_path / name, text)
        with pytest.raises(ConfigError, match=f"config file .*{name}.* is not valid {name.split('.')[1]}"):
            BrokerConfig.load(file, env={})

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that cannot be read is a ConfigError, not an OSError."""
        with pytest.raises(ConfigError, match=r"cannot read config file .*absent\.json"):
            BrokerConfig.load(tmp_path / "absent.json", env={})

    def test_file_must_hold_an_object(self, tmp_path: Path) -> None:
        """A JSON list is not a set of settings."""
        with pytest.raises(ConfigError, match="must hold an object of settings"):
            BrokerConfig.load(write(tmp_path / "b.json", "[1, 2]"), env={})


# --------------------------------------------------------------------------- command line


def run_broker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m broker ARGS`` expecting it to end by itself (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        env=child_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )


def local_endpoints() -> list[str]:
    """Flags binding every socket to a free 127.0.0.1 port, HTTP off."""
    a, b, c = free_ports(3)
    return [
        "--pub-ingest",
        f"tcp://127.0.0.1:{a}",
        "--push-ingest",
        f"tcp://127.0.0.1:{b}",
        "--egress",
        f"tcp://127.0.0.1:{c}",
        "--http",
        "off",
    ]


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("logfabric broker: ")
    for word in words:
        assert word in lines[0], lines[0]


class TestCommandLine:
    """``python -m broker`` and ``logfabric broker``: configuration errors exit 2 with one line."""

    def test_bad_egress_flag_exits_2_with_one_line(self) -> None:
        """--egress nonsense: exit 2, one stderr line naming egress, no traceback."""
        result = run_broker(*local_endpoints(), "--egress", "nonsense")
        assert_one_line_error(result, "egress", "'nonsense'")

    def test_bad_variable_exits_2(self) -> None:
        """A bad LOGFABRIC_BROKER_* variable is a configuration error too."""
        result = run_broker(*local_endpoints(), env={"LOGFABRIC_BROKER_HWM": "lots"})
        assert_one_line_error(result, "hwm must be a number")

    def test_unknown_key_in_config_file_exits_2(self, tmp_path: Path) -> None:
        """--config with an unknown key: exit 2 listing the known keys."""
        file = write(tmp_path / "b.toml", "colour = 'blue'\n")
        result = run_broker(*local_endpoints(), "--config", str(file))
        assert_one_line_error(result, "unknown broker setting(s): colour", "known: ")

    def test_busy_port_exits_2(self) -> None:
        """An ingest port already taken: exit 2 saying it cannot bind."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_broker(*local_endpoints(), "--push-ingest", f"tcp://127.0.0.1:{port}")
        assert_one_line_error(result, "cannot bind", str(port))

    def test_busy_http_port_exits_2(self) -> None:
        """An HTTP port already taken: exit 2 saying it cannot serve HTTP (and no hang on the way out)."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_broker(*local_endpoints(), "--http", f"127.0.0.1:{port}")
        assert_one_line_error(result, "cannot serve HTTP", str(port))

    def test_console_script(self) -> None:
        """``logfabric broker`` takes the same flags and fails the same way."""
        script = Path(sys.executable).with_name("logfabric")
        if not script.exists():
            pytest.skip("the logfabric console script is not installed next to this interpreter")
        result = subprocess.run(
            [str(script), "broker", *local_endpoints(), "--egress", "nonsense"],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert_one_line_error(result, "egress")
        helped = subprocess.run([str(script), "broker", "--help"], capture_output=True, text=True, timeout=20)
        assert helped.returncode == 0
        for flag in ("--pub-ingest", "--push-ingest", "--egress", "--pipeline", "--http", "--drain-timeout"):
            assert flag in helped.stdout

    def test_file_env_and_flags_combine_in_a_running_broker(self, tmp_path: Path) -> None:
        """A running broker binds the flag's egress over the variable's, and the file's other settings."""
        pub, push, egress_file, egress_env, egress_flag, http = free_ports(6)
        file = write(
            tmp_path / "broker.toml",
            f'pub_ingest = "tcp://127.0.0.1:{pub}"\n'
            f'push_ingest = "tcp://127.0.0.1:{push}"\n'
            f'egress = "tcp://127.0.0.1:{egress_file}"\n'
            f'http = "127.0.0.1:{http}"\n',
        )
        env = child_env(LOGFABRIC_BROKER_CONFIG=str(file), LOGFABRIC_BROKER_EGRESS=f"tcp://127.0.0.1:{egress_env}")
        stderr = tmp_path / "stderr"
        with stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "broker", "--egress", f"tcp://127.0.0.1:{egress_flag}"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            ready = poll_until(lambda: _status(f"127.0.0.1:{http}") == 200, timeout=15)
            assert ready, stderr.read_text()
            for port, listening in ((egress_flag, True), (egress_env, False), (egress_file, False), (push, True)):
                assert _listening(port) is listening, (port, stderr.read_text())
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            finally:
                proc.kill()
        assert proc.returncode == 0


def _status(address: str) -> int | None:
    try:
        return int(http_get(address, "/readyz", timeout=1)[0])
    except OSError:
        return None


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --------------------------------------------------------------------------- one definition


class TestOneDefinition:
    """Flags, variables and conversions come from BrokerConfig's fields; sockets from one table."""

    def test_every_field_has_exactly_one_flag(self) -> None:
        """Each field has one flag, --name-with-dashes; the only others are --config and --log-level."""
        from broker.cli import build_parser

        actions = [a for a in build_parser()._actions if a.option_strings and a.dest != "help"]
        by_dest: dict[str, list[str]] = {}
        for action in actions:
            by_dest.setdefault(action.dest, []).extend(action.option_strings)
        assert set(by_dest) == {*KNOWN, "config", "log_level"}
        for name in KNOWN:
            assert by_dest[name] == ["--" + name.replace("_", "-")], name

    def test_every_field_has_exactly_one_variable(self) -> None:
        """LOGFABRIC_BROKER_<NAME> sets field NAME, and no two fields share a variable."""
        from broker._options import env_var, from_env

        variables = {env_var(name): name for name in KNOWN}
        assert len(variables) == len(KNOWN)
        assert all(v == "LOGFABRIC_BROKER_" + n.upper() for v, n in variables.items())
        assert from_env(BrokerConfig, dict.fromkeys(variables, "x")) == dict.fromkeys(KNOWN, "x")

    @pytest.mark.parametrize(
        ("name", "text", "value"),
        [
            ("hwm", "12", 12),
            ("handshake_timeout", "1.5", 1.5),
            ("upstream", "tcp://127.0.0.1:1,tcp://127.0.0.1:2", ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2")),
            ("allow_open_secret_key", "yes", True),
            ("pipeline", "tcp://127.0.0.1:9", "tcp://127.0.0.1:9"),
            ("http", "off", None),
        ],
    )
    def test_flag_and_variable_convert_alike(self, name: str, text: str, value: object) -> None:
        """A value given as a variable and the same given as a flag end as the same setting."""
        from broker.cli import build_parser

        from_variable = BrokerConfig.load(env={"LOGFABRIC_BROKER_" + name.upper(): text})
        flag = "--" + name.replace("_", "-")
        if value is True:
            given = [flag]
        elif name == "upstream":  # repeatable
            given = [part for endpoint in text.split(",") for part in (flag, endpoint)]
        else:
            given = [flag, text]
        args = build_parser().parse_args(given)
        from_flag = BrokerConfig.load(env={}, **{n: getattr(args, n) for n in KNOWN})
        assert getattr(from_variable, name) == getattr(from_flag, name) == value

    def test_help_shows_the_defaults_a_service_uses(self) -> None:
        """--help quotes each default from the field (HTTP's from what `logfabric broker` serves on)."""
        from broker.cli import build_parser
        from broker.config import SERVICE_HTTP

        text = " ".join(build_parser().format_help().split())
        for shown in ("(default tcp://*:5556)", f"(default {SERVICE_HTTP})", "(default 100000)", "(default 10)"):
            assert shown in text

    def test_http_is_off_in_the_dataclass_and_the_embedded_broker_on_for_the_service(self) -> None:
        """BrokerConfig() and Broker() agree (HTTP off); the service's settings serve it on 0.0.0.0:9102."""

        assert BrokerConfig().http is None
        assert Broker().config.http is None
        assert BrokerConfig.load(env={}).http == "0.0.0.0:9102"

    def test_sockets_table_matches_the_settings_and_the_published_names(self) -> None:
        """Each socket's field exists with the table's default; labels and domains stay what dashboards know."""
        from broker._roles import BOUND, INGESTS, OUTPUTS, SOCKETS

        defaults = BrokerConfig()
        for sock in SOCKETS:
            assert sock.field in KNOWN
            if sock.default is not None:
                assert getattr(defaults, sock.field) == sock.default
        assert [s.role for s in BOUND] == ["pub_ingest", "push_ingest", "egress", "pipeline"]
        assert [(s.proxy, s.flow) for s in INGESTS] == [("pub", "pub"), ("push", "push"), ("upstream", "upstream")]
        assert [(s.proxy, s.flow) for s in OUTPUTS] == [("egress", "subscribers"), ("pipeline", "pipeline")]
        assert [s.domain for s in BOUND] == [
            f"logfabric.{r}" for r in ("pub_ingest", "push_ingest", "egress", "pipeline")
        ]

    def test_one_public_error_type(self) -> None:
        """broker exports exactly Broker, BrokerConfig and ConfigError; config errors are that one class."""
        import broker
        import broker.config

        assert broker.__all__ == ["Broker", "BrokerConfig", "ConfigError"]
        assert broker.config.ConfigError is broker.ConfigError is ConfigError
