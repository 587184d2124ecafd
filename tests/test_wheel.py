"""The `byom` wheel: built with maturin from crates/byom-cli, installed with pip into a fresh
venv (no index: nothing but the wheel), and run from that venv's bin/ on a real package.

This is how notebooks and CI images without cargo get the CLI, so it must work end to end.
The build uses cargo's dev profile to keep the test command fast; the release wheel is built
the same way with --release.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import venv

import pytest

from helpers import REPO


@pytest.fixture(scope="module")
def wheel(out_dir):
    wheels = out_dir / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    maturin = shutil.which("maturin") or pytest.fail("maturin not installed (tests/requirements.txt)")
    cmd = [maturin, "build", "--profile", "dev", "-m", str(REPO / "crates/byom-cli/Cargo.toml"),
           "-o", str(wheels)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    built = sorted(wheels.glob("byom-*.whl"))
    assert len(built) == 1, built
    return built[0]


def test_wheel_installs_and_runs(wheel, out_dir, fixtures_dir):
    env_dir = out_dir / "wheel-venv"
    shutil.rmtree(env_dir, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-index", "--disable-pip-version-check", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    byom = env_dir / "bin" / "byom"
    assert byom.is_file(), f"the wheel must install bin/byom; venv bin has {sorted(p.name for p in byom.parent.iterdir())}"

    version = subprocess.run([str(byom), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "byom" in version.stdout

    good = subprocess.run([str(byom), "validate", "--format", "json", str(fixtures_dir / "guide_anomaly_local.tar.gz")],
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    assert json.loads(good.stdout)["valid"] is True
    bad = subprocess.run([str(byom), "validate", str(fixtures_dir / "two_pt_files.tar.gz")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "BYOM103" in bad.stdout + bad.stderr


def test_wheel_has_no_libtorch(wheel):
    """The CLI must never need libtorch: the wheel holds one small binary and metadata."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert not [n for n in names if "torch" in n.lower()], names
    assert any(n.endswith(".data/scripts/byom") for n in names), names
