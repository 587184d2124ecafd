"""`required_torch` is a typed version everywhere it enters (issue 10).

It used to be a string that silently became the server's 2.11 when it did not parse (and
"major.minor" was parsed four different ways); now the one `TorchVersion` parser refuses it at
every door: the server's flag and settings file at start-up, `byom-server compile`, and the
settings JSON the CLI reads. (The `byom validate/inspect/pack --required-torch` flags are
tested in test_inspect.py.)
"""
from __future__ import annotations

import json
import subprocess

import pytest

from helpers import byom_server_bin

NOT_A_VERSION = '"banana" is not a torch version: expected major.minor'


def _serve(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(byom_server_bin()), "serve", "--data-dir", str(tmp_path / "data"), *args],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("value", ["banana", "2", "v1.8", "1.8.0+cu128"])
def test_server_refuses_a_required_torch_flag_that_is_not_a_version(tmp_path, value):
    r = _serve(tmp_path, "--required-torch", value)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"invalid --required-torch {json.dumps(value)}: expected major.minor" in r.stderr, r.stderr


def test_server_refuses_a_settings_file_with_a_bad_required_torch(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"required_torch": "banana"}))
    r = _serve(tmp_path, "--settings", str(settings))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "invalid settings file" in r.stderr and NOT_A_VERSION in r.stderr, r.stderr


def test_server_compile_refuses_a_bad_required_torch(tmp_path):
    r = subprocess.run([str(byom_server_bin()), "compile", str(tmp_path / "x.tar.gz"), "--target", "x86_64-cpu", "-o",
                        str(tmp_path / "out"), "--required-torch", "banana"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert NOT_A_VERSION in r.stderr, r.stderr
