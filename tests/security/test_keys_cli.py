"""``logfabric keys generate``: key files in the zmq.auth format, private secret files, no overwriting."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
import zmq.auth

from fabric.cli import main
from fabric.curve import CurveError, generate, load_key_pair, load_public_key

ROOT = Path(__file__).resolve().parents[2]


def test_generate_writes_a_usable_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """NAME.key holds the public key, NAME.key_secret both; zmq.auth reads them and they form a real pair."""
    assert main(["keys", "generate", "checkout", "--dir", str(tmp_path)]) == 0
    public_file, secret_file = tmp_path / "checkout.key", tmp_path / "checkout.key_secret"
    public, none = zmq.auth.load_certificate(public_file)
    same, secret = zmq.auth.load_certificate(secret_file)
    assert none is None and secret is not None and same == public
    assert zmq.curve_public(secret) == public
    out = capsys.readouterr().out
    assert str(public_file) in out and public.decode() in out and secret.decode() not in out
    assert zmq.auth.load_certificates(tmp_path) == {public: True}  # the secret file is not an allow-list entry


def test_file_modes(tmp_path: Path) -> None:
    """The secret file is 0600 whatever the umask; the public one 0644; a new directory 0700."""
    folder = tmp_path / "new" / "keys"
    public, secret = generate("svc", folder)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [p.name for p in sorted(folder.iterdir())] == ["svc.key", "svc.key_secret"]  # no scratch left behind


@pytest.mark.parametrize("existing", ["svc.key", "svc.key_secret"])
def test_refuses_to_overwrite(tmp_path: Path, existing: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing file of either name: exit 2, one clear line, the old file untouched and no half pair left."""
    (tmp_path / existing).write_text("old")
    assert main(["keys", "generate", "svc", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists" in err and "refusing to overwrite" in err
    assert (tmp_path / existing).read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "-flag"])
def test_rejects_bad_names(tmp_path: Path, name: str) -> None:
    """A name that is empty, hidden or a path is refused before anything is written."""
    with pytest.raises(CurveError, match="invalid key name"):
        generate(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_console_script(tmp_path: Path) -> None:
    """`python -m fabric.cli keys generate` works as a command (exit 0, then exit 2 on the second run)."""
    command = [sys.executable, "-m", "fabric.cli", "keys", "generate", "broker", "--dir", str(tmp_path)]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert (first.returncode, second.returncode) == (0, 2), first.stderr + second.stderr
    assert "Traceback" not in second.stderr


def test_loaders_read_generated_keys(tmp_path: Path) -> None:
    """load_public_key reads NAME.key; load_key_pair reads NAME.key_secret; both agree."""
    public_file, secret_file = generate("x", tmp_path)
    public, secret = load_key_pair(secret_file)
    assert load_public_key(public_file) == public and len(secret) == 40
