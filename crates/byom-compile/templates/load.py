"""Load this byom bundle's model.pt as deployment.json describes, and self-test it.

    python load.py                 # on the bundle's device (cpu or cuda)
    python load.py --device cpu    # e.g. to try a GPU bundle without a GPU

Only the load-time steps this file knows are run; an unknown step is an error, never
executed from the manifest.
"""
import argparse
import json
import os
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def load_operator_libraries(dep):
    """Registers the operators the model calls besides libtorch's own (deployment.json's
    runtime.operator_libraries): torch.jit.load fails with "Unknown builtin op" without them."""
    for lib in dep["runtime"].get("operator_libraries", []):
        if lib["name"] == "torchvision":
            try:
                import torchvision  # noqa: F401  registers torchvision::nms, roi_align, ...
            except ImportError as e:
                wanted = f"torchvision=={lib['version'].split('+')[0]}" if lib.get("version") else "torchvision"
                raise SystemExit(f"this model calls {', '.join(lib['operators'])}: pip install {wanted} ({e})")
        else:
            raise RuntimeError(f"unknown operator library {lib['name']!r}: update load.py")


def load(device=None):
    """Returns (module, deployment) with every load-time step applied."""
    with open(os.path.join(HERE, "deployment.json")) as f:
        dep = json.load(f)
    device = device or dep["artifact"]["device"]
    load_operator_libraries(dep)
    module = torch.jit.load(os.path.join(HERE, dep["artifact"]["file"]), map_location=device)
    module.eval()
    for step in dep["load_time_steps"]:
        name = step["name"]
        if name == "optimize_for_inference":
            module = torch.jit.optimize_for_inference(module)
        elif name == "onednn_fusion":
            torch.jit.enable_onednn_fusion(True)  # process-wide; the first two forwards fuse
        elif name == "to_device_and_freeze":
            module = module.to(device)
            if dep["artifact"]["precision"] == "fp16":
                module = module.half()
            module = torch.jit.freeze(module.eval())
        else:
            raise RuntimeError(f"unknown load-time step {name!r}: update load.py")
    return module, dep


def fixed_input(dep, device):
    """The input the compiler verified with: linspace(-1, 1) in the declared shape and dtype."""
    shape = dep["input"]["shape"]
    numel = 1
    for d in shape:
        numel *= d
    dtype = getattr(torch, dep["input"]["dtype"])
    return torch.linspace(-1.0, 1.0, numel).reshape(shape).to(dtype).to(device)


def select(output, selector):
    """The output deployment.json's `output.selector` names."""
    if selector == "":
        return output
    if selector.startswith("#"):
        return output[int(selector[1:])]
    return output[selector]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    module, dep = load(args.device)
    device = args.device or dep["artifact"]["device"]
    x = fixed_input(dep, device)
    with torch.no_grad():
        out = select(module(x), dep["output"]["selector"])
        start = time.perf_counter()
        for _ in range(10):
            select(module(x), dep["output"]["selector"])
        ms = (time.perf_counter() - start) * 100
    shape = list(out.shape)
    print(f"{dep['target']}: output {shape}, expected {dep['output']['shape']}, {ms:.2f} ms/forward")
    if shape != dep["output"]["shape"]:
        raise SystemExit("output shape differs from deployment.json")


if __name__ == "__main__":
    main()
