"""Rebuilds a recognised state dict with its model library's own constructor and traces it.

The compile worker (crates/byom-compile/src/zoo.rs) runs this as its child, with the worker's
sandbox (memory cap, file-size cap, no network, Landlock confinement to the job directory) and a
time limit, as `python -I -B zoo_build.py REQUEST.json`. The request (written by the worker, not by
the user) names the library, the builder, its arguments, the state dict file and the input shape;
this program writes into the request's `out_dir`:

- `eager.pt`: the model traced on the fixed input in the weights' dtype (TorchScript), which the
  worker then compiles exactly as it would a user's TorchScript;
- `eager-fp16.pt` when asked (`half`): the same traced in fp16 (traced weights become graph
  constants, which `.half()` on the TorchScript module would not convert);
- `reference.json` + `reference-N.bin` (little-endian f32): the EAGER Python model's outputs on
  the fixed input, so the worker's parity checks compare against the library's own model, not
  against the trace;
- `result.json`: `{"ok": true, ...versions, "export": "trace"|"script"}` or `{"ok": false,
  "error": "one line"}`.

torchvision's detection builders (SSD, SSDlite, Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS) take
a list of images and return a list of dicts, which neither the server nor a bundle can feed or
read, and tracing would freeze the example image's number of detections into the graph. They are
wrapped in `Detections` (below; docs/detectors.md shows the same class to users who export
TorchScript themselves): `forward(x: Tensor[B, 3, H, W]) -> Tensor[B, max_detections, 6]`, and
the wrapper is SCRIPTED, as torchvision documents for its detectors. `max_detections` is the
declared `output_shape[1]` (100 when none is declared). A scripted module keeps its weights as
parameters, so the worker casts it to fp16 itself: no `eager-fp16.pt` for a detector.

The fixed input is `linspace(-1, 1, numel).reshape(shape)`, as in crates/byom-compile/src/forward.rs.
"""

import json
import sys
import traceback

import torch
from torch import Tensor

# Rows a detector's output has when the package declares no output_shape.
DEFAULT_DETECTIONS = 100


# Kept identical to the class docs/detectors.md shows (tests/test_detectors.py checks it), so a
# rebuilt state dict deploys exactly what a user exporting TorchScript by that page deploys.
class Detections(torch.nn.Module):
    """forward(x: Tensor[B, 3, H, W]) -> Tensor[B, max_detections, 6] of
    (x1, y1, x2, y2, score, label) rows, best first, zero rows after the last detection."""

    def __init__(self, detector: torch.nn.Module, max_detections: int = 100):
        super().__init__()
        self.detector = detector.eval()
        self.max_detections = max_detections

    def forward(self, x: Tensor) -> Tensor:
        images = list(x.unbind(0))
        if torch.jit.is_scripting():
            detections = self.detector(images)[1]  # scripted detectors return (losses, detections)
        else:
            detections = self.detector(images)
        out = torch.zeros(x.shape[0], self.max_detections, 6, dtype=x.dtype, device=x.device)
        for i, d in enumerate(detections):
            n = min(d["boxes"].shape[0], self.max_detections)
            out[i, :n, :4] = d["boxes"][:n]
            out[i, :n, 4] = d["scores"][:n]
            out[i, :n, 5] = d["labels"][:n].to(x.dtype)
        return out


def fail(out_dir, message):
    with open(f"{out_dir}/result.json", "w") as f:
        json.dump({"ok": False, "error": message}, f)
    sys.exit(1)


def construct(req):
    zoo, name = req["zoo"], req["name"]
    kwargs = dict(req.get("builder_kwargs") or {})
    if zoo == "torchvision":
        import torchvision

        if req["in_channels"] != 3:
            raise ValueError(f"torchvision's {name} takes 3 input channels, the state dict's first convolution takes {req['in_channels']}")
        if name not in torchvision.models.list_models():
            raise ValueError(f"torchvision {torchvision.__version__} has no builder {name!r}")
        builder = torchvision.models.get_model_builder(name)
        import inspect

        params = inspect.signature(builder).parameters
        kwargs.setdefault("weights", None)
        if "weights_backbone" in params:
            kwargs.setdefault("weights_backbone", None)
        return torchvision.models.get_model(name, num_classes=req["num_classes"], **kwargs), f"torchvision {torchvision.__version__}"
    if zoo == "timm":
        import timm

        if not timm.is_model(name):
            raise ValueError(f"timm {timm.__version__} has no model {name!r}")
        model = timm.create_model(
            name, pretrained=False, num_classes=req["num_classes"], in_chans=req["in_channels"], **kwargs
        )
        return model, f"timm {timm.__version__}"
    raise ValueError(f"unknown model library {zoo!r}")


def is_detector(req) -> bool:
    if req["zoo"] != "torchvision":
        return False
    import torchvision

    return req["name"] in torchvision.models.list_models(module=torchvision.models.detection)


def detection_rows(req) -> int:
    """`max_detections`: the declared output_shape's rows; it must be the wrapper's layout."""
    declared = req.get("output_shape")
    if declared is None:
        return DEFAULT_DETECTIONS
    batch = req["input_shape"][0]
    if len(declared) == 3 and declared[0] == batch and declared[2] == 6 and declared[1] > 0:
        return int(declared[1])
    raise ValueError(
        f"torchvision's {req['name']} is deployed as [batch, max_detections, 6] rows (x1, y1, x2, y2, "
        f"score, label; docs/detectors.md), but output_shape {declared} is declared: declare "
        f"[{batch}, {DEFAULT_DETECTIONS}, 6] (or another row count)"
    )


def flat_outputs(out):
    """(selector, tensor) for each tensor output, with the worker's selectors (forward.rs):
    "" the tensor itself, "#i" a tuple/list element, else a dict key."""
    if isinstance(out, torch.Tensor):
        return [("", out)]
    if isinstance(out, (tuple, list)):
        return [(f"#{i}", t) for i, t in enumerate(out) if isinstance(t, torch.Tensor)]
    if isinstance(out, dict):
        return [(k, t) for k, t in out.items() if isinstance(k, str) and not k.startswith("#") and isinstance(t, torch.Tensor)]
    raise ValueError(f"the model returns {type(out).__name__}, not a tensor, tuple/list or dict of tensors")


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    out_dir = req["out_dir"]
    try:
        torch.set_num_threads(max(1, int(req.get("threads") or 1)))
        # byom's own non-executing pickle reader has already judged this file safe (only
        # allowlisted globals) before the worker started this program; torch's weights-only
        # unpickler is a second, independent guard. The file is never loaded with
        # weights_only=False and never executed.
        obj = torch.load(req["state_dict"], map_location="cpu", weights_only=True, mmap=True)
        key = req.get("checkpoint_key")
        if key is not None:
            obj = obj[key]
        if not isinstance(obj, dict):
            raise ValueError(f"the file holds {type(obj).__name__}, not a state dict")
        from collections import OrderedDict

        state = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, torch.Tensor))
        # Modules' format versions (`_metadata`, which torch.save keeps): some builders read
        # them while loading (MNASNet).
        metadata = getattr(obj, "_metadata", None)
        # DataParallel / DistributedDataParallel save every key under `module.`.
        if state and all(k.startswith("module.") for k in state):
            state = OrderedDict((k[len("module."):], v) for k, v in state.items())
            if metadata is not None:
                metadata = OrderedDict(
                    (k[len("module."):] if k.startswith("module.") else ("" if k == "module" else k), v)
                    for k, v in metadata.items()
                )
        if metadata is not None:
            state._metadata = metadata
        dtype = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
        detector = is_detector(req)
        rows = detection_rows(req) if detector else None
        model, library = construct(req)
        model = model.to(dtype).eval()
        # strict, except for batch-norm step counters (they do not affect inference, and some
        # exporters drop them): every other name and shape must be the model's exactly.
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith(".num_batches_tracked")]
        if missing or result.unexpected_keys:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing ({', '.join(missing[:3])})")
            if result.unexpected_keys:
                parts.append(f"{len(result.unexpected_keys)} unexpected ({', '.join(result.unexpected_keys[:3])})")
            raise ValueError(f"{library} {req['name']} does not have this state dict's keys: {'; '.join(parts)}")
        shape = [int(d) for d in req["input_shape"]]
        n = 1
        for d in shape:
            n *= d
        x = torch.linspace(-1.0, 1.0, n).reshape(shape)
        if detector:
            model = Detections(model, rows).eval()
        with torch.no_grad():
            outputs = flat_outputs(model(x.to(dtype)))
            refs = []
            for i, (selector, t) in enumerate(outputs):
                name = f"reference-{i}.bin"
                t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(f"{out_dir}/{name}")
                refs.append({"selector": selector, "shape": list(t.shape), "file": name})
            with open(f"{out_dir}/reference.json", "w") as f:
                json.dump({"dtype": str(dtype).removeprefix("torch."), "outputs": refs}, f)
            if detector:
                # Scripted, not traced: the number of detections depends on the image.
                torch.jit.script(model).save(f"{out_dir}/eager.pt")
            else:
                traced = torch.jit.trace(model, x.to(dtype), strict=False, check_trace=False)
                traced.save(f"{out_dir}/eager.pt")
            if req.get("half") and not detector:
                model = model.half()
                torch.jit.trace(model, x.half(), strict=False, check_trace=False).save(f"{out_dir}/eager-fp16.pt")
        with open(f"{out_dir}/result.json", "w") as f:
            json.dump({"ok": True, "library": library, "torch": torch.__version__,
                       "dtype": str(dtype).removeprefix("torch."), "export": "script" if detector else "trace"}, f)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure becomes one line for the report
        traceback.print_exc()
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        first = lines[0] if lines else ""
        # load_state_dict's "Error(s) in loading state_dict for X:" says what only on the next line.
        if first.endswith(":") and len(lines) > 1:
            first = f"{first} {lines[1]}"
        fail(out_dir, f"{type(e).__name__}: {first}"[:1000])


if __name__ == "__main__":
    main()
