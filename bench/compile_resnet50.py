#!/usr/bin/env python3
"""ResNet-50 compile benchmark: byom's Rust/libtorch pipeline vs Python torch doing the same steps.

    python bench/compile_resnet50.py [--kind state_dict|traced] [--bin PATH] [--runs 20] [--size 224]

Writes bench/compile_resnet50_<kind>.result.json (or --out).

1. Builds a torchvision ResNet-50 (2 classes, random weights, non-trivial batch-norm statistics),
   saves its state dict and packages it (tests/fixtures/make_packages.py's exporter).
2. byom: `compile PKG --target x86_64-cpu` (the example binary of crates/byom-compile; release
   build by default). Wall time of the whole process: re-validation of the package, extraction,
   .pt inspection, rebuilding ResNet-50 in Rust, loading the tensors, tracing, forward + shape
   check, freeze, reload + compare, latency of eager / frozen / each load-time candidate
   (oneDNN Graph fusion, optimize_for_inference; the fastest is kept), bundle.
3. Python, same steps minus byom's validation and inspection: extract the .pt from the tar.gz,
   torch.load(weights_only=True), torchvision resnet50 + load_state_dict, trace, forward + shape
   check, freeze, save, reload + compare, latency of eager / frozen / oneDNN Graph fusion /
   optimize_for_inference, write the model and a SHA256.
Both use 1 intra-op thread (byom's default; fixed so latencies compare). Latencies of the
frozen artifact vs the eager TorchScript module come from the same run (byom's report).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torchvision

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_packages as mp  # noqa: E402


def percentile(times, q):
    s = sorted(times)
    k = max(1, -(-len(s) * q // 100))
    return s[int(k) - 1]


def make_package(path: Path, size: int, kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=2).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    buf = io.BytesIO()
    if kind == "traced":
        x = torch.linspace(-1, 1, 3 * size * size).reshape(1, 3, size, size)
        torch.jit.save(torch.jit.trace(model, x), buf)
    else:
        torch.save(model.state_dict(), buf)
    pkg = mp.Package(
        "unused", "resnet50_classifier.pt", "classification", [1, 3, size, size], [1, 2], 2, ["good", "defect"],
        preprocessing={"resize": [size, size], "normalize": mp.IMAGENET, "channel_order": "RGB"},
        postprocessing={"type": "softmax"},
    )
    path.write_bytes(mp.package_bytes(pkg, pt_data=buf.getvalue()))
    return model


def python_pipeline(pkg: Path, work: Path, size: int, runs: int, warmup: int, kind: str) -> dict:
    t0 = time.perf_counter()
    with tarfile.open(pkg) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".pt"))
        data = tar.extractfile(member).read()
    shape = (1, 3, size, size)
    x = torch.linspace(-1, 1, 3 * size * size).reshape(shape)
    if kind == "traced":
        model = torch.jit.load(io.BytesIO(data)).eval()
    else:
        sd = torch.load(io.BytesIO(data), weights_only=True)
        model = torchvision.models.resnet50(num_classes=2)
        model.load_state_dict(sd)
        model.eval()
    with torch.no_grad():
        eager = torch.jit.trace(model, x) if kind != "traced" else model
        ref = eager(x)
        assert list(ref.shape) == [1, 2]
        eager.save(str(work / "eager.pt"))
        frozen = torch.jit.freeze(eager)
        frozen.save(str(work / "model.pt"))
        reloaded = torch.jit.load(str(work / "model.pt"))

        def timed(m):
            for _ in range(warmup):
                m(x)
            ts = []
            for _ in range(runs):
                a = time.perf_counter()
                y = m(x)
                ts.append((time.perf_counter() - a) * 1000)
            return y, ts

        y, frozen_ts = timed(reloaded)
        err = ((y - ref).abs().max() / ref.abs().max()).item()
        _, eager_ts = timed(torch.jit.load(str(work / "eager.pt")))
        _, opt_ts = timed(torch.jit.optimize_for_inference(torch.jit.load(str(work / "model.pt"))))
        torch.jit.enable_onednn_fusion(True)
        try:
            _, fused_ts = timed(torch.jit.load(str(work / "model.pt")))
        finally:
            torch.jit.enable_onednn_fusion(False)
    hashlib.sha256((work / "model.pt").read_bytes()).hexdigest()
    wall = time.perf_counter() - t0
    return {
        "wall_s": round(wall, 2),
        "max_rel_error": err,
        "eager_p50_ms": round(percentile(eager_ts, 50), 2),
        "frozen_p50_ms": round(percentile(frozen_ts, 50), 2),
        "optimize_for_inference_p50_ms": round(percentile(opt_ts, 50), 2),
        "onednn_fusion_p50_ms": round(percentile(fused_ts, 50), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=None)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--kind", choices=["state_dict", "traced"], default="state_dict")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    binary = Path(args.bin) if args.bin else REPO / "target" / "release" / "examples" / "compile"
    if not binary.is_file():
        print(f"{binary} not found: cargo build --release -p byom-compile --example compile", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pkg = tmp / "resnet50.tar.gz"
        make_package(pkg, args.size, args.kind)
        t0 = time.perf_counter()
        p = subprocess.run(
            [str(binary), str(pkg), "--target", "x86_64-cpu", "-o", str(tmp / "out"), "--runs", str(args.runs)],
            capture_output=True, text=True,
        )
        byom_wall = time.perf_counter() - t0
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        report = json.loads((tmp / "out" / "report.json").read_text())
        target = report["targets"][0]
        v = target["verification"]
        (tmp / "py").mkdir()
        py = python_pipeline(pkg, tmp / "py", args.size, args.runs, 3, args.kind)
        result = {
            "package_kind": args.kind,
            "package_bytes": pkg.stat().st_size,
            "input": [1, 3, args.size, args.size],
            "threads": 1,
            "runs": args.runs,
            "byom": {
                "wall_s": round(byom_wall, 2),
                "target_duration_ms": target["duration_ms"],
                "max_rel_error": v["max_rel_error"],
                "eager_p50_ms": report["model"]["eager_latency"]["p50_ms"],
                "eager_p95_ms": report["model"]["eager_latency"]["p95_ms"],
                "frozen_p50_ms": v["latency"]["p50_ms"],
                "frozen_p95_ms": v["latency"]["p95_ms"],
                "with_load_time_step_p50_ms": (v["latency_after_load_time_steps"] or {}).get("p50_ms"),
                "load_time_steps": target["load_time_steps"],
            },
            "python": py,
        }
        b = result["byom"]
        b["frozen_vs_eager"] = round(b["frozen_p50_ms"] / b["eager_p50_ms"], 3)
        if b["with_load_time_step_p50_ms"]:
            b["with_load_time_step_vs_eager"] = round(b["with_load_time_step_p50_ms"] / b["eager_p50_ms"], 3)
        result["byom_vs_python_wall"] = round(b["wall_s"] / py["wall_s"], 3)
    out = Path(args.out or REPO / "bench" / f"compile_resnet50_{args.kind}.result.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
