"""Make the ≥ 300 MB benchmark package for the browser benchmark (bench/web_validate.mjs).

A real fp32 state dict (torchvision vgg11, random weights: 132.9 M parameters, ~507 MiB) in a
valid BYOM package, written as a stream (tarfile "w|" into a GzipFile) so the package is never held in memory.
Reuses nothing and downloads nothing. Usage:

    .venv/bin/python bench/web_make_package.py [OUT]   # default target/bench/web_vgg11.tar.gz
"""

import gzip
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]


def documents(num_classes: int) -> dict[str, bytes]:
    shape = [1, 3, 224, 224]
    names = [f"class_{i}" for i in range(num_classes)]
    config = (
        "dataset:\n  image_width: 224\n  image_height: 224\n"
        f"  num_classes: {num_classes}\n  class_names: [{', '.join(names)}]\n"
    )
    stage = {"type": "classification", "input_shape": shape, "output_shape": [1, num_classes], "num_classes": num_classes}
    mochi = {"stages": [stage], "model_info": {"name": "vgg11", "version": "1.0.0", "framework": "pytorch"}}
    manifest = {
        "model_graph": {"stages": [{"type": "classification", "input_shape": shape, "output_shape": [1, num_classes]}]},
        "input_shape": shape,
        "compilable_models": [{"filename": "model.pt", "data_input_config": {"input": shape}, "framework": "PYTORCH"}],
        "preprocessing": {"resize": [224, 224], "normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, "channel_order": "RGB"},
        "postprocessing": {"type": "softmax"},
    }
    return {
        "config.yaml": config.encode(),
        "mochi.json": json.dumps(mochi, indent=2).encode(),
        "export_artifacts/manifest.json": json.dumps(manifest, indent=2).encode(),
    }


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/bench/web_vgg11.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    torch.manual_seed(0)
    num_classes = 10
    model = torchvision.models.vgg11(weights=None, num_classes=num_classes)
    pt = out.with_suffix("").with_suffix(".pt")
    torch.save(model.state_dict(), pt)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for name, data in documents(num_classes).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
        info = tar.gettarinfo(str(pt), arcname="export_artifacts/model.pt")
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with pt.open("rb") as f:
            tar.addfile(info, f)
    tmp.rename(out)
    pt.unlink()
    print(f"{out}: {out.stat().st_size} bytes in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
