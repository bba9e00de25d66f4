"""The ``logfabric`` entry point: subcommand dispatch and install-path errors."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.net import child_env

# A ModuleNotFoundError for prometheus_client, as on a core-only install:
# a None entry in sys.modules makes the import fail that way.
_WITHOUT_PROMETHEUS = (
    "import sys; sys.modules['prometheus_client'] = None; from broker.command import main; sys.exit(main(sys.argv[1:]))"
)


_FREE_PORTS = [
    *("--pub-ingest", "tcp://127.0.0.1:*", "--push-ingest", "tcp://127.0.0.1:*", "--egress", "tcp://127.0.0.1:*"),
    *("--http", "127.0.0.1:0"),
]


class TestBrokerWithoutItsExtra:
    def test_says_in_one_line_what_to_install(self) -> None:
        """`logfabric broker` without prometheus-client exits 2 with the pip command, not a traceback."""
        result = subprocess.run(
            [sys.executable, "-c", _WITHOUT_PROMETHEUS, "broker", *_FREE_PORTS],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env(),
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines == [
            "logfabric broker: the broker needs prometheus_client, which is not installed: "
            "pip install 'logfabric[broker]'"
        ]

    def test_other_subcommands_need_no_broker_extra(self) -> None:
        """`logfabric --version` works on a core-only install."""
        result = subprocess.run(
            [sys.executable, "-c", _WITHOUT_PROMETHEUS, "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env(),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("logfabric ")
