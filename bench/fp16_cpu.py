"""fp16 models on CPU targets: keep fp16, or cast the weights to fp32? (docs/bench-compile.md)

For each model (random weights, `.half()`, traced as a user would ship it), on this host's CPU
with 1 intra-op thread (byom's default for every timed forward), input linspace(-1, 1) in
[1, 3, 224, 224]:

- keep: the fp16 TorchScript frozen as is, fp16 input (what x86_64-cpu / arm64-cpu shipped
  before: fp16 weights and input);
- cast: the same module loaded, `.float()`, frozen, fp32 input.

Latency is p50 of --runs forwards after 3 warm-up ones. The error of each is measured against
the original (the fp16 module run on the CPU, which is the reference the compiler checks every
artifact against) and against the float64 evaluation of the very same fp16 weights (what the
weights compute without rounding).

    python bench/fp16_cpu.py [--runs 20] [--models resnet18,mobilenet_v2]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time

import torch
import torchvision


def fixed_input(shape, dtype):
    n = 1
    for d in shape:
        n *= d
    return torch.linspace(-1.0, 1.0, n).reshape(shape).to(dtype)


def p50(module, x, runs):
    with torch.no_grad():
        for _ in range(3):
            module(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def reload(module):
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    buf.seek(0)
    return torch.jit.load(buf, map_location="cpu")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    args = ap.parse_args()
    torch.set_num_threads(1)
    shape = (1, 3, 224, 224)
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(num_classes=10).eval().half()
        with torch.no_grad():
            shipped = reload(torch.jit.trace(model, fixed_input(shape, torch.half)))
            original = shipped(fixed_input(shape, torch.half)).float()
            exact = reload(shipped).double()(fixed_input(shape, torch.double)).float()
        keep = reload(torch.jit.freeze(reload(shipped).eval()))
        cast_src = reload(shipped)
        cast_src.float()
        cast = reload(torch.jit.freeze(cast_src.eval()))
        with torch.no_grad():
            out_keep = keep(fixed_input(shape, torch.half)).float()
            out_cast = cast(fixed_input(shape, torch.float32)).float()
        scale = original.abs().max().item()
        row = {
            "model": name,
            "keep_fp16_p50_ms": round(p50(keep, fixed_input(shape, torch.half), args.runs), 2),
            "cast_fp32_p50_ms": round(p50(cast, fixed_input(shape, torch.float32), args.runs), 2),
            "keep_max_abs_vs_original": (out_keep - original).abs().max().item(),
            "cast_max_abs_vs_original": (out_cast - original).abs().max().item(),
            "cast_max_rel_vs_original": (out_cast - original).abs().max().item() / max(scale, 1e-30),
            "keep_max_abs_vs_exact": (out_keep - exact).abs().max().item(),
            "cast_max_abs_vs_exact": (out_cast - exact).abs().max().item(),
            "output_max_abs": scale,
        }
        row["speedup"] = round(row["keep_fp16_p50_ms"] / row["cast_fp32_p50_ms"], 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"loadavg": os.getloadavg(), "torch": torch.__version__, "threads": 1}))


if __name__ == "__main__":
    main()
