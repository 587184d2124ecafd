"""`byom inspect` agrees with real PyTorch, and refuses every hostile file of the corpus.

Files are generated at test time by tests/fixtures/make_pt.py with the installed torch; for
each, the inventory byom reports (names, shapes, dtypes, element counts) is compared with what
torch itself loads. The picklescan corpus (../shared/corpus/picklescan) is inspected file by
file: hostile files must be refused, the benign PyTorch files must raise no safety alarm.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from helpers import byom_bin, tar_infos, tar_members  # noqa: E402  (also puts tests/fixtures on the path)

import make_pt  # noqa: E402

SAFETY_CODES = {"BYOM601", "BYOM602", "BYOM603"}


def inspect(path: Path, *extra: str) -> tuple[int, dict]:
    r = subprocess.run([str(byom_bin()), "inspect", "--format", "json", *extra, str(path)],
                       capture_output=True, timeout=300)
    assert r.returncode in (0, 1), f"byom inspect could not run on {path}: {r.stderr.decode()}"
    return r.returncode, json.loads(r.stdout)


@pytest.fixture(scope="session")
def pt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pt")


@pytest.fixture(scope="session")
def made(pt_dir) -> dict:
    return {}


def _make(pt_dir: Path, made: dict, kind: str) -> tuple[Path, dict]:
    if kind not in made:
        path = pt_dir / f"{kind}.pt"
        made[kind] = (path, make_pt.make(kind, path))
    return made[kind]


def _dtype(t) -> str:
    return str(t.dtype).removeprefix("torch.")


def torch_tensors(path: Path, info: dict) -> dict[str, tuple[list[int], str, int]]:
    """What torch itself reads: name -> (shape, dtype, numel)."""
    kind = info["kind"]
    if kind in ("torchscript_traced", "torchscript_scripted"):
        sd = torch.jit.load(str(path)).state_dict()
    elif kind == "pickled_module":
        sd = torch.load(str(path), weights_only=False).state_dict()
    else:
        obj = torch.load(str(path), weights_only=True)
        sd = obj[info["checkpoint_key"]] if kind == "checkpoint" else obj
    return {k: (list(v.shape), _dtype(v), v.numel()) for k, v in sd.items()}


@pytest.mark.parametrize("kind", make_pt.KINDS)
def test_inspect_matches_torch(kind, pt_dir, made):
    path, info = _make(pt_dir, made, kind)
    rc, out = inspect(path)
    model = out["model"]
    assert model["kind"] == info["kind"], out
    codes = {i["code"] for i in out["errors"] + out["warnings"]}
    if info["kind"] == "not_pytorch":
        assert rc == 1 and "BYOM600" in codes
        return
    if info["kind"] == "pickled_module":
        assert rc == 1 and "BYOM601" in codes and "BYOM602" not in codes
    else:
        assert not (codes & SAFETY_CODES), out["errors"]
        assert model["safety"] == "safe"
        assert rc == 0, out["errors"]
    if info["kind"] in ("torchscript_traced", "torchscript_scripted"):
        # Named from the root class (`torchvision ResNet`), which the JSON carries typed too.
        assert model["architecture"] == info["script_architecture"], model["script_class"]
        assert model["script_class"]["class"] == info["script_architecture"].split()[-1]
    else:
        assert model["architecture"] == info["architecture"]
    if info["architecture"]:
        assert model["arch"]["num_classes"] == info["num_classes"]
        assert model["arch"]["in_channels"] == info["in_channels"]
    if info["kind"] == "legacy":
        assert "BYOM607" in codes
    if info["kind"] == "checkpoint":
        assert "BYOM608" in codes and model["checkpoint_key"] == info["checkpoint_key"]
    if info["kind"] == "state_dict" and not info["architecture"]:
        assert "BYOM609" in codes
    if info["kind"] in ("state_dict", "checkpoint") and info["architecture"]:
        # Every builder of the zoo table is rebuilt by the server with its own library
        # (docs/architectures.md): recognised means compilable, and no BYOM609.
        assert model["server_compilable"] is True, model["architecture"]
        assert "BYOM609" not in codes, codes
    # PyTorch 1.8 verdict.
    assert ("BYOM702" in codes) == info["needs_newer_than_1_8"], (codes, model["min_torch_reasons"])
    if info["why"]:
        assert any(info["why"] in r for r in model["min_torch_reasons"]), model["min_torch_reasons"]
    if info.get("min_torch"):
        assert model["min_torch"] == info["min_torch"], model["min_torch_reasons"]

    theirs = torch_tensors(path, info)
    ours = {t["name"]: (t["shape"], t["dtype"], t["numel"]) for t in model["tensors"]}
    assert set(ours) == set(theirs)
    for name, (shape, dtype, numel) in theirs.items():
        assert ours[name] == (shape, dtype, numel), name
    assert model["parameter_count"] == sum(n for _, _, n in theirs.values())


def test_required_torch_18_turns_warning_into_error(pt_dir, made):
    path, _ = _make(pt_dir, made, "traced_gelu_tanh")
    rc, out = inspect(path, "--required-torch", "1.8")
    assert rc == 1
    [err] = [e for e in out["errors"] if e["code"] == "BYOM702"]
    assert "PyTorch 1.8" in err["message"] and "gelu(approximate=...) needs PyTorch ≥ 1.12" in err["message"]
    rc, out = inspect(path)
    assert rc == 0
    assert any("gelu(approximate=...) needs PyTorch ≥ 1.12" in w["message"] for w in out["warnings"])


def test_storage_offsets_and_strides(pt_dir, made):
    path, _ = _make(pt_dir, made, "sd_shared_storage")
    _, out = inspect(path)
    sd = torch.load(str(path), weights_only=True)
    by_name = {t["name"]: t for t in out["model"]["tensors"]}
    for name, t in sd.items():
        assert by_name[name]["storage_offset"] == t.storage_offset(), name
        assert by_name[name]["strides"] == list(t.stride()), name


def test_chunking_does_not_change_the_verdict(pt_dir, made):
    """The same bytes through a package-less stream: `inspect` reads 1 MiB chunks; compare
    a resnet (multi-chunk) with its TorchScript twin's structure sanity."""
    path, _ = _make(pt_dir, made, "sd_resnet50")
    _, a = inspect(path)
    assert a["model"]["tensor_count"] == 320
    assert a["model"]["file_bytes"] == path.stat().st_size


# ---- the picklescan corpus ------------------------------------------------------------------

BENIGN_PYTORCH = {"pytorch_model.bin", "new_pytorch_model.bin"}
HOSTILE_MARKERS = ("malicious", "GHSA-", "exploit", "sploit", "bypass", "FileIO", "FileHandler",
                   "urlopen", "CodeType", "cloudpickle", "dns_exfiltration")


def _corpus_files(corpus_dir: Path) -> list[Path]:
    return sorted(p for sub in ("data", "data2") for p in (corpus_dir / sub).iterdir() if p.is_file())


def test_corpus_every_file(corpus_dir):
    files = _corpus_files(corpus_dir)
    assert len(files) > 50
    failures = []
    for f in files:
        rc, out = inspect(f)
        codes = {i["code"] for i in out["errors"]}
        hostile = any(m in f.name for m in HOSTILE_MARKERS)
        if f.name in BENIGN_PYTORCH:
            if codes & SAFETY_CODES or out["model"]["safety"] != "safe":
                failures.append(f"{f.name}: false alarm {codes}")
        elif hostile:
            if rc != 1 or not out["errors"]:
                failures.append(f"{f.name}: hostile file accepted")
            if out["model"]["safety"] == "safe" and not codes & {"BYOM600", "BYOM604", "BYOM606"}:
                failures.append(f"{f.name}: hostile file called safe")
        elif rc != 1:
            failures.append(f"{f.name}: a non-model file was accepted")
    assert not failures, "\n".join(failures)


def test_corpus_names_the_dangerous_call(corpus_dir):
    expect = {
        "data/malicious1_v4.pkl": "builtins.eval",
        "data/malicious2_v0.pkl": "posix.system",
        "data/malicious14.pkl": "runpy._run_code",
        "data/pytorch_magic_bypass.pt": "__builtin__.eval",
        "data/malicious1.zip": "builtins.eval",
        "data/malicious6.pkl": "requests.api.get",
        "data2/GHSA-vqmv-47xg-9wpr.pkl": "pty.spawn",
    }
    for rel, call in expect.items():
        _, out = inspect(corpus_dir / rel)
        msgs = [e["message"] for e in out["errors"] if e["code"] == "BYOM602"]
        assert msgs and call in msgs[0], (rel, out["errors"])


def test_corpus_zip_name_mismatch(corpus_dir):
    _, out = inspect(corpus_dir / "data" / "malicious1_central_directory.zip")
    assert "BYOM606" in {e["code"] for e in out["errors"]}


def test_corpus_benign_legacy_matches_torch(corpus_dir):
    path = corpus_dir / "data" / "pytorch_model.bin"
    _, out = inspect(path)
    assert out["model"]["kind"] == "legacy"
    sd = torch.load(str(path), weights_only=True)
    ours = {t["name"]: (t["shape"], t["dtype"]) for t in out["model"]["tensors"]}
    assert ours == {k: (list(v.shape), _dtype(v)) for k, v in sd.items()}


# ---- byom pack ------------------------------------------------------------------------------


def _pack(pt: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(byom_bin()), "pack", str(pt), *args, "-o", str(out)], capture_output=True,
                          timeout=300, text=True)


@pytest.mark.parametrize("kind,args", [
    ("sd_resnet18", ["--input", "1,3,224,224", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225",
                     "--postprocessing", "softmax", "--threshold", "0.5"]),
    ("traced_tiny", ["--input", "1,3,16,16", "--classes", "good,defect", "--resize", "16,16",
                     "--channel-order", "BGR", "--postprocessing", "argmax", "--name", "Tiny", "--version", "2.0.0"]),
    ("sd_resnet18_gray_10", ["--input", "1,1,128,96", "--type", "multi_class_classification"]),
])
def test_pack_passes_both_validators(kind, args, pt_dir, made, tmp_path):
    import guide_validator
    pt, info = _make(pt_dir, made, kind)
    out = tmp_path / "model.tar.gz"
    r = _pack(pt, out, *args)
    assert r.returncode == 0, r.stderr
    assert guide_validator.validate_dda_package(str(out)) is True
    v = subprocess.run([str(byom_bin()), "validate", str(out)], capture_output=True, text=True, timeout=300)
    assert v.returncode == 0, v.stdout + v.stderr
    names = [m.name for m in tar_infos(out)]
    members = tar_members(out)
    mochi = json.loads(members["mochi.json"])
    manifest = json.loads(members["export_artifacts/manifest.json"])
    assert names == ["config.yaml", "mochi.json", "export_artifacts/manifest.json", f"export_artifacts/{kind}.pt"]
    assert manifest["compilable_models"][0]["filename"] == f"{kind}.pt"
    shape = [int(x) for x in args[args.index("--input") + 1].split(",")]
    assert mochi["stages"][0]["input_shape"] == shape == manifest["input_shape"]
    if info["architecture"]:
        # Inferred from the classifier head when no classes are given.
        assert mochi["stages"][0]["num_classes"] == info["num_classes"]
        assert mochi["model_info"]["architecture"] == info["architecture"]
    # Deterministic: packing twice gives the same bytes.
    out2 = tmp_path / "again.tar.gz"
    assert _pack(pt, out2, *args).returncode == 0
    assert out.read_bytes() == out2.read_bytes()


@pytest.mark.parametrize("resize", [["--resize", "128,96"], []], ids=["explicit", "defaulted"])
def test_pack_non_square_resize_is_height_then_width(resize, pt_dir, made, tmp_path):
    """Issue 10: --resize is H,W like --input's H,W, and manifest.json gets [height, width]
    (what BYOM509 and the page's builder use), so a non-square model is never transposed.
    The defaulted resize (preprocessing given, no --resize) used to be written [width, height]."""
    import tarfile

    pt, _ = _make(pt_dir, made, "sd_resnet18")
    out = tmp_path / "model.tar.gz"
    r = _pack(pt, out, "--input", "1,3,128,96", *resize, "--mean", "0.5,0.5,0.5",
              "--std", "0.25,0.25,0.25", "--postprocessing", "softmax")
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as t:
        manifest = json.load(t.extractfile("export_artifacts/manifest.json"))
        config = t.extractfile("config.yaml").read().decode()
    assert manifest["preprocessing"]["resize"] == [128, 96]
    assert "image_width: 96\n  image_height: 128\n" in config
    v = subprocess.run([str(byom_bin()), "validate", "--format", "json", str(out)], capture_output=True, text=True,
                       timeout=300)
    report = json.loads(v.stdout)
    assert report["valid"] and "BYOM509" not in {w["code"] for w in report["warnings"]}, report


@pytest.mark.parametrize("command", ["validate", "inspect", "pack"])
def test_pack_and_friends_refuse_a_required_torch_that_is_not_a_version(command, tmp_path):
    """`--required-torch banana` used to become the default 2.11 silently; now it is refused."""
    extra = ["--input", "1,3,16,16"] if command == "pack" else []
    r = subprocess.run([str(byom_bin()), command, str(tmp_path / "x.pt"), *extra, "--required-torch", "banana"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert '"banana" is not a torch version: expected major.minor' in r.stderr, r.stderr


def test_pack_settings_file_with_a_bad_required_torch_is_refused(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"required_torch": "banana"}))
    r = subprocess.run([str(byom_bin()), "validate", "--settings", str(settings), str(tmp_path / "x.tar.gz")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "invalid settings" in r.stderr and '"banana" is not a torch version' in r.stderr, r.stderr


@pytest.mark.parametrize("kind", ["whole_module", "not_pytorch"])
def test_pack_refuses_unusable_files(kind, pt_dir, made, tmp_path):
    pt, _ = _make(pt_dir, made, kind)
    r = _pack(pt, tmp_path / "x.tar.gz", "--input", "1,3,16,16")
    assert r.returncode == 1 and "refusing" in r.stderr
    assert not (tmp_path / "x.tar.gz").exists()


def test_pack_refuses_hostile_corpus_file(corpus_dir, tmp_path):
    r = _pack(corpus_dir / "data" / "malicious1_v4.pkl", tmp_path / "x.tar.gz", "--input", "1,3,16,16")
    assert r.returncode == 1 and "BYOM602" in r.stderr


def test_inspect_accepts_a_package(pt_dir, made, tmp_path):
    pt, _ = _make(pt_dir, made, "sd_resnet18")
    out = tmp_path / "p.tar.gz"
    assert _pack(pt, out, "--input", "1,3,224,224").returncode == 0
    rc, res = inspect(out)
    assert rc == 0 and res["model"]["architecture"] == "torchvision/resnet18"


class _StringStem(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 4, stride=4)

    def forward(self, tag: str, x: torch.Tensor) -> torch.Tensor:
        if tag == ")":
            raise ValueError("tag \"(\" or ')', not " + tag)
        return self.conv(x)


class _StringNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _StringStem()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, sep: str = '"(,') -> torch.Tensor:
        y = self.stem("a)(,\"", x)
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))


def test_brackets_quotes_and_commas_in_scripted_strings_are_text(tmp_path):
    """TorchScript prints string constants as they are: a call `self.stem("a)(,\\"", x)`, a
    default `'"(,'` and a raise message with `(` and `')'` must not open brackets or split
    arguments for the code reader (before, it found neither the signature nor either layer)."""
    path = tmp_path / "strings.pt"
    torch.jit.script(_StringNet().eval()).save(str(path))
    rc, out = inspect(path)
    assert rc == 0, out
    m = out["model"]
    assert m["forward"]["params"] == [{"name": "x", "type": "Tensor", "default": None},
                                      {"name": "sep", "type": "str", "default": '"\\"(,"'}], m["forward"]
    assert (m["input_layer"]["path"], m["input_layer"]["in_channels"]) == ("stem.conv", 3), m["input_layer"]
    assert (m["output_layer"]["path"], m["output_layer"]["outputs"]) == ("fc", 2), m["output_layer"]
