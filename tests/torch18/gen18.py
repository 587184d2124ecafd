"""Run by the torch 1.8.0 interpreter: write files the way torch 1.8 users wrote them.

Usage: python gen18.py OUT_DIR   (writes <kind>.pt and expected18.json)
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    m = Tiny().eval()
    x = torch.randn(1, 3, 16, 16)
    exp = {}
    torch.save(m.state_dict(), str(out / "t18_sd_tiny.pt"))
    exp["t18_sd_tiny"] = {"kind": "state_dict", "architecture": None}
    torch.save(m.state_dict(), str(out / "t18_legacy_tiny.pt"), _use_new_zipfile_serialization=False)
    exp["t18_legacy_tiny"] = {"kind": "legacy", "architecture": None}
    torch.jit.trace(m, x).save(str(out / "t18_traced_tiny.pt"))
    exp["t18_traced_tiny"] = {"kind": "torchscript_traced", "architecture": None}
    torch.jit.script(m).save(str(out / "t18_scripted_tiny.pt"))
    exp["t18_scripted_tiny"] = {"kind": "torchscript_scripted", "architecture": None}
    torch.save({"model": m.state_dict(), "epoch": 3}, str(out / "t18_checkpoint.pt"))
    exp["t18_checkpoint"] = {"kind": "checkpoint", "architecture": None}
    try:
        import torchvision

        r = torchvision.models.resnet18(num_classes=3).eval()
        torch.save(r.state_dict(), str(out / "t18_sd_resnet18.pt"))
        exp["t18_sd_resnet18"] = {"kind": "state_dict", "architecture": "resnet18"}
        torch.jit.trace(r, torch.randn(1, 3, 64, 64)).save(str(out / "t18_traced_resnet18.pt"))
        exp["t18_traced_resnet18"] = {"kind": "torchscript_traced", "architecture": None}
    except ImportError:
        pass
    (out / "expected18.json").write_text(json.dumps(exp, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
