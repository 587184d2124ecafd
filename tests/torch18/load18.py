"""Run by the torch 1.8.0 interpreter: can torch 1.8 load each file? Prints JSON {file: "ok"|error}.

TorchScript archives (a `constants.pkl` record) go through torch.jit.load, everything else
through torch.load (as a 1.8 user would). Each file is loaded in its own process: torch 1.8
aborts (SIGABRT) on some newer TorchScript files instead of raising.
"""
import json
import subprocess
import sys
import zipfile


def load_one(path):
    import torch

    is_ts = zipfile.is_zipfile(path) and any(n.endswith("constants.pkl") for n in zipfile.ZipFile(path).namelist())
    if is_ts:
        torch.jit.load(path)
    else:
        torch.load(path)


if len(sys.argv) == 3 and sys.argv[1] == "--one":
    try:
        load_one(sys.argv[2])
    except Exception as e:  # noqa: BLE001 - any failure means "1.8 cannot load it"
        print(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        sys.exit(1)
    print("ok")
    sys.exit(0)

out = {}
for path in sys.argv[1:]:
    r = subprocess.run([sys.executable, __file__, "--one", path], capture_output=True, text=True)
    if r.returncode == 0:
        out[path] = "ok"
    elif r.returncode < 0:
        out[path] = f"crashed (signal {-r.returncode})"
    else:
        out[path] = (r.stdout.strip().splitlines() or ["error"])[-1]
print(json.dumps(out))
