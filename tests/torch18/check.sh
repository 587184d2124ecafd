#!/usr/bin/env bash
# Check byom's "PyTorch 1.8 can / cannot load this" verdicts against a real torch 1.8.0.
#
# What it does:
#   1. creates target/torch18/venv with CPython 3.8 (pyenv) and installs torch==1.8.0 and
#      torchvision==0.9.0 from PyPI (about 800 MB, once);
#   2. writes every kind of tests/fixtures/make_pt.py with the project's current torch, and a set
#      of files written BY torch 1.8 (tests/torch18/gen18.py);
#   3. runs `byom inspect --format json` on each: byom says 1.8 cannot load it iff it reports
#      BYOM702; runs torch 1.8 on each (tests/torch18/load18.py);
#   4. prints a table and fails if byom and torch 1.8 disagree, or if a torch-1.8-written file
#      raises any safety alarm or the wrong kind;
#   5. checks the generated operator table (crates/byom-core/src/torch/op_history.txt) against
#      every schema torch 1.8 registers: nothing it dates after 1.8 may exist in 1.8.
# PY38 may name any CPython torch 1.8.0 has wheels for (3.6–3.9).
# Too slow for the default test command; run by hand: tests/torch18/check.sh
# Results are recorded in docs/bench-torch.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T=$ROOT/target/torch18
PY38=${PY38:-$HOME/.pyenv/versions/3.8.18/bin/python}
BYOM=${BYOM_BIN:-$ROOT/target/debug/byom}
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$T"
# torch 1.8 must not see the project's libtorch (LD_LIBRARY_PATH from the worktree's env.sh).
T18=(env -u LD_LIBRARY_PATH "$T/venv/bin/python")
if [ ! -x "$T/venv/bin/python" ] || ! "${T18[@]}" -c 'import torch; assert torch.__version__.startswith("1.8.0")' 2>/dev/null; then
  "$PY38" -m venv "$T/venv"
  "$T/venv/bin/pip" install -q torch==1.8.0 torchvision==0.9.0 numpy
fi
[ -x "$BYOM" ] || cargo build -p byom-cli
rm -rf "$T/new" "$T/old" && mkdir -p "$T/new" "$T/old"
"$PY" tests/fixtures/make_pt.py "$T/new" >/dev/null
"${T18[@]}" tests/torch18/gen18.py "$T/old" 2>/dev/null
"${T18[@]}" tests/torch18/load18.py "$T"/new/*.pt "$T"/old/*.pt > "$T/load18.json" 2>/dev/null
"${T18[@]}" tests/torch18/schemas18.py > "$T/schemas18.json"
"$PY" tools/torch_ops/extract.py --verify-registry 1.8 "$T/schemas18.json"
"$PY" - "$BYOM" "$T" <<'PYEOF'
import json, subprocess, sys
from pathlib import Path
byom, t = sys.argv[1], Path(sys.argv[2])
loads = json.loads((t / "load18.json").read_text())
exp_new = json.loads((t / "new" / "expected.json").read_text())
exp_old = json.loads((t / "old" / "expected18.json").read_text())
bad = []
rows = []
for path, res in sorted(loads.items()):
    p = Path(path)
    out = json.loads(subprocess.run([byom, "inspect", "--format", "json", path], capture_output=True).stdout)
    m = out["model"]
    codes = {i["code"] for i in out["errors"] + out["warnings"]}
    says_no = "BYOM702" in codes
    kind = m["kind"]
    if kind in ("pickled_module", "not_pytorch"):
        verdict = "n/a"
    else:
        agree = says_no == (res != "ok")
        verdict = "agree" if agree else "DISAGREE"
        if not agree:
            bad.append(p.name)
    if p.parent.name == "old":
        e = exp_old[p.stem]
        if kind != e["kind"] or m["architecture"] != e["architecture"] or codes & {"BYOM601", "BYOM602", "BYOM603", "BYOM604", "BYOM605", "BYOM606"}:
            bad.append(f"{p.name}: kind {kind} / arch {m['architecture']} / codes {sorted(codes)}")
    rows.append(f"| {p.parent.name}/{p.name} | {kind} | {m['min_torch']} | {'no (BYOM702)' if says_no else 'yes'} | {res if len(res) < 70 else res[:67] + '...'} | {verdict} |")
print("| file | byom kind | byom min torch | byom: loads in 1.8? | torch 1.8.0 load | |")
print("|---|---|---|---|---|---|")
print("\n".join(rows))
if bad:
    print("\nFAILURES:", *bad, sep="\n  ")
    sys.exit(1)
print(f"\nall {len(rows)} files: byom agrees with torch 1.8.0")
PYEOF
