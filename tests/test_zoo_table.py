"""The zoo fingerprint table: it matches the installed torchvision/timm, and real state dicts of
their builders (random weights, CPU) are named, with num_classes and in_channels, by
`byom inspect --format json` and `byom validate`.

Why: the server rebuilds a recognised state dict with the library's own constructor, so a wrong
name, class count or channel count here becomes a failed compile; and the table is generated
(tools/zoo/gen_fingerprints.py), so a library upgrade without regenerating must fail here.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

from helpers import REPO, byom_bin  # noqa: E402  (also puts tests/fixtures on the path)

import make_packages as mp  # noqa: E402

GEN = REPO / "tools" / "zoo" / "gen_fingerprints.py"


def test_table_matches_the_installed_libraries():
    """Version stamp, every name still a builder, and a sample of entries regenerated."""
    r = subprocess.run([sys.executable, str(GEN), "--check", "12"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 differences" in r.stdout, r.stdout


def _tv(name, **kw):
    torch.manual_seed(0)
    extra = {}
    if name in torchvision.models.list_models(module=torchvision.models.detection) + torchvision.models.list_models(
            module=torchvision.models.segmentation):
        extra["weights_backbone"] = None
    return torchvision.models.get_model(name, weights=None, **extra, **kw).eval()


def _timm(name, **kw):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kw).eval()


def _save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _inspect(path: Path) -> dict:
    r = subprocess.run([str(byom_bin()), "inspect", "--format", "json", str(path)], capture_output=True, timeout=300)
    assert r.returncode in (0, 1), r.stderr.decode()
    return json.loads(r.stdout)


def _validate(tmp: Path, name: str, pt: bytes, model_type: str, input_shape, output_shape, classes: int,
              post: dict) -> dict:
    pkg = mp.Package(
        "unused", f"{name}.pt", model_type, list(input_shape), list(output_shape), classes,
        [f"class_{i}" for i in range(classes)],
        preprocessing={"resize": list(input_shape[2:]),
                       "normalize": {"mean": [0.5] * input_shape[1], "std": [0.25] * input_shape[1]},
                       "channel_order": "RGB"},
        postprocessing=post,
    )
    path = tmp / f"{name}.tar.gz"
    path.write_bytes(mp.gz(mp.tar_bytes(mp.members_of(pkg, pt_data=pt)), level=0))
    r = subprocess.run([str(byom_bin()), "validate", "--format", "json", str(path)], capture_output=True,
                       timeout=300)
    assert r.returncode in (0, 1), r.stderr.decode()
    return json.loads(r.stdout)


SOFTMAX = {"type": "softmax"}
PER_PIXEL = {"type": "argmax_per_pixel"}

# id: (model, what is saved, expected arch, classes, in_channels, builder kwargs, key prefix,
#      package to validate: (model_type, input_shape, output_shape, postprocessing) or None)
CASES = {
    "tv_mobilenet_v3_small": (lambda: _tv("mobilenet_v3_small", num_classes=5), None,
                              "torchvision/mobilenet_v3_small", 5, 3, {}, None,
                              ("classification", [1, 3, 224, 224], [1, 5], SOFTMAX)),
    "tv_shufflenet": (lambda: _tv("shufflenet_v2_x0_5", num_classes=3), None,
                      "torchvision/shufflenet_v2_x0_5", 3, 3, {}, None, None),
    # RegNet's builders compute widths with tensors: the generator runs that part on the CPU.
    "tv_regnet": (lambda: _tv("regnet_x_400mf", num_classes=6), None,
                  "torchvision/regnet_x_400mf", 6, 3, {}, None, None),
    "tv_lraspp_segmentation": (lambda: _tv("lraspp_mobilenet_v3_large", num_classes=3), None,
                               "torchvision/lraspp_mobilenet_v3_large", 3, 3, {}, None,
                               ("semantic_segmentation", [1, 3, 256, 256], [1, 3, 256, 256], PER_PIXEL)),
    # fp16: half the bytes, and the dtype is not part of the fingerprint.
    "tv_deeplabv3_aux_fp16": (lambda: _tv("deeplabv3_mobilenet_v3_large", num_classes=4, aux_loss=True).half(), None,
                              "torchvision/deeplabv3_mobilenet_v3_large", 4, 3, {"aux_loss": True}, None, None),
    "tv_ssdlite_detection": (lambda: _tv("ssdlite320_mobilenet_v3_large", num_classes=3), None,
                             "torchvision/ssdlite320_mobilenet_v3_large", 3, 3, {}, None, None),
    "timm_convnext_atto": (lambda: _timm("convnext_atto", num_classes=7), None,
                           "timm/convnext_atto", 7, 3, {}, None,
                           ("classification", [1, 3, 224, 224], [1, 7], SOFTMAX)),
    "timm_gray_mobilenetv3": (lambda: _timm("mobilenetv3_small_050", num_classes=2, in_chans=1), None,
                              "timm/mobilenetv3_small_050", 2, 1, {}, None,
                              ("classification", [1, 1, 224, 224], [1, 2], SOFTMAX)),
    # A DataParallel checkpoint: {"model": {"module.…": …}, "epoch": …}.
    "timm_checkpoint_dataparallel": (lambda: _timm("resnet10t", num_classes=3), "checkpoint",
                                     "timm/resnet10t", 3, 3, {}, "module.",
                                     ("classification", [1, 3, 224, 224], [1, 3], SOFTMAX)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_real_state_dict_is_recognised(case, tmp_path):
    build, wrap, arch, classes, in_ch, kwargs, prefix, package = CASES[case]
    sd = build().state_dict()
    if wrap == "checkpoint":
        obj = {"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}
    else:
        obj = sd
    pt = _save(obj)
    path = tmp_path / f"{case}.pt"
    path.write_bytes(pt)
    out = _inspect(path)
    model = out["model"]
    assert model["architecture"] == arch, (model["architecture"], out["warnings"])
    a = model["arch"]
    assert (a["num_classes"], a["in_channels"], a["builder_kwargs"]) == (classes, in_ch, kwargs), a
    assert a["server_compilable"] is True and model["server_compilable"] is True
    assert model["key_prefix"] == prefix
    assert "BYOM609" not in {w["code"] for w in out["warnings"]}, out["warnings"]
    if wrap == "checkpoint":
        assert model["kind"] == "checkpoint" and model["checkpoint_key"] == "model"
    if package:
        model_type, shape, out_shape, post = package
        report = _validate(tmp_path, case, pt, model_type, shape, out_shape, classes, post)
        assert report["valid"], report["errors"]
        assert report["model"]["architecture"] == arch
        assert report["model"]["arch"]["num_classes"] == classes
        assert report["model"]["arch"]["in_channels"] == in_ch
        assert not [w for w in report["warnings"] if w["code"] in ("BYOM609", "BYOM611", "BYOM612")], \
            report["warnings"]


def test_wrong_head_is_reported_against_the_recognised_architecture(tmp_path):
    """A mobilenet_v3_small with its 1000-class head, packaged as a 2-class classifier."""
    pt = _save(_tv("mobilenet_v3_small").state_dict())
    report = _validate(tmp_path, "wrong_head", pt, "classification", [1, 3, 224, 224], [1, 2], 2, SOFTMAX)
    assert report["model"]["architecture"] == "torchvision/mobilenet_v3_small"
    assert report["model"]["arch"]["num_classes"] == 1000
    head = [i for i in report["errors"] + report["warnings"] if i["code"] in ("BYOM612", "BYOM620")]
    assert head and "1000" in head[0]["message"], report["errors"] + report["warnings"]


def test_other_widths_name_the_nearest_family(tmp_path):
    """convnext_atto's layer names with other widths: no builder makes it, BYOM609 says which
    family it resembles."""
    path = tmp_path / "wide_atto.pt"
    path.write_bytes(_save(_timm("convnext_atto", dims=(44, 88, 176, 352)).state_dict()))
    out = _inspect(path)
    assert out["model"]["architecture"] is None
    [w] = [w for w in out["warnings"] if w["code"] == "BYOM609"]
    assert "convnext_*" in w["message"] and "convnext_atto" in w["message"], w["message"]
    assert "shapes differ" in w["message"], w["message"]
