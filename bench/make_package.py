"""Write a >= 300 MB BYOM package holding a real fp32 state dict (torchvision vgg11, random
weights, ~507 MiB) to target/bench/vgg11.tar.gz. Never committed; regenerate at will.

    /work/main/.venv/bin/python bench/make_package.py [OUT_DIR] [compressible|zeroed]

With `compressible`, the weights are rounded to multiples of 1/16 (like coarse quantization):
the package then compresses several times, the case where parallel inflation has to hold far
more output per chunk. It is written to OUT_DIR/vgg11_compressible.tar.gz.

With `zeroed`, one layer (classifier.3, 64 MiB of fp32) is all zeros, as a pruned or
zero-initialised layer is: the file still inflates ~1.2x overall, but one chunk of it inflates
far past any per-chunk cap. Written to OUT_DIR/vgg11_zeroed.tar.gz.
"""
import io
import json
import pathlib
import sys
import tarfile

import torch
import torchvision

out_dir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench")
out_dir.mkdir(parents=True, exist_ok=True)
mode = sys.argv[2] if len(sys.argv) > 2 else ""
assert mode in ("", "compressible", "zeroed"), mode
compressible = mode == "compressible"
pkg = out_dir / (f"vgg11_{mode}.tar.gz" if mode else "vgg11.tar.gz")
pt = out_dir / "vgg11.pt"

torch.manual_seed(0)
model = torchvision.models.vgg11(weights=None, num_classes=2).eval()
state = model.state_dict()
if compressible:
    state = {k: (v * 16).round() / 16 if v.is_floating_point() else v for k, v in state.items()}
if mode == "zeroed":
    state["classifier.3.weight"].zero_()
torch.save(state, pt)

shape = [1, 3, 224, 224]
stage = {"type": "classification", "input_shape": shape, "output_shape": [1, 2], "num_classes": 2}
config = "dataset:\n  image_width: 224\n  image_height: 224\n  num_classes: 2\n  class_names: [good, defect]\n"
mochi = {"stages": [stage], "model_info": {"name": "vgg11", "framework": "pytorch", "architecture": "vgg11"}}
manifest = {
    "model_graph": {"stages": [stage]},
    "input_shape": shape,
    "compilable_models": [{"filename": "vgg11.pt", "data_input_config": {"input": shape}, "framework": "PYTORCH"}],
}


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


with tarfile.open(pkg, "w:gz", compresslevel=6) as tar:
    add_bytes(tar, "config.yaml", config.encode())
    add_bytes(tar, "mochi.json", json.dumps(mochi, indent=2).encode())
    add_bytes(tar, "export_artifacts/manifest.json", json.dumps(manifest, indent=2).encode())
    tar.add(pt, arcname="export_artifacts/vgg11.pt")
pt.unlink()
print(pkg, pkg.stat().st_size)
