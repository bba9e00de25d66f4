"""``logfabric export otlp`` shares its endpoint, filter and key flags with ``logfabric tail``; without the
``otlp`` extra it says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fabric import export, tail
from fabric._subscriber_options import for_target
from tests.helpers.net import ROOT, child_env

pytestmark = pytest.mark.timeout(60)

# Every flag the subscriber options define (their dest is the option's name).
SHARED = tuple(option.name for option in for_target("command"))
ARGV = [
    *("-l", "app", "--logger", "db", "--level", "WARNING", "-s", "checkout", "--service", "billing"),
    *("-g", "time(out)?", "-c", "5", "--timeout", "2.5", "--mode", "pull", "--bind"),
    *("--curve-server-key", "broker.key", "--curve-client-key", "me.key_secret"),
    *("-n", "7", "--since", "10m", "--until", "5m", "--no-follow", "--history", "tcp://127.0.0.1:9"),
    *("tcp://127.0.0.1:1", "tcp://127.0.0.1:2"),
]


class TestSharedFlags:
    """The same argv means the same subscription to both commands."""

    @pytest.mark.parametrize("argv", [[], ARGV], ids=["defaults", "every-flag"])
    def test_same_meaning_as_tail(self, argv):
        """Each shared flag parses to the same value in export as in tail."""
        theirs = tail.build_parser().parse_args(argv)
        ours = export.build_parser().parse_intermixed_args(["otlp", *argv])
        assert {k: getattr(ours, k) for k in SHARED} == {k: getattr(theirs, k) for k in SHARED}

    def test_every_flag_parses_to_its_value(self):
        """The full argv gives each shared option the value it names, in both commands."""
        expected = {
            "endpoints": ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"],
            "loggers": ["app", "db"],
            "level": "WARNING",
            "services": ["checkout", "billing"],
            "grep": "time(out)?",
            "count": 5,
            "timeout": 2.5,
            "mode": "pull",
            "bind": True,
            "curve_server_key": "broker.key",
            "curve_client_key": "me.key_secret",
            "last": 7,
            "since": "10m",
            "until": "5m",
            "follow": False,
            "history": "tcp://127.0.0.1:9",
        }
        assert set(SHARED) == set(expected)
        for parsed in (
            tail.build_parser().parse_args(ARGV),
            export.build_parser().parse_intermixed_args(["otlp", *ARGV]),
        ):
            assert {k: getattr(parsed, k) for k in SHARED} == expected

    def test_endpoints_may_follow_the_flags(self):
        """Endpoints after the export flags are still endpoints."""
        ours = export.build_parser().parse_intermixed_args(["otlp", "--to", "http://c:4318", "tcp://127.0.0.1:9"])
        assert (ours.endpoints, ours.to) == (["tcp://127.0.0.1:9"], "http://c:4318")


class TestWithoutTheExtra:
    """Without opentelemetry-proto installed, the command says what to install."""

    def test_says_what_to_install(self, tmp_path: Path):
        """A missing opentelemetry package gives one line naming the extra, and exit status 2."""
        fake = tmp_path / "opentelemetry"
        fake.mkdir()
        (fake / "__init__.py").write_text("raise ImportError('opentelemetry is not installed here')\n")
        env = child_env()
        env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
        out = subprocess.run(
            [sys.executable, "-m", "fabric.cli", "export", "otlp", "--to", "http://127.0.0.1:1/v1/logs"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, out
        [line] = out.stderr.splitlines()
        assert "pip install 'logfabric[otlp]'" in line
