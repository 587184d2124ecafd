"""The `byom` CLI as people and scripts use it: one --format flag everywhere, several paths
validated independently (exit code by the worst), output into a closed pipe, sizes people read
(exact numbers in JSON), and `pack`/`validate` refusing a class count a real traced torchvision
resnet18 contradicts (BYOM620). Every test runs the built binary on files PyTorch wrote."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

from helpers import run_byom


def human(b: int) -> str:
    """The CLI's own rule for sizes (KiB/MiB with one decimal), to compare with its text."""
    v, units = float(b), ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{b} B" if i == 0 else f"{v:.1f} {units[i]}"


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """torchvision resnet18 traced with a 2-class and a 3-class head (64x64 inputs)."""
    import torch
    import torchvision

    d = tmp_path_factory.mktemp("traced")
    out = {}
    for n in (2, 3):
        torch.manual_seed(0)
        m = torchvision.models.resnet18(num_classes=n).eval()
        p = d / f"resnet18_{n}cls.pt"
        torch.jit.trace(m, torch.zeros(1, 3, 64, 64)).save(str(p))
        out[n] = p
    return out


def pack(byom_bin, pt, out, classes, *extra):
    return run_byom(byom_bin, "pack", pt, "--input", "1,3,64,64", "--classes", classes, "-o", out, *extra,
                    text=True)


# ---- pack and validate: the class count a traced head contradicts --------------------------


def test_pack_refuses_three_names_for_a_two_class_traced_resnet18(byom_bin, traced, tmp_path):
    out = tmp_path / "bad.tar.gz"
    r = pack(byom_bin, traced[2], out, "cat,dog,bird")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "error[BYOM620]" in r.stderr
    assert "3 classes are declared" in r.stderr and "fc.weight [2, 512] has 2 outputs" in r.stderr, r.stderr
    assert "hint: Declare the 2 classes" in r.stderr
    assert not out.exists(), "a refused package was written"
    # The same file with the count its head has packs, validates clean, and the count is
    # inferred from the head when no names are given.
    ok = pack(byom_bin, traced[2], out, "cat,dog")
    assert ok.returncode == 0, ok.stderr
    assert run_byom(byom_bin, "validate", out).returncode == 0
    inferred = run_byom(byom_bin, "pack", traced[2], "--input", "1,3,64,64", "-o", tmp_path / "i.tar.gz", text=True)
    assert inferred.returncode == 0 and "num_classes = 2 from the classifier head fc.weight" in inferred.stdout


def _swap_pt(package: bytes, pt: bytes) -> bytes:
    """The package with its .pt replaced (same name), everything else as written."""
    src = tarfile.open(fileobj=io.BytesIO(package), mode="r:gz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name.endswith(".pt"):
                data = pt
                m.size = len(pt)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_validator_reports_the_same_contradiction_as_an_error(byom_bin, traced, tmp_path):
    # A valid 3-class package, then its .pt swapped for the 2-class trace: what a user gets by
    # re-exporting the wrong checkpoint. It used to validate clean and fail at compile.
    good = tmp_path / "good.tar.gz"
    assert pack(byom_bin, traced[3], good, "cat,dog,bird").returncode == 0
    bad = tmp_path / "swapped.tar.gz"
    bad.write_bytes(_swap_pt(good.read_bytes(), traced[2].read_bytes()))
    r = run_byom(byom_bin, "validate", bad, "--format", "json", text=True)
    assert r.returncode == 1, r.stdout
    rep = json.loads(r.stdout)
    assert rep["valid"] is False
    [err] = [e for e in rep["errors"] if e["code"] == "BYOM620"]
    assert "fc.weight [2, 512] has 2 outputs" in err["message"] and "3 classes" in err["message"]
    assert err["file"].endswith("resnet18_3cls.pt")
    text = run_byom(byom_bin, "validate", bad, text=True).stdout
    assert "BYOM620" in text


# ---- several paths, exit code by the worst ---------------------------------------------------


def test_validate_reports_every_path_in_place(byom_bin, fixtures_dir, tmp_path):
    good = fixtures_dir / "make_pt_traced_tiny.tar.gz"
    bad = fixtures_dir / "config_missing_dataset.tar.gz"
    missing = tmp_path / "missing.tar.gz"
    r = run_byom(byom_bin, "validate", good, bad, missing, text=True)
    assert r.returncode == 2, "a file that cannot be read is the worst outcome: could not run"
    out = r.stdout
    i_good, i_bad, i_missing = out.index(str(good)), out.index(str(bad)), out.index(str(missing))
    assert i_good < i_bad < i_missing, out
    assert "BYOM203" in out[i_bad:i_missing], "the invalid package was still validated"
    assert "could not validate" in out[i_missing:] and "No such file" in out[i_missing:]
    assert str(missing) in r.stderr

    j = run_byom(byom_bin, "validate", good, bad, missing, "--format", "json", text=True)
    assert j.returncode == 2
    items = json.loads(j.stdout)
    assert [i["file"] for i in items] == [str(good), str(bad), str(missing)]
    assert [i["valid"] for i in items] == [True, False, False]
    assert "error" in items[2] and "errors" in items[1]
    # Without the missing one the worst is "invalid".
    assert run_byom(byom_bin, "validate", good, bad).returncode == 1
    assert run_byom(byom_bin, "validate", good, good).returncode == 0


# ---- output into a closed pipe ---------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["inspect", "{pt}", "--format", "json", "--all"],
    ["inspect", "{pt}", "--all"],
    ["validate", "{pkg}", "--format", "json"],
    ["rules"],
])
def test_output_into_a_closed_pipe_is_not_a_panic(byom_bin, traced, fixtures_dir, argv, tmp_path):
    args = [a.format(pt=traced[2], pkg=fixtures_dir / "make_pt_traced_tiny.tar.gz") for a in argv]
    err = tmp_path / "stderr"
    for reader in ("head -c 10", "true"):
        # `true` exits before reading: every write byom makes meets a closed pipe.
        cmd = " ".join([str(byom_bin), *args]) + f" 2>{err} | {reader} >/dev/null; echo ${{PIPESTATUS[0]}}"
        r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
        code = int(r.stdout.strip().splitlines()[-1])
        stderr = err.read_text()
        assert "panicked" not in stderr and "Broken pipe" not in stderr, stderr
        assert code in (0, 1), (reader, code, stderr)


# ---- sizes for people, numbers for machines --------------------------------------------------


def test_sizes_are_human_in_text_and_exact_in_json(byom_bin, traced, tmp_path):
    pt = traced[2]
    size = os.path.getsize(pt)
    text = run_byom(byom_bin, "inspect", pt, text=True).stdout
    assert f"size:          {human(size)}" in text and "MiB" in human(size), text
    assert str(size) not in text, "a raw byte count in the text output"
    j = json.loads(run_byom(byom_bin, "inspect", pt, "--format", "json", text=True).stdout)
    assert j["model"]["file_bytes"] == size

    out = tmp_path / "p.tar.gz"
    r = pack(byom_bin, pt, out, "cat,dog")
    assert f"({human(out.stat().st_size)})" in r.stdout and " bytes)" not in r.stdout, r.stdout
    r = pack(byom_bin, pt, out, "cat,dog", "--format", "json")
    j = json.loads(r.stdout)
    assert j["written"] is True and j["bytes"] == out.stat().st_size and len(j["sha256"]) == 64


def test_one_format_flag_on_every_command(byom_bin):
    # (Help text on every flag is asserted on the clap definition itself: the Rust test
    # every_flag_has_help_and_every_command_has_format.)
    for cmd in ("validate", "inspect", "pack", "push", "rules"):
        h = run_byom(byom_bin, cmd, "--help", text=True).stdout
        assert "--format <FORMAT>" in h and "[possible values: text, json]" in h, cmd
    rules = json.loads(run_byom(byom_bin, "rules", "--format", "json", text=True).stdout)
    assert any(r["code"] == "BYOM620" and r["severity"] == "error" for r in rules)


def test_pack_output_flag_is_the_file_and_a_shape_there_is_refused(byom_bin, traced, tmp_path):
    out = tmp_path / "named.tar.gz"
    r = run_byom(byom_bin, "pack", traced[2], "--input", "1,3,64,64", "--classes", "a,b", "--output", out,
                 "--output-shape", "1,2", text=True)
    assert r.returncode == 0 and out.exists(), r.stderr
    r = run_byom(byom_bin, "pack", traced[2], "--input", "1,3,64,64", "--output", "1,2", text=True, cwd=tmp_path)
    assert r.returncode == 2 and "--output-shape" in r.stderr
    assert not (tmp_path / "1,2").exists()


# ---- push: --format json, per-target truth ---------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from helpers import Server

    s = Server(tmp_path_factory.mktemp("ux-push") / "data", "--workers", "1").start()
    yield s
    s.stop()


def test_push_takes_format_json(byom_bin, server, tmp_path):
    from helpers import good_package

    tok = server.tenant_token("ux", "uploader")
    pkg = tmp_path / "model.tar.gz"
    pkg.write_bytes(good_package("ux-json"))
    r = run_byom(byom_bin, "push", pkg, "--server", server.url, "--token", tok, "--format", "json", text=True)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["uploaded"] is True and j["package"]["id"] and j["bytes"] == pkg.stat().st_size
    assert "warning(s)" not in r.stderr and "uploading" in r.stderr and " bytes" not in r.stderr, r.stderr
    # The old flag still works, and gives the same one object.
    pkg.write_bytes(good_package("ux-json-old"))
    r = run_byom(byom_bin, "push", pkg, "--server", server.url, "--token", tok, "--json", text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["uploaded"] is True


def test_push_compile_says_what_each_target_was_proven_to_do(byom_bin, server, tmp_path):
    from helpers import good_package

    tok = server.tenant_token("ux", "uploader")
    pkg = tmp_path / "model.tar.gz"
    pkg.write_bytes(good_package("ux-compile"))
    r = run_byom(byom_bin, "push", pkg, "--server", server.url, "--token", tok, "--compile", "x86_64-cpu",
                 "--out", tmp_path / "art", "--format", "json", text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    [t] = j["targets"]
    assert t["target"] == "x86_64-cpu" and t["status"] == "succeeded"
    assert t["truth"] == "verified" and t["truth_headline"].startswith("verified on "), t
    assert isinstance(t["max_abs_error"], float) and t["max_abs_error"] < 1e-3
    assert t["p50_ms"] > 0 and len(t["sha256"]) == 64 and t["duration_ms"] > 0
    bundle = tmp_path / "art" / "x86_64-cpu.tar.gz"
    assert t["bundle_bytes"] == bundle.stat().st_size and t["bundle_path"] == str(bundle)

def test_push_compile_text_names_the_truth_and_the_numbers(byom_bin, server, tmp_path):
    from helpers import good_package

    tok = server.tenant_token("ux", "uploader")
    pkg = tmp_path / "model.tar.gz"
    pkg.write_bytes(good_package("ux-compile-text"))
    r = run_byom(byom_bin, "push", pkg, "--server", server.url, "--token", tok, "--compile", "x86_64-cpu",
                 "--wait", text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.strip().startswith("x86_64-cpu"))
    assert "verified on " in line and " 0 ms" not in line, r.stdout
    assert "outputs match the original model's" in r.stdout
    assert "max abs error vs the original" in r.stdout and "p50 " in r.stdout and "model.pt sha256 " in r.stdout
