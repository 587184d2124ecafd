"""Regenerate tiny_traced.pt: a real (random-weight) TorchScript model small enough to commit,
used by the core's Rust tests as the `.pt` of otherwise synthetic packages.

    /work/main/.venv/bin/python crates/byom-core/tests/data/make_tiny.py
"""
import pathlib

import torch

torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(3, 4, 3),
    torch.nn.AdaptiveAvgPool2d(1),
    torch.nn.Flatten(),
    torch.nn.Linear(4, 2),
).eval()
traced = torch.jit.trace(model, torch.zeros(1, 3, 224, 224))
out = pathlib.Path(__file__).with_name("tiny_traced.pt")
traced.save(str(out))
print(out, out.stat().st_size)
