"""The state-dict rebuilder the compile worker runs (crates/byom-compile/python/zoo_build.py),
run here exactly as the worker runs it (`python -I -B zoo_build.py request.json`), on real
torchvision and timm models with random weights.

The request names the architecture as the validator's recognition (`ArchMatch`) would; here it
is written directly, so these tests cover library families whatever the core's table says. The
full pipeline (recognition → rebuild → libtorch → bundles) is tested in test_compile_e2e.py.

Each case: the TorchScript it writes computes what the original eager model computes, and so
do the reference outputs it writes (the worker's parity checks compare against those).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "crates" / "byom-compile" / "python" / "zoo_build.py"


def fixed_input(shape, dtype=torch.float32):
    n = 1
    for d in shape:
        n *= d
    return torch.linspace(-1.0, 1.0, n).reshape(shape).to(dtype)


def randomise_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def rebuild(tmp: Path, zoo: str, name: str, state: dict, shape, classes: int, in_channels: int = 3,
            half: bool = False, kwargs: dict | None = None, checkpoint_key: str | None = None, payload=None):
    pt = tmp / "model.pt"
    torch.save(payload if payload is not None else state, pt)
    out = tmp / "zoo"
    out.mkdir()
    request = {
        "zoo": zoo, "name": name, "num_classes": classes, "in_channels": in_channels,
        "builder_kwargs": kwargs or {}, "state_dict": str(pt), "checkpoint_key": checkpoint_key,
        "input_shape": list(shape), "half": half, "threads": 1, "out_dir": str(out),
    }
    (out / "request.json").write_text(json.dumps(request))
    p = subprocess.run([sys.executable, "-I", "-B", str(SCRIPT), str(out / "request.json")],
                       capture_output=True, text=True, timeout=600)
    result = json.loads((out / "result.json").read_text())
    return p, result, out


def references(out: Path) -> dict:
    meta = json.loads((out / "reference.json").read_text())
    import numpy as np

    return {r["selector"]: torch.from_numpy(np.fromfile(out / r["file"], dtype="<f4").reshape(r["shape"]))
            for r in meta["outputs"]}


def rel_err(a, b) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


CASES = [
    # torchvision families the hand-written tch builders never had.
    ("torchvision", "shufflenet_v2_x0_5", (1, 3, 64, 64), 3, lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=3)),
    ("torchvision", "mnasnet0_5", (1, 3, 64, 64), 3, lambda: torchvision.models.mnasnet0_5(num_classes=3)),
    ("torchvision", "regnet_y_400mf", (1, 3, 64, 64), 3, lambda: torchvision.models.regnet_y_400mf(num_classes=3)),
    ("torchvision", "lraspp_mobilenet_v3_large", (1, 3, 64, 64), 4,
     lambda: torchvision.models.segmentation.lraspp_mobilenet_v3_large(num_classes=4, weights_backbone=None)),
    # timm: its own constructor, with in_chans.
    ("timm", "resnet18", (1, 3, 64, 64), 3, None),
    ("timm", "efficientnet_b0", (1, 3, 64, 64), 3, None),
    ("timm", "mobilenetv3_small_050", (1, 1, 64, 64), 5, None),
]


@pytest.mark.parametrize("zoo,name,shape,classes,make", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_rebuild_matches_the_library_model(tmp_path, zoo, name, shape, classes, make):
    torch.manual_seed(11)
    if zoo == "timm":
        timm = pytest.importorskip("timm")
        model = timm.create_model(name, pretrained=False, num_classes=classes, in_chans=shape[1])
    else:
        model = make()
    model = randomise_bn(model)
    p, result, out = rebuild(tmp_path, zoo, name, model.state_dict(), shape, classes, in_channels=shape[1])
    assert p.returncode == 0 and result["ok"], (result, p.stderr[-2000:])
    assert result["library"].startswith(zoo)
    x = fixed_input(shape)
    with torch.no_grad():
        expected = model(x)
        traced = torch.jit.load(str(out / "eager.pt"), map_location="cpu")(x)
    refs = references(out)
    if isinstance(expected, dict):  # segmentation: {"out": ...}
        assert set(refs) == set(expected) == {"out"}
        expected, traced, ref = expected["out"], traced["out"], refs["out"]
        assert expected.shape == (1, classes, *shape[2:])
    else:
        ref = refs[""]
        assert expected.shape == (1, classes)
    # The same eager model in another process (other thread count, so another summation order):
    # equal up to float rounding, not bit for bit.
    assert rel_err(ref, expected) <= 1e-6, "the reference is the eager model's own output"
    err = rel_err(traced, expected)
    print(f"{zoo}/{name}: traced vs eager max relative error {err:.2e}")
    assert err <= 1e-4, err
    assert not (out / "eager-fp16.pt").exists()


def test_fp16_twin_and_checkpoint_key_and_module_prefix(tmp_path):
    torch.manual_seed(12)
    model = randomise_bn(torchvision.models.mnasnet0_5(num_classes=2))
    shape = (1, 3, 64, 64)
    # A DataParallel checkpoint: the state dict under a key, every name under `module.` (MNASNet
    # reads its format version from the state dict's `_metadata`, which must survive that too).
    payload = {"epoch": 3, "state_dict": torch.nn.DataParallel(model).state_dict()}
    assert all(k.startswith("module.") for k in payload["state_dict"])
    p, result, out = rebuild(tmp_path, "torchvision", "mnasnet0_5", {}, shape, 2, half=True,
                             checkpoint_key="state_dict", payload=payload)
    assert p.returncode == 0 and result["ok"], (result, p.stderr[-2000:])
    half = torch.jit.load(str(out / "eager-fp16.pt"), map_location="cpu")
    with torch.no_grad():
        got = half(fixed_input(shape, torch.float16))
        expected = model(fixed_input(shape))
    assert got.dtype == torch.float16
    assert rel_err(got, expected) <= 1e-2


def test_a_state_dict_of_another_width_is_refused_naming_the_keys(tmp_path):
    model = torchvision.models.shufflenet_v2_x0_5(num_classes=3)
    p, result, _ = rebuild(tmp_path, "torchvision", "shufflenet_v2_x1_0", model.state_dict(), (1, 3, 64, 64), 3)
    assert p.returncode == 1 and not result["ok"]
    assert "size mismatch" in result["error"] or "does not have" in result["error"], result["error"]
    assert "\n" not in result["error"]


def test_unknown_builder_and_extra_keys_are_refused(tmp_path):
    state = torchvision.models.mnasnet0_5(num_classes=3).state_dict()
    state["extra.weight"] = torch.zeros(1)
    p, result, _ = rebuild(tmp_path, "torchvision", "mnasnet0_5", state, (1, 3, 64, 64), 3)
    assert not result["ok"] and "1 unexpected (extra.weight)" in result["error"], result["error"]
    (tmp_path / "b").mkdir()
    p, result, _ = rebuild(tmp_path / "b", "torchvision", "no_such_net", state, (1, 3, 64, 64), 3)
    assert not result["ok"] and "has no builder 'no_such_net'" in result["error"], result["error"]


def test_a_pickle_with_code_is_refused_by_the_weights_only_loader(tmp_path):
    """byom's own pickle check refuses such files before the worker starts; torch's weights-only
    loader is the second guard and never runs the file's code."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    p, result, _ = rebuild(tmp_path, "torchvision", "mnasnet0_5", {}, (1, 3, 64, 64), 3,
                           payload={"w": torch.zeros(1), "x": Evil()})
    assert not result["ok"] and "UnpicklingError" in result["error"], result["error"]
    assert not marker.exists()
