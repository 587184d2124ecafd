"""Twins: builders whose state dicts have exactly the same names and shapes but compute
different things (timm's `tf_` models pad "same", their twins symmetrically; torchvision's
fasterrcnn mobilenet fpn and its 320 twin). The file cannot tell them apart; mochi.json
`model_info.architecture` decides (crates/byom-core/src/torch/twins.rs), and without it the
validator warns (BYOM616) naming the others. Proven on timm `tf_mobilenetv3_small_100`
(random weights, 10 MB): declared, it is the architecture the CLI names and the one the
compile worker rebuilds, the artifact computing what timm's `tf_` model computes and not what
its twin computes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from helpers import REPO, byom_bin, run_byom  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_packages as mp  # noqa: E402

SHAPE = [1, 3, 64, 64]
CLASSES = 3
TWIN, FIRST = "tf_mobilenetv3_small_100", "mobilenetv3_small_100"


def fixed_input():
    return torch.linspace(-1.0, 1.0, 3 * 64 * 64).reshape(SHAPE)


@pytest.fixture(scope="module")
def tf_model():
    torch.manual_seed(0)
    return timm.create_model(TWIN, pretrained=False, num_classes=CLASSES).eval()


def package(tmp: Path, model, model_info: dict) -> Path:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    spec = mp.Package("unused", "model.pt", "classification", SHAPE, [1, CLASSES], CLASSES,
                      ["a", "b", "c"],
                      preprocessing={"resize": SHAPE[2:], "normalize": mp.IMAGENET, "channel_order": "RGB"},
                      postprocessing={"type": "softmax"}, model_info=model_info)
    path = tmp / f"twin{len(list(tmp.iterdir()))}.tar.gz"
    path.write_bytes(mp.gz(mp.tar_bytes(mp.members_of(spec, pt_data=buf.getvalue())), level=1))
    return path


def validate(pkg: Path) -> dict:
    r = run_byom(byom_bin(), "validate", "--format", "json", pkg, text=True)
    report = json.loads(r.stdout)
    assert report["valid"], report["errors"]
    return report


def test_without_a_name_the_first_twin_is_rebuilt_with_a_warning(tmp_path, tf_model):
    report = validate(package(tmp_path, tf_model, {}))
    assert report["model"]["architecture"] == f"timm/{FIRST}", report["model"]
    [warning] = [w for w in report["warnings"] if w["code"] == "BYOM616"]
    assert f"timm/{TWIN}" in warning["message"] and f'"{TWIN}"' in warning["hint"], warning


def test_the_declared_twin_is_named_and_compiled(tmp_path, tf_model):
    pkg = package(tmp_path, tf_model, {"architecture": TWIN})
    report = validate(pkg)
    assert report["model"]["architecture"] == f"timm/{TWIN}", report["model"]
    assert not [w for w in report["warnings"] if w["code"] == "BYOM616"], report["warnings"]

    out = tmp_path / "out"
    compile_bin = os.environ.get("BYOM_COMPILE_BIN", REPO / "target" / "debug" / "examples" / "compile")
    p = subprocess.run([str(compile_bin), str(pkg), "-o", str(out), "--target", "x86_64-cpu", "--runs", "1",
                        "--python", sys.executable], capture_output=True, text=True, timeout=900)
    result = json.loads((out / "report.json").read_text())
    assert p.returncode == 0, (result["failure_reason"], result["log"])
    assert result["model"]["architecture"] == f"timm/{TWIN}"
    artifact = torch.jit.load(str(out / "x86_64-cpu" / "model.pt"), map_location="cpu")
    first = timm.create_model(FIRST, pretrained=False, num_classes=CLASSES).eval()
    first.load_state_dict(tf_model.state_dict())
    with torch.no_grad():
        got, want, other = artifact(fixed_input()), tf_model(fixed_input()), first(fixed_input())
    scale = want.abs().max()
    assert ((got - want).abs().max() / scale).item() <= 1e-4
    # The twins really differ: deploying the first would have computed something else.
    assert ((other - want).abs().max() / scale).item() > 1e-2
