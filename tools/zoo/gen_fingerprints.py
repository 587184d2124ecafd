#!/usr/bin/env python3
"""Generate byom's zoo fingerprint table: crates/byom-core/src/torch/zoo_fingerprints.txt.

Why: a state dict holds weights only. The compile server rebuilds it with the model library's own
constructor (torchvision / timm), so the core (browser and CLI, no Python) must recognise which
builder made it. This script instantiates every builder on the meta device (no memory, no
weights, no downloads) and records the names and shapes of its state dict.

What makes num_classes and in_channels free: each builder is instantiated twice more, with another
`num_classes` and (timm) another `in_chans`. Every (key, dim) whose size changes is a *wildcard*
`size = a * value + b` (a classifier `[num_classes, 768]`; an SSD head `[6 * num_classes, …]`; a
space-to-depth stem `[64, 16 * in_chans, 3, 3]`). Its size is left out of the fingerprint and read
back from the user's state dict to give num_classes / in_channels.

The fingerprint is order-free: the wrapping sum (mod 2**64) of FNV-1a-64 of
`key \\0 d0,d1,…` for every key (a wildcard dim written `*`), so the core hashes each tensor once
and tries each wildcard group with a few lookups. `num_batches_tracked` buffers are left out:
they carry no shape, and a detector fine-tuned from pretrained weights has FrozenBatchNorm2d
(no such buffer) where `weights=None` builds BatchNorm2d.

Usage: python tools/zoo/gen_fingerprints.py [--out PATH] [--only NAME…] [--update NAME…] [--check N]
  --check N  regenerate N entries spread over the table and compare with the checked-in file
             (what tests/test_zoo_table.py runs), plus the library-version stamp.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "crates" / "byom-core" / "src" / "torch" / "zoo_fingerprints.txt"
FORMAT = 1
CLASSES = (1000, 1003)  # a second class count to see which sizes follow num_classes
CHANNELS = (3, 5)  # likewise for in_chans (timm)
SEG_AUX = ("fcn_", "deeplabv3_")  # segmentation builders with an `aux_loss` head
# Other constructor arguments a state dict proves (its keys differ): torchvision builds these two
# with auxiliary classifiers when weights=None; a user who trains without them has no AuxLogits.*.
TV_VARIANTS = {"inception_v3": [{"aux_logits": False}], "googlenet": [{"aux_logits": False}]}
TV_MODULES = ("", "segmentation", "detection")  # classification, segmentation, detection

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1


def fnv1a(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def tensor_hash(key: str, dims) -> int:
    """One tensor's hash; `dims` items are ints or "*" (a wildcard)."""
    return fnv1a(key.encode() + b"\0" + ",".join(str(d) for d in dims).encode())


def versions() -> str:
    import timm
    import torchvision

    return f"torch={torch.__version__.split('+')[0]} torchvision={torchvision.__version__.split('+')[0]} timm={timm.__version__}"


def shapes(model) -> dict[str, tuple[int, ...]]:
    return {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def _regnet_widths_on_cpu() -> None:
    """torchvision's RegNet builders compute their block widths with tensor arithmetic
    (`BlockParams.from_init_params`: `torch.pow`, `.tolist()`), which cannot read values back on
    the meta device. Run that arithmetic on the CPU (a few dozen numbers); the layers themselves
    stay on meta, so even regnet_y_128gf (645 M parameters) costs no memory."""
    from torchvision.models import regnet

    if getattr(regnet.BlockParams, "_byom_on_cpu", False):
        return
    plain = regnet.BlockParams.from_init_params.__func__

    def on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):  # the innermost device context wins over the outer meta one
            return plain(cls, *args, **kwargs)

    regnet.BlockParams.from_init_params = classmethod(on_cpu)
    regnet.BlockParams._byom_on_cpu = True


def build_tv(name: str, classes: int, kwargs: dict):
    import torchvision

    _regnet_widths_on_cpu()
    extra = {}
    if name in torchvision.models.list_models(module=torchvision.models.detection) or name in torchvision.models.list_models(
        module=torchvision.models.segmentation
    ):
        extra["weights_backbone"] = None
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None, num_classes=classes, **extra, **kwargs)


def build_timm(name: str, classes: int, chans: int | None, kwargs: dict):
    import timm

    extra = {} if chans is None else {"in_chans": chans}
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=classes, **extra, **kwargs)


class Skip(Exception):
    pass


BUILD_SECONDS = 120  # a builder slower than this on the meta device is skipped (and listed)


def _timeout(signum, frame):
    raise TimeoutError(f"instantiating took over {BUILD_SECONDS}s")


def wildcards(base, other, var: str, v0: int, v1: int) -> dict[tuple[str, int], tuple[str, int, int]]:
    """(key, dim) -> (var, a, b) for every size that changes from `base` to `other`."""
    if base.keys() != other.keys():
        raise Skip(f"{var} changes the key set")
    out = {}
    for k, s0 in base.items():
        s1 = other[k]
        if len(s0) != len(s1):
            raise Skip(f"{var} changes the rank of {k}")
        for d, (x0, x1) in enumerate(zip(s0, s1)):
            if x0 == x1:
                continue
            a, r = divmod(x1 - x0, v1 - v0)
            if r or a <= 0:
                raise Skip(f"{k}[{d}] is not a multiple of {var}")
            out[(k, d)] = (var, a, x0 - a * v0)
    return out


def fingerprint(base, wild) -> tuple[int, int]:
    fp = 0
    ks = 0
    for k, s in base.items():
        dims = ["*" if (k, d) in wild else x for d, x in enumerate(s)]
        fp = (fp + tensor_hash(k, dims)) & MASK
        ks = (ks + fnv1a(k.encode())) & MASK
    return fp, ks


def entry(zoo: str, name: str, family: str, kwargs: dict) -> dict:
    """One table entry, or raises Skip / any builder error."""
    compilable = True
    if zoo == "torchvision":
        b = shapes(build_tv(name, CLASSES[0], kwargs))
        wild = wildcards(b, shapes(build_tv(name, CLASSES[1], kwargs)), "classes", *CLASSES)
        in_ch = 3
    else:
        try:
            b = shapes(build_timm(name, CLASSES[0], CHANNELS[0], kwargs))
            ch = shapes(build_timm(name, CLASSES[0], CHANNELS[1], kwargs))
            wild_ch = wildcards(b, ch, "channels", *CHANNELS)
        except Skip:
            raise
        except Exception:  # the builder takes no in_chans: 3 channels only
            b = shapes(build_timm(name, CLASSES[0], None, kwargs))
            wild_ch = {}
            # The server passes in_chans=in_channels: a builder that refuses it cannot be rebuilt.
            compilable = False
        wild = wildcards(b, shapes(build_timm(name, CLASSES[1], CHANNELS[0] if compilable else None, kwargs)), "classes", *CLASSES)
        if set(wild) & set(wild_ch):
            raise Skip("a size follows both num_classes and in_chans")
        wild.update(wild_ch)
        in_ch = 3
    if not any(v[0] == "classes" for v in wild.values()):
        # timm's `*_enc` models (vision encoders of Qwen3-VL, Gemma 4, DeepSeek, MobileNetV5) have
        # no classifier: they return image embeddings for a language model and ignore num_classes.
        raise Skip("no size follows num_classes: no classifier head (num_classes is ignored)")
    fp, ks = fingerprint(b, wild)
    group = ";".join(f"{k}|{d}|{v}|{a}|{bb}" for (k, d), (v, a, bb) in sorted(wild.items()))
    return {
        "zoo": zoo,
        "name": name,
        "family": family,
        "group": group,
        "fp": fp,
        "ks": ks,
        "compilable": compilable,
        "in_channels": in_ch,
        "kwargs": kwargs,
        "tensors": len(b),
    }


def builders() -> list[tuple[str, str, str, dict]]:
    """(zoo, name, family, builder kwargs), in table order: torchvision first (it wins a tie:
    timm's ResNet has torchvision's keys), then timm."""
    import timm
    import torchvision
    from timm.models import _registry

    out = []
    for sub in TV_MODULES:
        mod = getattr(torchvision.models, sub) if sub else torchvision.models
        for n in torchvision.models.list_models(module=mod):
            fam = torchvision.models.get_model_builder(n).__module__.rsplit(".", 1)[-1]
            out.append(("torchvision", n, fam, {}))
            if sub == "segmentation" and n.startswith(SEG_AUX):
                out.append(("torchvision", n, fam, {"aux_loss": True}))
            for kw in TV_VARIANTS.get(n, []):
                out.append(("torchvision", n, fam, kw))
    for n in timm.list_models():
        out.append(("timm", n, _registry._model_to_module.get(n, "?"), {}))
    return out


def render(entries: list[dict], stamp: str, skipped: list[str]) -> str:
    groups: dict[str, int] = {}
    lines = [
        "# byom zoo fingerprint table: GENERATED by tools/zoo/gen_fingerprints.py, do not edit.",
        "# V format versions | G id wildcards(key|dim|classes-or-channels|a|b;…) | F id family",
        "# E zoo(v=torchvision,t=timm) name family-id group-id fingerprint keyset-hash flags(c=server-compilable) [kwargs-json]",
        f"V {FORMAT} {stamp}",
        f"# {len(entries)} entries; {len(skipped)} builders skipped (see docs/architectures.md)",
    ]
    fams: dict[str, int] = {}
    body = []
    for e in entries:
        g = groups.setdefault(e["group"], len(groups))
        if g == len(groups) - 1 and e["group"] not in {x for x in groups if groups[x] < g}:
            pass
        fam = f"{e['zoo']}/{e['family']}"
        f = fams.setdefault(fam, len(fams))
        kw = json.dumps(e["kwargs"], separators=(",", ":"), sort_keys=True) if e["kwargs"] else ""
        flags = "c" if e["compilable"] else "-"
        body.append(f"E {'v' if e['zoo'] == 'torchvision' else 't'} {e['name']} {f} {g} {e['fp']:016x} {e['ks']:016x} {flags} {kw}".rstrip())
    lines += [f"G {i} {g}" for g, i in groups.items()]
    lines += [f"F {i} {f}" for f, i in fams.items()]
    lines += body
    return "\n".join(lines) + "\n"


DOCS = REPO / "docs" / "architectures.md"
BEGIN, END = "<!-- BEGIN GENERATED by tools/zoo/gen_fingerprints.py -->", "<!-- END GENERATED -->"


def render_docs(entries: list[dict], stamp: str, skipped: list[dict], total: dict[str, int]) -> str:
    """The generated part of docs/architectures.md: counts, versions, every builder by family,
    and every builder left out with the reason."""
    out = [BEGIN, "", f"Generated from `{stamp}`.", ""]
    out += ["| library | builders | recognised | not recognisable (below) | server-compilable flag |",
            "|---|---:|---:|---:|---:|"]
    for zoo in ("torchvision", "timm"):
        names = {e["name"] for e in entries if e["zoo"] == zoo}
        comp = {e["name"] for e in entries if e["zoo"] == zoo and e["compilable"]}
        skip = sum(1 for x in skipped if x["zoo"] == zoo)
        out.append(f"| {zoo} | {total[zoo]} | {len(names)} | {skip} | {len(comp)} |")
    out.append("")
    for zoo in ("torchvision", "timm"):
        out += [f"### {zoo}", ""]
        fams: dict[str, list[str]] = {}
        for e in entries:
            if e["zoo"] == zoo:
                n = e["name"] + ("" if e["compilable"] else "†")
                if e["kwargs"]:
                    n += " (" + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(e["kwargs"].items())) + ")"
                fams.setdefault(e["family"], []).append(n)
        for fam, names in sorted(fams.items()):
            out.append(f"- **{fam}** ({len(names)}): {', '.join(names)}")
        out.append("")
    out += ["† recognised, but the builder does not take `in_chans`: flagged not server-compilable.", ""]
    out += ["### Not recognisable", "", "Builders the generator could not fingerprint, and why:", ""]
    for x in skipped:
        out.append(f"- {x['zoo']}/{x['name']}: {x['why']}")
    out += ["", END]
    return "\n".join(out)


def write_docs(block: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else f"{BEGIN}\n{END}\n"
    a, b = text.index(BEGIN), text.index(END) + len(END)
    DOCS.write_text(text[:a] + block + text[b:])


def parse(text: str) -> tuple[str, list[dict]]:
    """The checked-in table back into entries (for --check)."""
    stamp, groups, fams, out = "", {}, {}, []
    for line in text.splitlines():
        if line.startswith("V "):
            stamp = line.split(" ", 2)[2]
        elif line.startswith("G "):
            _, i, g = (line.split(" ", 2) + [""])[:3]
            groups[i] = g
        elif line.startswith("F "):
            _, i, f = line.split(" ", 2)
            fams[i] = f
        elif line.startswith("E "):
            p = line.split(" ", 8)
            zoo = "torchvision" if p[1] == "v" else "timm"
            out.append({
                "zoo": zoo, "name": p[2], "family": fams[p[3]].split("/", 1)[1], "group": groups[p[4]],
                "fp": int(p[5], 16), "ks": int(p[6], 16), "compilable": p[7] == "c",
                "kwargs": json.loads(p[8]) if len(p) > 8 else {},
            })
    return stamp, out


def check(n: int) -> int:
    stamp, table = parse(TABLE.read_text())
    if stamp != versions():
        print(f"library versions differ: table {stamp!r}, installed {versions()!r}: regenerate (tools/zoo/gen_fingerprints.py)")
        return 1
    names = {(b[0], b[1], json.dumps(b[3], sort_keys=True)) for b in builders()}
    listed = {(e["zoo"], e["name"], json.dumps(e["kwargs"], sort_keys=True)) for e in table}
    extra = listed - names
    if extra:
        print(f"table names builders the libraries do not have: {sorted(extra)[:5]}")
        return 1
    step = max(1, len(table) // n)
    bad = 0
    for e in table[::step][:n]:
        got = entry(e["zoo"], e["name"], e["family"], e["kwargs"])
        for k in ("group", "fp", "ks", "compilable", "family"):
            if got[k] != e[k]:
                print(f"{e['zoo']}/{e['name']}: {k} differs: table {e[k]!r}, regenerated {got[k]!r}")
                bad += 1
    print(f"checked {len(table[::step][:n])} entries against {versions()}: {bad} differences")
    return 1 if bad else 0


def merge(files: list[Path], todo: list, out: Path) -> int:
    """Join JSON-lines pieces (entries have "fp", skips "why") in the builders' order."""
    return write_all([json.loads(line) for f in files for line in f.read_text().splitlines()], todo, out)


def write_all(items: list[dict], todo: list, out: Path) -> int:
    """Write the table and the docs from entries and skips, in the builders' order; an entry wins
    over an earlier skip of the same builder (a piece may have been cut short), a later item over
    an earlier one of the same kind (--update)."""
    order = {(z, n, json.dumps(k, sort_keys=True)): i for i, (z, n, _, k) in enumerate(todo)}
    got: dict = {}
    for x in items:
        key = (x["zoo"], x["name"], json.dumps(x.get("kwargs", {}), sort_keys=True))
        if "fp" in x or key not in got or "fp" not in got[key]:
            got[key] = x
    missing = [k for k in order if k not in got]
    for z, n, k in missing:
        got[(z, n, k)] = {"zoo": z, "name": n, "why": "not generated (the run was cut short)"}
    items = sorted(got.items(), key=lambda kv: order.get(kv[0], 1 << 30))
    entries = [x for _, x in items if "fp" in x]
    skipped = [x for _, x in items if "fp" not in x]
    out.write_text(render(entries, versions(), skipped))
    total = {z: sum(1 for b in todo if b[0] == z and not b[3]) for z in ("torchvision", "timm")}
    write_docs(render_docs(entries, versions(), skipped, total))
    print(f"wrote {out}: {len(entries)} entries, {len(skipped)} skipped ({len(missing)} not generated)")
    return 0


def checked_in_skips() -> list[dict]:
    """The builders the checked-in docs list as not recognisable (the table holds entries only)."""
    text = DOCS.read_text()
    block = text[text.index("### Not recognisable"):text.index(END)]
    out = []
    for line in block.splitlines():
        if line.startswith("- ") and "/" in line and ": " in line:
            who, why = line[2:].split(": ", 1)
            zoo, name = who.split("/", 1)
            out.append({"zoo": zoo, "name": name, "why": why})
    return out


def update(names: list[str], todo: list, out: Path) -> int:
    """Regenerate only `names` (every variant of each) and keep the rest as checked in: a fix to
    a few builders without the full run (about an hour on two cores). The version stamp must
    match: otherwise every entry may have changed."""
    stamp, table = parse(TABLE.read_text())
    if stamp != versions():
        print(f"library versions differ ({stamp!r} vs {versions()!r}): run the full generator")
        return 1
    fresh = []
    for zoo, name, fam, kw in todo:
        if name not in names:
            continue
        try:
            fresh.append(entry(zoo, name, fam, kw))
        except Exception as ex:  # noqa: BLE001 - reported like the full run does
            fresh.append({"zoo": zoo, "name": name, "kwargs": kw, "why": f"{type(ex).__name__}: {str(ex)[:200]}"})
    kept = [x for x in table + checked_in_skips() if x["name"] not in names]
    return write_all(kept + fresh, todo, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=TABLE)
    ap.add_argument("--only", nargs="*", help="builder names (for a quick look; prints, writes nothing)")
    ap.add_argument("--check", type=int, metavar="N")
    ap.add_argument("--skipped", type=Path, help="also write the skipped builders and why (JSON)")
    ap.add_argument("--range", help="A:B: only builders A..B of the list, written as JSON lines to --jsonl "
                    "(to split the work over processes; --merge joins the pieces)")
    ap.add_argument("--jsonl", type=Path)
    ap.add_argument("--merge", nargs="*", type=Path, metavar="JSONL",
                    help="write the table from JSON-lines pieces (entries and skips)")
    ap.add_argument("--update", nargs="+", metavar="NAME",
                    help="regenerate only these builders, keep every other entry and skip as checked in")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if args.check:
        return check(args.check)
    entries, skipped = [], []
    t0 = time.time()
    todo = builders()
    if args.merge:
        return merge(args.merge, todo, args.out)
    if args.update:
        return update(args.update, todo, args.out)
    lo, hi = (int(x) for x in args.range.split(":")) if args.range else (0, len(todo))
    pieces = args.jsonl.open("a") if args.jsonl else None
    signal.signal(signal.SIGALRM, _timeout)
    for i, (zoo, name, fam, kw) in enumerate(todo):
        if args.only and name not in args.only or not lo <= i < hi:
            continue
        t1 = time.time()
        signal.alarm(BUILD_SECONDS)
        try:
            entries.append(entry(zoo, name, fam, kw))
        except Exception as ex:  # noqa: BLE001 - every failure is counted and reported
            skipped.append({"zoo": zoo, "name": name, "why": f"{type(ex).__name__}: {str(ex)[:200]}"})
        finally:
            signal.alarm(0)
        if pieces:
            last = entries[-1] if entries and entries[-1]["name"] == name else skipped[-1]
            pieces.write(json.dumps(last) + "\n")
            pieces.flush()
        if time.time() - t1 > 5:
            print(f"slow: {zoo}/{name} {time.time() - t1:.0f}s", file=sys.stderr, flush=True)
        if i % 100 == 0:
            print(f"{i}/{len(todo)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    if pieces:
        return 0
    if args.only:
        for e in entries:
            print(e)
        for s in skipped:
            print("SKIP", s)
        return 0
    args.out.write_text(render(entries, versions(), skipped))
    total = {z: sum(1 for b in todo if b[0] == z and not b[3]) for z in ("torchvision", "timm")}
    write_docs(render_docs(entries, versions(), skipped, total))
    if args.skipped:
        args.skipped.write_text(json.dumps(skipped, indent=1) + "\n")
    per = {}
    for e in entries:
        per[e["zoo"]] = per.get(e["zoo"], 0) + 1
    print(f"wrote {args.out}: {per}; skipped {len(skipped)}; {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
