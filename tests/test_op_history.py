"""The operator table (crates/byom-core/src/torch/op_history.txt) is what tools/torch_ops/extract.py
writes from the wheels it names, and names every release from 1.8 to the server's torch.

No network here: the table records the wheels (file name, sha256, CRC-32 of the member read) it
was made from; the script's RELEASES must list the same wheels, so a release added to one and not
the other fails. When the fetched members are cached on this machine (after a run of the
script), the table is also regenerated and compared byte for byte.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

SCRIPT = REPO / "tools" / "torch_ops" / "extract.py"
TABLE = REPO / "crates" / "byom-core" / "src" / "torch" / "op_history.txt"


def _extract():
    spec = importlib.util.spec_from_file_location("torch_ops_extract", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _server_torch() -> str:
    text = (REPO / "crates" / "byom-core" / "src" / "torch_version.rs").read_text()
    m = re.search(r"pub const SERVER: TorchVersion = TorchVersion\((\d+), (\d+)\);", text)
    assert m, "SERVER not found in torch_version.rs"
    return f"{m[1]}.{m[2]}"


def test_the_table_was_made_from_the_wheels_the_script_names():
    ex = _extract()
    recorded = [re.sub(r" crc32=[0-9a-f]{8}$", "", line) for line in TABLE.read_text().splitlines()
                if line.startswith("source ")]
    assert recorded == ex.source_lines(), (
        "op_history.txt is stale: rerun python tools/torch_ops/extract.py (see docs/pt-inspection.md)")


def test_every_release_from_1_8_to_the_servers_torch_is_read():
    ex = _extract()
    releases = [r for r, *_ in ex.RELEASES]
    assert releases[0] == "1.8" and releases[-1] == _server_torch(), releases
    for a, b in zip(releases, releases[1:]):
        (ma, na), (mb, nb) = map(int, a.split(".")), map(int, b.split("."))
        assert (mb, nb) in ((ma, na + 1), (ma + 1, 0)), f"a release is missing between {a} and {b}"
    for rel, path, size, sha in ex.RELEASES:
        name = ex.wheel_name(path)
        assert name.startswith(f"torch-{rel}.0-") and "manylinux" in name and name.endswith("_x86_64.whl"), name
        assert size > 0 and re.fullmatch(r"[0-9a-f]{64}", sha), name
    # Sections are releases, in order, each with at least one line.
    sections = [line[1:-1] for line in TABLE.read_text().splitlines() if line.startswith("[")]
    assert sections == [r for r in releases if r in sections] and sections[0] == "1.8", sections


def test_the_table_dates_what_real_torch_1_8_lacks():
    """Spot checks (the full check against a real torch 1.8 registry is tests/torch18/check.sh)."""
    lines = {line.split()[0]: (sec, line) for sec, line in _entries()}
    assert lines["scaled_dot_product_attention"][0] == "2.0"
    assert "scale@2.1" in lines["scaled_dot_product_attention"][1].split()
    assert lines["pad"][0] == "1.12"
    assert lines["gelu"] == ("1.8", "gelu out@1.10 approximate@1.12")
    assert "conv2d" not in lines and lines["linear"] == ("1.8", "linear out@1.10")


def _entries():
    sec = None
    for line in TABLE.read_text().splitlines():
        if line.startswith("["):
            sec = line[1:-1]
        elif line and not line.startswith(("#", "source ")):
            yield sec, line


def test_the_table_is_what_the_script_writes_from_the_cached_wheel_members():
    ex = _extract()
    cache = Path(os.environ.get("BYOM_TORCH_OPS_CACHE", Path.home() / ".cache" / "byom" / "torch-ops"))
    missing = [ex.wheel_name(p) for _r, p, _s, _h in ex.RELEASES
               if not (cache / ex.wheel_name(p) / ex.MEMBER.replace("/", "__")).exists()]
    if missing:
        pytest.skip(f"wheel members not cached in {cache} (run tools/torch_ops/extract.py once): {missing[:2]}")
    r = subprocess.run([sys.executable, str(SCRIPT), "--check", "--cache", str(cache)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
