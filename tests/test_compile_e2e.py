"""End-to-end tests of the compile pipeline (crates/byom-compile) with real PyTorch.

Each test builds a model with torch, packages it as a valid package (tests/fixtures/
make_packages.py's exporter), compiles it for all four targets through the pipeline's example
binary (`cargo build -p byom-compile --example compile`; BYOM_COMPILE_BIN overrides), then loads
every artifact with real Python torch and compares its output with the original model's on the
fixed input the compiler uses (linspace(-1, 1) in the declared shape).

The CUDA and Jetson artifacts are loaded here on the CPU (map_location="cpu"): this host has no
GPU, which the report must say.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_packages as mp  # noqa: E402

TARGETS = ["x86_64-cpu", "x86_64-cuda", "arm64-cpu", "jetson-xavier"]
BUNDLE_FILES = {"model.pt", "deployment.json", "SHA256SUMS", "load.py", "load.cpp", "README.txt"}
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


@pytest.fixture(scope="session")
def compile_bin() -> Path:
    env_bin = os.environ.get("BYOM_COMPILE_BIN")
    if env_bin:
        return Path(env_bin)
    env = dict(os.environ, LIBTORCH_USE_PYTORCH="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    subprocess.run(
        ["cargo", "build", "-q", "-p", "byom-compile", "--example", "compile"], cwd=REPO, env=env, check=True
    )
    return REPO / "target" / "debug" / "examples" / "compile"


def fixed_input(shape, dtype=torch.float32):
    n = 1
    for d in shape:
        n *= d
    return torch.linspace(-1.0, 1.0, n).reshape(shape).to(dtype)


def package(tmp: Path, name: str, pt: bytes, input_shape, output_shape, classes: int, gzip_level: int = 6,
            task: str = "classification") -> Path:
    pkg = mp.Package(
        "unused", f"{name}.pt", task, list(input_shape), list(output_shape) if output_shape else None,
        classes, [f"class_{i}" for i in range(classes)],
        preprocessing={"resize": list(input_shape[2:]), "normalize": mp.IMAGENET, "channel_order": "RGB"},
        postprocessing={"type": "softmax" if task == "classification" else "argmax_per_pixel"},
    )
    path = tmp / f"{name}.tar.gz"
    path.write_bytes(mp.gz(mp.tar_bytes(mp.members_of(pkg, pt_data=pt)), level=gzip_level))
    return path


def run_compile(compile_bin: Path, pkg: Path, out: Path, targets=TARGETS, runs: int = 3):
    # State dicts are rebuilt by this Python (torch, torchvision, timm of tests/requirements.txt).
    args = [str(compile_bin), str(pkg), "-o", str(out), "--runs", str(runs), "--python", sys.executable]
    for t in targets:
        args += ["--target", t]
    p = subprocess.run(args, capture_output=True, text=True, timeout=900)
    report = json.loads((out / "report.json").read_text())
    return p, report


def jit_bytes(module) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue()


class SmallNet(torch.nn.Module):
    """Conv + batch norm (so freezing folds something) + a classifier."""

    def __init__(self, classes=4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, classes)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


class Branchy(SmallNet):
    """Data-dependent control flow: only `torch.jit.script` keeps both branches."""

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        if bool(y.mean() > 0.1):
            y = y * 2.0
        else:
            y = y - 1.0
        return self.fc(y.mean(dim=(2, 3)))


class TwoHeads(SmallNet):
    def forward(self, x):
        feats = torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))
        return feats, self.fc(feats)


def check_bundles(out: Path, report: dict, original, input_shape):
    """Every target's bundle is complete, its sums are right, and its model computes what the
    original computes (within the target precision's tolerance)."""
    assert report["failure_reason"] is None, report["failure_reason"]
    by_target = {t["target"]: t for t in report["targets"]}
    assert set(by_target) == set(TARGETS)
    with torch.no_grad():
        expected = original(fixed_input(input_shape))
        if isinstance(expected, tuple):
            expected = expected[int(report["model"]["checked_output"].split()[1])]
    for target in TARGETS:
        result = by_target[target]
        assert result["status"] == "succeeded", (target, result["failure_reason"], result["log"])
        d = out / target
        assert {p.name for p in d.iterdir()} == BUNDLE_FILES
        with tarfile.open(out / f"{target}.tar.gz") as tar:
            assert set(tar.getnames()) == BUNDLE_FILES
        for line in (d / "SHA256SUMS").read_text().splitlines():
            digest, name = line.split("  ")
            assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest, (target, name)
        dep = json.loads((d / "deployment.json").read_text())
        assert dep["target"] == target and dep["input"]["shape"] == list(input_shape)
        assert dep["artifact"]["sha256"] == result["artifact_sha256"]
        assert dep["runtime"]["min_torch"] and dep["runtime"]["target_torch"]
        precision = dep["artifact"]["precision"]
        module = torch.jit.load(str(d / "model.pt"), map_location="cpu")
        dtype = torch.float16 if precision == "fp16" else torch.float32
        with torch.no_grad():
            got = module(fixed_input(input_shape, dtype))
            if isinstance(got, tuple):
                got = got[int(dep["output"]["selector"][1:])]
        err = (got.float() - expected).abs().max().item() / expected.abs().max().item()
        assert err <= TOLERANCE[precision], (target, err)
        assert list(got.shape) == dep["output"]["shape"]
    # The two CPU targets share one artifact and say so; the others are genuinely different.
    cpu, arm = by_target["x86_64-cpu"], by_target["arm64-cpu"]
    assert cpu["artifact_sha256"] == arm["artifact_sha256"]
    assert cpu["identical_artifact_to"] == ["arm64-cpu"] and arm["identical_artifact_to"] == ["x86_64-cpu"]
    assert by_target["jetson-xavier"]["artifact_sha256"] != cpu["artifact_sha256"]
    assert by_target["jetson-xavier"]["precision"] == "fp16"
    # Honest verification statements.
    assert by_target["arm64-cpu"]["verification"]["status"].startswith("built here, not run on the device")
    assert by_target["jetson-xavier"]["verification"]["status"].startswith("built here, not run on the device")
    # Never timed on the build host: a Jetson's speed is not this host's.
    assert by_target["jetson-xavier"]["verification"]["latency"] is None
    assert by_target["jetson-xavier"]["verification"]["latency_not_measured"].startswith("not measured: no device")
    cuda_status = by_target["x86_64-cuda"]["verification"]["status"]
    if report["host"]["cuda_device"]:
        assert cuda_status.startswith("verified on ")
    else:
        assert cuda_status.startswith("built, not run: no GPU")
        assert by_target["x86_64-cuda"]["load_time_steps"] == ["to_device_and_freeze"]
    assert by_target["x86_64-cpu"]["verification"]["latency"]["p50_ms"] > 0
    assert report["model"]["eager_latency"]["p50_ms"] > 0


def test_traced_model_all_targets(tmp_path, compile_bin):
    torch.manual_seed(1)
    model = SmallNet().eval()
    shape = (1, 3, 32, 32)
    pkg = package(tmp_path, "traced", jit_bytes(torch.jit.trace(model, fixed_input(shape))), shape, (1, 4), 4)
    p, report = run_compile(compile_bin, pkg, tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert report["model"]["kind"] == "torchscript_traced"
    check_bundles(tmp_path / "out", report, model, shape)


def test_scripted_model_all_targets(tmp_path, compile_bin):
    torch.manual_seed(2)
    model = Branchy().eval()
    shape = (1, 3, 24, 40)
    pkg = package(tmp_path, "scripted", jit_bytes(torch.jit.script(model)), shape, (1, 4), 4)
    p, report = run_compile(compile_bin, pkg, tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert report["model"]["kind"] == "torchscript_scripted"
    check_bundles(tmp_path / "out", report, model, shape)


def with_random_bn_statistics(model):
    """Batch-norm running statistics away from (0, 1), so that folding them into the
    convolutions changes the weights and a wrong fold shows in the outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_resnet18_state_dict_all_targets(tmp_path, compile_bin):
    torch.manual_seed(3)
    model = with_random_bn_statistics(torchvision.models.resnet18(num_classes=3).eval())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    shape = (1, 3, 64, 64)
    pkg = package(tmp_path, "resnet18", buf.getvalue(), shape, (1, 3), 3)
    p, report = run_compile(compile_bin, pkg, tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert report["model"]["kind"] == "state_dict"
    assert report["model"]["architecture"] == "torchvision/resnet18"
    assert any("rebuilt with torchvision's own constructor" in line for line in report["log"]), report["log"]
    check_bundles(tmp_path / "out", report, model, shape)


# Every state-dict family the compiler used to build with hand-written tch ports (resnet18
# above), now rebuilt by torchvision itself (crates/byom-compile/python/zoo_build.py), one
# instance each, on the smallest input the architecture takes (AlexNet's three stride-2 pools
# need >= 63 pixels). AlexNet (233 MB) is the large-file case; VGG (~500 MB each, 65 s here)
# passed the same test and is left to the whole-zoo sweep (docs/architectures.md) to keep the
# test command within its 30 minutes.
ARCH_CASES = [
    ("densenet121", (1, 3, 64, 64)),
    ("alexnet", (1, 3, 64, 64)),
    ("squeezenet1_1", (1, 3, 64, 64)),
    ("mobilenet_v2", (1, 3, 64, 64)),
    ("efficientnet_b0", (1, 3, 64, 64)),
]


@pytest.mark.parametrize("arch,shape", ARCH_CASES, ids=[a for a, _ in ARCH_CASES])
def test_torchvision_state_dict_matches_torchvision(tmp_path, compile_bin, arch, shape):
    """A random torchvision `arch` (random batch-norm statistics too, so folding them matters),
    saved as a state dict, compiled for x86_64-cpu: the artifact computes what torchvision
    computes."""
    torch.manual_seed(6)
    model = with_random_bn_statistics(getattr(torchvision.models, arch)(num_classes=3).eval())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    # Random weights do not compress: stored (level 0) gzip packs VGG's ~500 MB in about a
    # second instead of ~18 s at level 1.
    pkg = package(tmp_path, arch, buf.getvalue(), shape, (1, 3), 3, gzip_level=0)
    del buf
    p, report = run_compile(compile_bin, pkg, tmp_path / "out", targets=["x86_64-cpu"], runs=1)
    assert p.returncode == 0, p.stderr
    assert report["failure_reason"] is None, report["failure_reason"]
    assert report["model"]["kind"] == "state_dict"
    assert report["model"]["architecture"] == f"torchvision/{arch}"
    [result] = report["targets"]
    assert result["status"] == "succeeded", (result["failure_reason"], result["log"])
    module = torch.jit.load(str(tmp_path / "out" / "x86_64-cpu" / "model.pt"), map_location="cpu")
    with torch.no_grad():
        expected = model(fixed_input(shape))
        got = module(fixed_input(shape))
    assert got.shape == expected.shape == (1, 3)
    err = (got - expected).abs().max().item() / expected.abs().max().item()
    print(f"{arch}: max relative error {err:.2e}")
    assert err <= TOLERANCE["fp32"], err


# Families the hand-written builders never had; the core recognises them from the zoo
# fingerprint table. The rest of the zoo: bench/zoo_compile.py, results in docs/zoo-compile.md.
ZOO_CASES = [
    ("shufflenet_v2_x0_5", "classification", (1, 3)),
    ("mnasnet0_5", "classification", (1, 3)),
    ("lraspp_mobilenet_v3_large", "semantic_segmentation", (1, 3, 64, 64)),
]


@pytest.mark.parametrize("arch,task,out_shape", ZOO_CASES, ids=[c[0] for c in ZOO_CASES])
def test_zoo_state_dict_matches_the_library(tmp_path, compile_bin, arch, task, out_shape):
    """A torchvision family no hand-written builder had, as a state dict, compiled for
    x86_64-cpu: the core names it, the worker rebuilds it with torchvision, and the artifact
    computes what torchvision computes (a segmentation model's "out" included)."""
    torch.manual_seed(7)
    kwargs = {"weights_backbone": None} if task != "classification" else {}
    model = with_random_bn_statistics(torchvision.models.get_model(arch, num_classes=3, **kwargs).eval())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    shape = (1, 3, 64, 64)
    pkg = package(tmp_path, arch, buf.getvalue(), shape, out_shape, 3, gzip_level=0, task=task)
    p, report = run_compile(compile_bin, pkg, tmp_path / "out", targets=["x86_64-cpu"], runs=1)
    assert report["model"] and report["model"]["architecture"] == f"torchvision/{arch}", report["failure_reason"]
    assert p.returncode == 0, p.stderr
    [result] = report["targets"]
    assert result["status"] == "succeeded", (result["failure_reason"], result["log"])
    module = torch.jit.load(str(tmp_path / "out" / "x86_64-cpu" / "model.pt"), map_location="cpu")
    with torch.no_grad():
        expected = model(fixed_input(shape))
        got = module(fixed_input(shape))
    if isinstance(expected, dict):
        expected, got = expected["out"], got["out"]
    assert tuple(got.shape) == tuple(expected.shape) == out_shape
    err = (got - expected).abs().max().item() / expected.abs().max().item()
    print(f"{arch}: max relative error {err:.2e}")
    assert err <= TOLERANCE["fp32"], err


def test_tuple_output_checks_the_declared_element(tmp_path, compile_bin):
    torch.manual_seed(4)
    model = TwoHeads().eval()
    shape = (1, 3, 16, 16)
    pkg = package(tmp_path, "heads", jit_bytes(torch.jit.trace(model, fixed_input(shape))), shape, (1, 4), 4)
    p, report = run_compile(compile_bin, pkg, tmp_path / "out", targets=["x86_64-cpu"])
    assert p.returncode == 0, p.stderr
    assert report["model"]["checked_output"] == "element 1 of a tuple/list of 2"
    dep = json.loads((tmp_path / "out" / "x86_64-cpu" / "deployment.json").read_text())
    assert dep["output"]["selector"] == "#1"
    # TorchScript is named from its root class, from the validator's inspection to the bundle.
    assert dep["model"]["architecture"] == f"{TwoHeads.__module__.split('.')[0]} TwoHeads"
    assert report["model"]["architecture"] == dep["model"]["architecture"]


class UnnamedHead(torch.nn.Module):
    """A classifier whose head byom can prove neither by name (`out`) nor by code (the forward
    returns a flatten of the Linear's output, not the Linear's output itself): the validator can
    only warn about its width (BYOM612), so the compile's own output check acts."""

    def __init__(self, classes=4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.out = torch.nn.Linear(8, classes)

    def forward(self, x):
        return torch.flatten(self.out(torch.relu(self.conv(x)).mean(dim=(2, 3))), 1)


def test_output_shape_mismatch_fails_the_job_naming_both_shapes(tmp_path, compile_bin):
    shape = (1, 3, 16, 16)
    # A head named `fc` proves the width: such a package is invalid (BYOM620) and never loaded.
    named = jit_bytes(torch.jit.trace(SmallNet(classes=4).eval(), fixed_input(shape)))
    p, report = run_compile(compile_bin, package(tmp_path, "named", named, shape, (1, 5), 5), tmp_path / "o1",
                            targets=["x86_64-cpu"])
    assert p.returncode == 2 and "BYOM620" in report["failure_reason"], report["failure_reason"]
    model = UnnamedHead(classes=4).eval()
    pkg = package(tmp_path, "wrong", jit_bytes(torch.jit.trace(model, fixed_input(shape))), shape, (1, 5), 5)
    p, report = run_compile(compile_bin, pkg, tmp_path / "out", targets=["x86_64-cpu", "arm64-cpu"])
    assert p.returncode == 2
    reason = report["failure_reason"]
    assert "[1, 5]" in reason and "[1, 4]" in reason, reason
    assert all(t["status"] == "failed" and t["failure_reason"] == reason for t in report["targets"])
    assert not (tmp_path / "out" / "x86_64-cpu.tar.gz").exists()


def test_invalid_package_is_refused_before_loading(tmp_path, compile_bin):
    buf = io.BytesIO()
    torch.save(SmallNet(), buf)  # a whole pickled module: needs its source to load
    pkg = package(tmp_path, "pickled", buf.getvalue(), (1, 3, 16, 16), (1, 4), 4)
    p, report = run_compile(compile_bin, pkg, tmp_path / "out", targets=["x86_64-cpu"])
    assert p.returncode == 2
    assert "not valid" in report["failure_reason"] and "BYOM6" in report["failure_reason"], report["failure_reason"]


def test_bundle_load_py_runs_the_load_time_steps(tmp_path, compile_bin):
    torch.manual_seed(5)
    model = SmallNet().eval()
    shape = (1, 3, 32, 32)
    pkg = package(tmp_path, "loadpy", jit_bytes(torch.jit.trace(model, fixed_input(shape))), shape, (1, 4), 4)
    p, _ = run_compile(compile_bin, pkg, tmp_path / "out", targets=["x86_64-cpu", "x86_64-cuda"])
    assert p.returncode == 0, p.stderr
    for target in ["x86_64-cpu", "x86_64-cuda"]:
        r = subprocess.run(
            [sys.executable, str(tmp_path / "out" / target / "load.py"), "--device", "cpu"],
            capture_output=True, text=True, timeout=300,
        )
        assert r.returncode == 0, r.stderr
        assert "output [1, 4], expected [1, 4]" in r.stdout


def test_a_load_time_step_that_crashes_libtorch_costs_the_step_not_the_job(tmp_path, compile_bin):
    # The oneDNN Graph fuser (an x86_64-cpu load-time candidate) dies with SIGSEGV on this model
    # (tests/llga_crash.py, as on timm fastvit/nextvit); the candidate runs in a process of its
    # own, so the target still compiles, without the fuser, and the log says why.
    import llga_crash

    module = llga_crash.traced()
    shape = llga_crash.INPUT_SHAPE
    pkg = package(tmp_path, "llga", jit_bytes(module), shape, (1, llga_crash.CLASSES), llga_crash.CLASSES)
    p, report = run_compile(compile_bin, pkg, tmp_path / "out", targets=["x86_64-cpu"], runs=2)
    assert p.returncode == 0, (p.stderr, report)
    target = report["targets"][0]
    assert target["status"] == "succeeded", target
    log = "\n".join(report["log"] + target.get("log", []))
    assert "load-time step onednn_fusion failed here (it crashed libtorch: killed by signal 11 (SIGSEGV)" in log, log
    assert "onednn_fusion" not in target["load_time_steps"], target
    dep = json.loads((tmp_path / "out" / "x86_64-cpu" / "deployment.json").read_text())
    assert "onednn_fusion" not in json.dumps(dep.get("load_time_steps", [])), dep
    artifact = torch.jit.load(str(tmp_path / "out" / "x86_64-cpu" / "model.pt"), map_location="cpu")
    with torch.no_grad():
        got, want = artifact(fixed_input(shape)), module(fixed_input(shape))
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got, want)


def test_worker_main_writes_result_and_log(tmp_path, compile_bin):
    model = SmallNet().eval()
    shape = (1, 3, 16, 16)
    job = tmp_path / "job"
    job.mkdir()
    package(job, "pkg", jit_bytes(torch.jit.trace(model, fixed_input(shape))), shape, (1, 4), 4)
    (job / "job.json").write_text(json.dumps({"package": "pkg.tar.gz", "targets": ["arm64-cpu"], "options": {"timed_runs": 2}}))
    p = subprocess.run([str(compile_bin), "--worker", str(job)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    result = json.loads((job / "result.json").read_text())
    assert result["targets"][0]["status"] == "succeeded"
    assert (job / "out" / "arm64-cpu.tar.gz").is_file()
    assert "[arm64-cpu] checked the graph: no x86-only" in (job / "log.txt").read_text()
