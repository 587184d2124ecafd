#!/usr/bin/env python3
"""How many zoo-table builders really compile: a random-weight state dict of each, packed, compiled
for x86_64-cpu by the real compile pipeline, the artifact's output compared with the eager model's.

Why: the fingerprint table (tools/zoo/gen_fingerprints.py) flags every entry "server-compilable"
when the library builds it with the arguments the server passes; whether it then rebuilds in the
worker, traces, survives byom's libtorch passes and matches its library's output is only known by
doing it. This measures it over every torchvision entry of the table and a deterministic sample of
timm (one builder per family in turn, alphabetical, until `--timm N`).

Each case: build the model on the CPU (seed 0, random batch-norm statistics so that folding them
matters, `num_classes=5`), find the smallest square input its eager forward takes (from 32 px up),
save its state dict, pack it like tests/test_compile_e2e.py does (tests/fixtures/make_packages.py),
run the compile example (`target/debug/examples/compile PKG --target x86_64-cpu --runs 1
--python THIS_PYTHON`), load `x86_64-cpu/model.pt` with torch and compare its output on the fixed
input `linspace(-1, 1)` with the eager model's (max |diff| / max |eager| <= 1e-4; a detector's
rows as detections, see `detections_agree` and docs/detectors.md). Models whose
fp32 weights exceed `--max-mb` (300) are skipped and listed with their size. Cases run smallest
first, so a `--budget-s` cut leaves the giants unmeasured, never the cheap ones.

Results go to a JSON-lines file (one line per case; a re-run skips cases already there) and, with
`--docs`, into docs/zoo-compile.md with the load average. Run it niced: it is CPU-bound for an hour.

Usage: nice -n 10 python bench/zoo_compile.py [--timm 60] [--only NAME…] [--budget-s S] [--docs]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "zoo"))
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
sys.path.insert(0, str(REPO / "crates" / "byom-compile" / "python"))
import gen_fingerprints as gen  # noqa: E402
import make_packages as mp  # noqa: E402
from zoo_build import DEFAULT_DETECTIONS, Detections  # noqa: E402  (the worker's detector wrapper)

CLASSES = 5
SIZES = (32, 64, 96, 128, 160, 192, 224, 256, 288, 299, 320, 384, 448, 512, 518)
TOLERANCE = 1e-4
BYOM = REPO / "target" / "debug" / "byom"
RESULTS = REPO / "bench" / "zoo_compile.results.jsonl"
DOCS = REPO / "docs" / "zoo-compile.md"


def cases(timm_n: int) -> list[dict]:
    """Every torchvision entry of the table, then `timm_n` timm entries: one per family in turn
    (families and names alphabetical), so the sample spreads over families deterministically."""
    _, table = gen.parse(gen.TABLE.read_text())
    tv = [e for e in table if e["zoo"] == "torchvision"]
    fams: dict[str, list[dict]] = {}
    for e in table:
        if e["zoo"] == "timm" and e["compilable"]:
            fams.setdefault(e["family"], []).append(e)
    for v in fams.values():
        v.sort(key=lambda e: e["name"])
    sample, depth = [], 0
    while len(sample) < timm_n and any(len(v) > depth for v in fams.values()):
        for f in sorted(fams):
            if depth < len(fams[f]) and len(sample) < timm_n:
                sample.append(fams[f][depth])
        depth += 1
    return tv + sample


def task_of(name: str) -> str:
    import torchvision

    if name in torchvision.models.list_models(module=torchvision.models.detection):
        return "object_detection"
    if name in torchvision.models.list_models(module=torchvision.models.segmentation):
        return "semantic_segmentation"
    return "classification"


def build(e: dict, device: str | None = None):
    import timm
    import torchvision

    gen._regnet_widths_on_cpu()
    with torch.device(device or "cpu"):
        if e["zoo"] == "torchvision":
            extra = {} if task_of(e["name"]) == "classification" else {"weights_backbone": None}
            return torchvision.models.get_model(e["name"], weights=None, num_classes=CLASSES, **extra, **e["kwargs"])
        return timm.create_model(e["name"], pretrained=False, num_classes=CLASSES, **e["kwargs"])


def size_mb(e: dict) -> float:
    m = build(e, "meta")
    return sum(t.numel() * 4 for t in m.state_dict().values()) / 1e6


def fixed_input(shape):
    n = 1
    for d in shape:
        n *= d
    return torch.linspace(-1.0, 1.0, n).reshape(shape)


def first_tensor(out, selector: str | None = None):
    """The output the package declares: the tensor, a segmentation dict's "out", or the
    deployment's selector."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return out[selector] if selector and selector in out else out.get("out")
    if isinstance(out, (tuple, list)) and out:
        i = int(selector[1:]) if selector and selector.startswith("#") else 0
        return first_tensor(out[i])
    return None


def smallest_input(e: dict, model) -> tuple[int, object]:
    sizes = list(SIZES)
    if e["zoo"] == "timm":
        cfg = getattr(model, "pretrained_cfg", None) or {}
        top = (cfg.get("input_size") or (3, 224, 224))[-1]
        sizes = [s for s in sizes if s < top] + [top]
    last = None
    for s in sizes:
        try:
            with torch.no_grad():
                out = model(fixed_input((1, 3, s, s)))
            return s, out
        except Exception as ex:  # noqa: BLE001 - try the next size
            last = ex
    raise RuntimeError(f"no input size from {sizes[0]} to {sizes[-1]} px runs: {str(last).splitlines()[0][:150]}")


def random_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def run_case(e: dict, compile_bin: Path, max_mb: float, work: Path) -> dict:
    row = {"zoo": e["zoo"], "name": e["name"], "kwargs": e["kwargs"], "family": e["family"]}
    mb = size_mb(e)
    row["mb"] = round(mb, 1)
    if mb > max_mb:
        row["skipped"] = f"{mb:.0f} MB of fp32 weights > {max_mb:.0f} MB"
        return row
    torch.manual_seed(0)
    model = random_bn(build(e).eval())
    task = task_of(e["name"]) if e["zoo"] == "torchvision" else "classification"
    if task == "object_detection":
        # What the worker deploys for a detector's state dict: the wrapper of docs/detectors.md
        # (one tensor in, [B, 100, 6] rows out); the state dict is the detector's own.
        detector = model
        model = Detections(detector, DEFAULT_DETECTIONS).eval()
    side, eager = smallest_input(e, model)
    shape = [1, 3, side, side]
    row["input"] = shape
    ref = first_tensor(eager)
    out_shape = list(ref.shape) if ref is not None else None
    buf = io.BytesIO()
    torch.save((detector if task == "object_detection" else model).state_dict(), buf)
    pkg = mp.Package(
        "unused", f"{e['name']}.pt", task, shape, out_shape, CLASSES, [f"class_{i}" for i in range(CLASSES)],
        preprocessing={"resize": [side, side], "normalize": mp.IMAGENET, "channel_order": "RGB"},
        postprocessing={"type": {"classification": "softmax", "semantic_segmentation": "argmax_per_pixel"}.get(
            task, "nms"), **({"confidence_threshold": 0.05, "nms_threshold": 0.5} if task == "object_detection" else {})},
        # As the guide's exporter writes it: among twins (same tensors), the name decides.
        model_info={"architecture": e["name"]},
    )
    # Recognition by the core alone (`byom inspect`), so that a failed compile still says it.
    pt = work / "model.pt"
    pt.write_bytes(buf.getvalue())
    ins = subprocess.run([str(BYOM), "inspect", "--format", "json", str(pt)], capture_output=True, timeout=300)
    arch = json.loads(ins.stdout)["model"].get("architecture") if ins.stdout else None
    row["recognised_as"] = arch
    row["recognised"] = arch is not None
    pt.unlink()
    path = work / "pkg.tar.gz"
    path.write_bytes(mp.gz(mp.tar_bytes(mp.members_of(pkg, pt_data=buf.getvalue())), level=0))
    del buf
    out = work / "out"
    t0 = time.time()
    p = subprocess.run([str(compile_bin), str(path), "-o", str(out), "--target", "x86_64-cpu", "--runs", "1",
                        "--python", sys.executable], capture_output=True, text=True, timeout=900)
    row["seconds"] = round(time.time() - t0, 1)
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        row["error"] = (p.stderr.strip().splitlines() or ["no report"])[-1][:300]
        return row
    target = (report.get("targets") or [{}])[0]
    row["compiled"] = target.get("status") == "succeeded"
    if not row["compiled"]:
        row["error"] = (report.get("failure_reason") or target.get("failure_reason") or p.stderr[-300:] or "?")
        row["error"] = str(row["error"]).splitlines()[0][:300]
        return row
    dep = json.loads((out / "x86_64-cpu" / "deployment.json").read_text())
    module = torch.jit.load(str(out / "x86_64-cpu" / "model.pt"), map_location="cpu")
    with torch.no_grad():
        got = first_tensor(module(fixed_input(shape)), dep["output"].get("selector"))
    want = first_tensor(eager, dep["output"].get("selector"))
    if task == "object_detection" and tuple(got.shape) == tuple(want.shape):
        err, ok = detections_agree(got.float(), want.float())
        row["parity_as"] = "detections"
    else:
        err = ((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-12)).item()
        ok = err <= TOLERANCE and tuple(got.shape) == tuple(want.shape)
    row["parity"] = err
    row["match"] = ok
    return row


def detections_agree(got, want) -> tuple[float, bool]:
    """The bench's own check of `[B, rows, 6]` detections, independent of the compiler's
    (crates/byom-compile/src/detections.rs), and looser about ties: as many detections on each
    side, and every artifact row either an eager row of its label (box within TOLERANCE x 62.5
    of the largest coordinate: box decoding multiplies errors by up to exp(log(1000/16)); score
    within TOLERANCE x 62.5: a two-stage detector scores features pooled in decoded proposals)
    or tied in score (within TOLERANCE) with one (tied detections may come out in another order,
    or another of them kept). Returns the largest matched box error, relative."""
    scale = want[..., :4].abs().max().clamp_min(1.0).item()
    worst, ok = 0.0, True
    for g, w in zip(got, want):
        g, w = g[g[:, 4] > 0], w[w[:, 4] > 0]
        if len(g) != len(w):
            return float("inf"), False
        for r in g:
            label = w[:, 5] == r[5]
            box = (w[:, :4] - r[:4]).abs().max(dim=1).values
            score = (w[:, 4] - r[4]).abs()
            close = label & (box <= TOLERANCE * 62.5 * scale) & (score <= TOLERANCE * 62.5)
            if close.any():
                worst = max(worst, box[close].min().item() / scale)
            elif not (label & (score <= TOLERANCE)).any():
                ok = False
    return worst, ok


def key(row: dict) -> str:
    return f"{row['zoo']}/{row['name']}" + ("" if not row["kwargs"] else " " + json.dumps(row["kwargs"], sort_keys=True))


def render(rows: list[dict], todo: list[dict], load: tuple[str, str], versions: str, wall: float) -> str:
    def count(zoo: str) -> str:
        r = [x for x in rows if x["zoo"] == zoo]
        n = sum(1 for e in todo if e["zoo"] == zoo)
        ok = sum(1 for x in r if x.get("match"))
        comp = sum(1 for x in r if x.get("compiled"))
        rec = sum(1 for x in r if x.get("recognised"))
        skip = sum(1 for x in r if "skipped" in x)
        tried = sum(1 for x in r if "skipped" not in x)
        return (f"| {zoo} | {n} | {len(r)} | {skip} | {tried} | {rec} | {comp} | **{ok}** |")

    out = [
        "# Zoo builders compiled: the measured count",
        "",
        "GENERATED by `bench/zoo_compile.py --docs` (do not edit by hand). Every torchvision entry of",
        "the fingerprint table and a deterministic timm sample (one builder per family in turn): a",
        f"random-weight state dict (`num_classes={CLASSES}`, random batch-norm statistics) on the smallest",
        "square input its eager forward takes, packed, compiled for `x86_64-cpu` by the real pipeline",
        "(`target/debug/examples/compile`), the artifact's output compared with the eager model's",
        f"(max |diff| / max |eager| ≤ {TOLERANCE:g}; a detector's `[1, 100, 6]` rows as detections, boxes",
        "and scores within 62.5× that, tied scores in any order: `detections_agree`, docs/detectors.md). Smallest",
        "models first; weights over 300 MB skipped.",
        "",
        f"Versions: `{versions}`. Load average (1/5/15 min) after the first case `{load[0]}`, after the",
        f"last `{load[1]}` (2 cores shared with other work); {wall / 60:.0f} min of compiles in all; every",
        "row's own load average is in `bench/zoo_compile.results.jsonl`.",
        "",
        "| library | in the run | measured | skipped (> 300 MB) | tried | recognised | compiled | compiled and match |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        count("torchvision"),
        count("timm"),
        "",
        "`in the run` minus `measured` were not reached in the time given (listed at the end).",
        "",
        "| arch | MB | input | recognised | compiled | parity | seconds | note |",
        "|---|---:|---|---|---|---:|---:|---|",
    ]
    for x in rows:
        rec = "yes" if x.get("recognised") else ("—" if "skipped" in x else "no")
        if x.get("recognised") and x.get("recognised_as") != f"{x['zoo']}/{x['name']}":
            rec = f"as {x['recognised_as']}"
        comp = "—" if "skipped" in x else ("yes" if x.get("compiled") else "no")
        par = f"{x['parity']:.1e}" + ("" if x.get("match") else " ✗") if "parity" in x else "—"
        note = x.get("skipped") or x.get("error") or ""
        note = note.replace("|", "\\|")
        inp = "×".join(str(d) for d in x["input"][2:]) if x.get("input") else "—"
        out.append(f"| {key(x)} | {x.get('mb', '')} | {inp} | {rec} | {comp} | {par} | {x.get('seconds', '—')} | {note} |")
    done = {key(x) for x in rows}
    left = [key(e) for e in todo if key(e) not in done]
    if left:
        out += ["", f"Not reached ({len(left)}): " + ", ".join(left)]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timm", type=int, default=60)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--compile-bin", type=Path, default=REPO / "target" / "debug" / "examples" / "compile")
    ap.add_argument("--max-mb", type=float, default=300.0)
    ap.add_argument("--budget-s", type=float, default=float("inf"), help="stop starting cases after this")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--docs", action="store_true", help="write docs/zoo-compile.md from the results")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    todo = cases(args.timm)
    if args.only:
        todo = [e for e in todo if e["name"] in args.only]
    todo.sort(key=size_mb)
    done = {}
    if args.results.exists():
        for line in args.results.read_text().splitlines():
            r = json.loads(line)
            done[key(r)] = r
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.time()
    with args.results.open("a") as res:
        for e in todo:
            if key(e) in done or time.time() - t0 > args.budget_s:
                continue
            with tempfile.TemporaryDirectory(prefix="byom-zoo-") as d:
                try:
                    row = run_case(e, args.compile_bin, args.max_mb, Path(d))
                except Exception as ex:  # noqa: BLE001 - one line per failure, the run goes on
                    row = {"zoo": e["zoo"], "name": e["name"], "kwargs": e["kwargs"], "family": e["family"],
                           "error": f"{type(ex).__name__}: {str(ex).splitlines()[0][:250] if str(ex) else ''}"}
            row["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
            row["wall"] = round(time.time() - t0, 1)
            done[key(row)] = row
            res.write(json.dumps(row) + "\n")
            res.flush()
            print(f"{key(row)}: {'match' if row.get('match') else row.get('skipped') or row.get('error') or 'mismatch'}"
                  f" ({row.get('seconds', '-')} s)", flush=True)
    if args.docs:
        rows = [done[key(e)] for e in todo if key(e) in done]
        lines = args.results.read_text().splitlines() if args.results.exists() else []
        load_start = json.loads(lines[0]).get("load", load0) if lines else load0
        load_end = json.loads(lines[-1]).get("load", load0) if lines else load0
        wall = sum(r.get("seconds", 0) for r in rows)
        DOCS.write_text(render(rows, todo, (load_start, load_end), gen.versions(), wall))
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
