"""The bundles' C++ loader (crates/byom-compile/templates/load.cpp) with an operator library:
a model calling `torchvision::nms` loads with torchvision's operators listed in `BYOM_PRELOAD`,
and without them fails with exit status 1 and a message saying what to do.

Opt-in (`BYOM_TEST_LOAD_CPP=1`), not part of the test command: compiling load.cpp against
libtorch's headers takes ~30 s of CPU and ~1 GB of memory (g++ 12, measured on the 2-core
machine under load 4-7), for a file the compile tests already write into every bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

REPO = Path(__file__).resolve().parent.parent
LOAD_CPP = REPO / "crates" / "byom-compile" / "templates" / "load.cpp"

pytestmark = pytest.mark.skipif(
    os.environ.get("BYOM_TEST_LOAD_CPP") != "1" or shutil.which("g++") is None,
    reason="set BYOM_TEST_LOAD_CPP=1 (and have g++) to build load.cpp (~30 s CPU)",
)


class Nms(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes = x.flatten(1)[:, :4].abs().cumsum(1)
        return boxes[torchvision.ops.nms(boxes, x.flatten(1)[:, 0], 0.5)]


def test_load_cpp_preloads_torchvision_operators(tmp_path):
    torch_dir = Path(torch.__file__).parent
    exe = tmp_path / "load"
    subprocess.run(["g++", "-std=c++17", str(LOAD_CPP), "-o", str(exe), f"-I{torch_dir}/include",
                    f"-I{torch_dir}/include/torch/csrc/api/include", f"-L{torch_dir}/lib",
                    f"-Wl,-rpath,{torch_dir}/lib", "-ltorch", "-ltorch_cpu", "-lc10"],
                   check=True, timeout=900)
    model = tmp_path / "model.pt"
    torch.jit.script(Nms()).save(str(model))
    env = {k: v for k, v in os.environ.items() if k != "BYOM_PRELOAD"}

    r = subprocess.run([str(exe), str(model), "2,3,4,4"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "BYOM_PRELOAD" in r.stderr and "torchvision::nms" in r.stderr, r.stderr

    libpython = Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME")
    preload = [libpython, torch_dir / "lib" / "libtorch_python.so", Path(torchvision.__file__).parent / "_C.so"]
    r = subprocess.run([str(exe), str(model), "2,3,4,4"], capture_output=True, text=True,
                       env=env | {"BYOM_PRELOAD": ":".join(map(str, preload))}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "output [2, 4]" in r.stdout, r.stdout
