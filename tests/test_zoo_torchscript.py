"""TorchScript from the model zoos, as their users export it: byom names the architecture from
the root class, and turns what the file proves into errors, what is only likely into warnings.

Files are made once per session by tests/fixtures/make_zoo.py (timm convnext_atto traced and
scripted, torchvision shufflenet_v2 and a 1000-class mobilenet_v3_small traced, ultralytics
YOLOv8n through ultralytics' own TorchScript exporter, and a class of the exporting script;
random weights, nothing downloaded). Every assertion reads `byom inspect --format json` or
`byom validate --format json` of the built binary.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FIXTURES_SRC, byom_bin

from make_packages import IMAGENET, Package, package_bytes  # noqa: E402  (tests/fixtures, via helpers)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[Path, dict]:
    """(directory, expected.json) of the zoo files; ultralytics runs in that subprocess only."""
    out = tmp_path_factory.mktemp("zoo")
    r = subprocess.run([sys.executable, str(FIXTURES_SRC / "make_zoo.py"), str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (
        "tests/fixtures/make_zoo.py failed (timm, torchvision and ultralytics come from "
        f"tests/requirements*.txt, installed by scripts/setup.sh):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return out, json.loads((out / "expected.json").read_text())


def inspect(path: Path) -> tuple[int, dict]:
    r = subprocess.run([str(byom_bin()), "inspect", "--format", "json", str(path)],
                       capture_output=True, timeout=300)
    assert r.returncode in (0, 1), r.stderr.decode()
    return r.returncode, json.loads(r.stdout)


def validate(path: Path) -> tuple[int, dict]:
    r = subprocess.run([str(byom_bin()), "validate", "--format", "json", str(path)],
                       capture_output=True, timeout=300)
    assert r.returncode in (0, 1), r.stderr.decode()
    return r.returncode, json.loads(r.stdout)


FILES = ["timm_convnext_atto_traced.pt", "timm_convnext_atto_scripted.pt", "tv_shufflenet_v2_traced.pt",
         "tv_mobilenet_v3_small_1000_traced.pt", "ultralytics_yolov8n.pt", "main_mynet_traced.pt"]


@pytest.mark.parametrize("name", FILES)
def test_inspect_names_the_architecture_from_the_root_class(zoo, name):
    d, expected = zoo
    exp = expected[name]
    rc, out = inspect(d / name)
    m = out["model"]
    assert rc == 0 and not out["errors"], out["errors"]
    assert m["architecture"] == exp["architecture"], m["script_class"]
    c = m["script_class"]
    assert (c["library"], c["class"]) == (exp["library"], exp["class"]), c
    assert c["qualified"].startswith("__torch__.") and c["qualified"].endswith("." + exp["class"])
    assert f"of {exp['architecture']};" in m["verdict"], m["verdict"]
    assert m["server_compilable"] is True
    # The first convolution the code proves, and the output layer where it proves one.
    assert m["input_layer"]["kind"] == "conv2d" and m["input_layer"]["in_channels"] == exp["in_channels"], m
    if exp["outputs"] is None:
        assert m["output_layer"] is None, m["output_layer"]
    else:
        assert m["output_layer"]["kind"] == "linear" and m["output_layer"]["outputs"] == exp["outputs"]


def test_inspect_text_names_the_root_class(zoo):
    d, _ = zoo
    r = subprocess.run([str(byom_bin()), "inspect", str(d / "ultralytics_yolov8n.pt")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert ("architecture:  ultralytics DetectionModel (TorchScript root class "
            "__torch__.ultralytics.nn.tasks.DetectionModel)") in r.stdout, r.stdout
    assert "input enters: model.0.conv.weight [16, 3, 3, 3]" in r.stdout, r.stdout


def _package(d: Path, exp: dict, tmp: Path, **changes) -> Path:
    """A package around a zoo file, declared as the file is unless `changes` say otherwise."""
    size = exp.get("input_size", 64)
    classes = exp.get("num_classes", exp["output_shape"][1])
    detect = len(exp["output_shape"]) == 3
    pkg = Package(
        exp["file"], exp["file"], "yolov8_object_detection" if detect else "classification",
        [1, 3, size, size], exp["output_shape"], classes, [f"c{i}" for i in range(classes)],
        preprocessing={"resize": [size, size], "normalize": IMAGENET, "channel_order": "RGB"},
        postprocessing={"type": "yolo_nms" if detect else "softmax"},
    )
    pkg = copy.deepcopy(pkg)
    for k, v in changes.items():
        setattr(pkg, k, v)
    path = tmp / f"{exp['file']}.tar.gz"
    path.write_bytes(package_bytes(pkg, pt_data=(d / exp["file"]).read_bytes()))
    return path


@pytest.mark.parametrize("name", ["timm_convnext_atto_traced.pt", "tv_shufflenet_v2_traced.pt",
                                  "ultralytics_yolov8n.pt"])
def test_a_package_declared_as_the_model_is_valid_and_names_it(zoo, name, tmp_path):
    d, expected = zoo
    rc, rep = validate(_package(d, expected[name], tmp_path))
    assert rc == 0 and rep["valid"], rep["errors"]
    assert not {w["code"] for w in rep["warnings"]} & {"BYOM611", "BYOM612", "BYOM620", "BYOM621"}, rep["warnings"]
    assert rep["model"]["architecture"] == expected[name]["architecture"]


@pytest.mark.parametrize("name", ["tv_shufflenet_v2_traced.pt", "ultralytics_yolov8n.pt"])
def test_channels_last_input_is_one_error_with_the_shape_to_write(zoo, name, tmp_path):
    d, expected = zoo
    exp = expected[name]
    s = exp.get("input_size", 64)
    rc, rep = validate(_package(d, exp, tmp_path, input_shape=[1, s, s, 3]))
    assert rc == 1 and not rep["valid"]
    assert [e["code"] for e in rep["errors"]] == ["BYOM621"], rep["errors"]
    msg = rep["errors"][0]["message"]
    assert "NHWC" in msg and msg.endswith(f"write [1, 3, {s}, {s}]"), msg
    # Not four warnings saying the same wrong axis again (unusual channels, resize, normalize).
    codes = {w["code"] for w in rep["warnings"]}
    assert not codes & {"BYOM507", "BYOM509", "BYOM510", "BYOM611"}, rep["warnings"]


def test_a_traced_1000_class_head_declared_as_3_classes_is_an_error(zoo, tmp_path):
    """The issue's case: torchvision's default head (1000 outputs), three classes declared."""
    d, expected = zoo
    exp = expected["tv_mobilenet_v3_small_1000_traced.pt"]
    names = ["good", "scratch", "dent"]
    rc, rep = validate(_package(d, exp, tmp_path, output_shape=[1, 3], num_classes=3, class_names=names))
    assert rc == 1 and not rep["valid"]
    err = next(e for e in rep["errors"] if e["code"] == "BYOM620")
    assert "classifier.3.weight [1000, 1024] has 1000 outputs" in err["message"], err["message"]
    # And pack refuses to write such a package in the first place.
    r = subprocess.run([str(byom_bin()), "pack", str(d / exp["file"]), "--input", "1,3,64,64",
                        "--classes", ",".join(names), "-o", str(tmp_path / "packed.tar.gz")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "BYOM620" in r.stdout + r.stderr, r.stdout + r.stderr


def test_a_head_only_the_code_proves_is_an_error_too(zoo, tmp_path):
    """MyNet's head is named `out`, no classifier name: its forward returning that Linear's
    output is what proves the width."""
    d, expected = zoo
    exp = expected["main_mynet_traced.pt"]
    rc, rep = validate(_package(d, exp, tmp_path, output_shape=[1, 5], num_classes=5,
                                class_names=[f"c{i}" for i in range(5)]))
    assert rc == 1 and not rep["valid"]
    err = next(e for e in rep["errors"] if e["code"] == "BYOM620")
    assert "out.weight [3, 8] has 3 outputs (its forward returns that layer's output)" in err["message"], err
