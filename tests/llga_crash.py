"""A model that crashes libtorch's oneDNN Graph (LLGA) fuser: the smallest form found of what
timm's fastvit and nextvit do at their last stage (fastvit's final MobileOne block).

Two grouped convolutions with a channel multiplier, added, then a squeeze-excite gate and GELU,
on a 1x1 feature map. Frozen, with `torch.jit.enable_onednn_fusion(True)`, libtorch 2.11 dies
with SIGSEGV in `at::native::itensor_from_tensor` (mkldnn convolution) on the first forwards;
without the fuser it runs fine. byom's x86_64-cpu plan tries that fuser as a load-time
candidate, in a separate process (crates/byom-compile/src/isolate.rs), so such a model must
still compile, with the fuser ruled out and the report saying why.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 3, 32, 32)
CLASSES = 5


class Block(nn.Module):
    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.a = nn.Conv2d(c, 2 * c, 1, groups=c)
        self.b = nn.Conv2d(c, 2 * c, 3, padding=1, groups=c)
        self.fc1 = nn.Conv2d(2 * c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, 2 * c, 1)

    def forward(self, x):
        y = self.a(x) + self.b(x)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
        return nn.functional.gelu(y * gate)


class CrashesTheOnednnFuser(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = Block(8, 4)
        self.fc = nn.Linear(16, CLASSES)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(torch.relu(self.stem(x)), 1)
        return self.fc(self.block(x).flatten(1))


def traced() -> torch.jit.ScriptModule:
    """The model with seed-0 weights, traced on the fixed input `linspace(-1, 1)`."""
    torch.manual_seed(0)
    model = CrashesTheOnednnFuser().eval()
    x = torch.linspace(-1.0, 1.0, 3 * 32 * 32).reshape(INPUT_SHAPE)
    with torch.no_grad():
        return torch.jit.trace(model, x)


if __name__ == "__main__":
    # Shows the crash itself: exits with SIGSEGV on libtorch 2.11 (not at all if it is fixed).
    module = torch.jit.freeze(traced())
    torch.jit.enable_onednn_fusion(True)
    x = torch.linspace(-1.0, 1.0, 3 * 32 * 32).reshape(INPUT_SHAPE)
    with torch.no_grad():
        for _ in range(4):
            module(x)
    print("the oneDNN fuser ran this model without crashing")
