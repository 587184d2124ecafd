"""One view of a `.pt` zip: the record byom inspects is the record PyTorch loads (issue 9, finding 2).

PyTorch's zip reader (caffe2 PyTorchStreamReader over miniz) takes the archive folder from the
first central-directory record and finds `data.pkl` by a case-insensitive binary search over the
sorted directory. So a zip with two `archive/data.pkl`, or `archive/data.pkl` plus
`archive/DATA.PKL`, let byom inspect one pickle while torch unpickles the other. Each hostile
file here is built from a real `torch.save` with Python's zipfile, and the test first proves
with real torch, in a subprocess, that `torch.load(path, weights_only=False)` (what the guide's
own checklist runs) executes the payload (a harmless `touch` of a marker file); then that
`byom inspect` and `byom validate` (on a package holding it) refuse it with the rule's code.
Before the fix byom called these files safe and validate exited 0.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

from helpers import run_byom

torch = pytest.importorskip("torch")

import make_packages  # noqa: E402  (tests/fixtures is on sys.path via conftest)


class _Payload:
    """Unpickles to os.system(cmd): a harmless touch of a marker file."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def payload(marker: Path) -> bytes:
    # Protocol 0: no PROTO opcode, the bytes start with the GLOBAL opcode `c`.
    p = pickle.dumps(_Payload(f"touch {shlex.quote(str(marker))}"), protocol=0)
    assert p.startswith(b"cposix\nsystem\n"), p[:20]
    return p


def saved_entries() -> list[tuple[str, bytes]]:
    """The records of a real torch.save'd state dict, in file order."""
    buf = io.BytesIO()
    torch.save({"fc.weight": torch.arange(16.0).reshape(2, 8), "fc.bias": torch.zeros(2)}, buf)
    z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    entries = [(i.filename, z.read(i)) for i in z.infolist()]
    assert entries[0][0] == "archive/data.pkl", [n for n, _ in entries]
    return entries


def zip_of(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for name, data in entries:
                z.writestr(name, data)
    return buf.getvalue()


def torch_load_all(paths: list[Path]) -> dict[Path, str]:
    """torch.load(p, weights_only=False) each file in one fresh interpreter; what each gave."""
    code = (
        "import json, sys, torch\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        obj = torch.load(p, weights_only=False)\n"
        "        out[p] = 'loaded ' + type(obj).__name__\n"
        "    except Exception as e:\n"
        "        out[p] = 'error ' + str(e)[:300]\n"
        "print(json.dumps(out))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return {Path(k): v for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}


def inspect(byom_bin: Path, path: Path) -> tuple[int, dict]:
    r = run_byom(byom_bin, "inspect", "--format", "json", path, timeout=300)
    assert r.returncode in (0, 1), r.stderr.decode()
    return r.returncode, json.loads(r.stdout)


def validate_package(byom_bin: Path, pt: bytes, tmp_path: Path, name: str) -> tuple[int, dict]:
    pkg = tmp_path / f"{name}.tar.gz"
    pkg.write_bytes(make_packages.package_bytes(make_packages.BASE, pt_data=pt))
    r = run_byom(byom_bin, "validate", "--format", "json", pkg, timeout=300)
    assert r.returncode in (0, 1), r.stderr.decode()
    return r.returncode, json.loads(r.stdout)


def codes(report: dict) -> set[str]:
    return {e["code"] for e in report["errors"]}


def assert_refused(byom_bin: Path, path: Path, tmp_path: Path, code: str) -> None:
    rc, out = inspect(byom_bin, path)
    assert rc == 1 and code in codes(out), (path.name, out["errors"])
    assert out["model"]["safety"] != "safe", out["model"]
    issue = next(e for e in out["errors"] if e["code"] == code)
    assert issue["hint"].strip(), issue
    if code in ("BYOM613", "BYOM614", "BYOM615"):
        assert "torch.save" in issue["hint"], issue
    rc, report = validate_package(byom_bin, path.read_bytes(), tmp_path, path.stem)
    assert rc == 1 and report["valid"] is False and code in codes(report), (path.name, report["errors"])


# ---------------------------------------------------------------------------------------------


def test_rezipped_benign_file_is_accepted(byom_bin, tmp_path):
    """The control: the same records rewritten by Python's zipfile load in torch and pass byom,
    so what the hostile variants are refused for is the names, not the rewrap."""
    path = tmp_path / "benign.pt"
    path.write_bytes(zip_of(saved_entries()))
    assert torch_load_all([path])[path] == "loaded dict"
    rc, out = inspect(byom_bin, path)
    assert rc == 0 and out["model"]["safety"] == "safe" and out["model"]["kind"] == "state_dict", out
    rc, report = validate_package(byom_bin, path.read_bytes(), tmp_path, "benign")
    assert rc == 0 and report["valid"] is True, report["errors"]


def every_position(tmp_path: Path, tag: str, hostile_name: str, hostile_first: bool) -> tuple[list[Path], list[Path]]:
    """The hostile record placed at every position of a real torch.save's records (before the
    benign data.pkl, or anywhere after it). Which of two like-named records miniz's binary
    search finds depends on where they sort among the others, so every position is built and
    torch.load'ed. Returns (all files, the files whose payload torch ran)."""
    entries = saved_entries()
    benign, rest = entries[0], entries[1:]
    variants: dict[Path, Path] = {}
    for k in range(len(rest) + 1):
        path, marker = tmp_path / f"{tag}_{k}.pt", tmp_path / f"ran_{tag}_{k}"
        hostile = (hostile_name, payload(marker))
        if hostile_first:
            records = rest[:k] + [hostile, benign] + rest[k:]
        else:
            records = [benign] + rest[:k] + [hostile] + rest[k:]
        path.write_bytes(zip_of(records))
        variants[path] = marker
    results = torch_load_all(list(variants))
    ran = [p for p, m in variants.items() if m.exists()]
    assert ran, f"torch never ran the {hostile_name} payload: {results}"
    return list(variants), ran


def test_duplicate_data_pkl_hostile_first(byom_bin, tmp_path):
    """(a) Two `archive/data.pkl`, the hostile one first: byom kept the last (benign) one, torch
    ran the first. Every position is refused with BYOM613, naming the record."""
    files, ran = every_position(tmp_path, "dup", "archive/data.pkl", hostile_first=True)
    for path in files:
        rc, out = inspect(byom_bin, path)
        # Both records are walked, so the payload is also named (BYOM602).
        assert rc == 1 and {"BYOM613", "BYOM602"} <= codes(out), (path.name, out["errors"])
        assert '"archive/data.pkl"' in next(e["message"] for e in out["errors"] if e["code"] == "BYOM613")
    assert_refused(byom_bin, ran[0], tmp_path, "BYOM613")


@pytest.mark.parametrize("upper", ["archive/DATA.PKL", "archive/Data.pkl"])
def test_case_variant_beside_data_pkl(byom_bin, tmp_path, upper):
    """(b) A benign data.pkl plus a hostile one named in another case, after it: BYOM614,
    naming both; and the hostile record is read as torch reads it, a pickle, its call named."""
    files, ran = every_position(tmp_path, "case", upper, hostile_first=False)
    for path in files:
        rc, out = inspect(byom_bin, path)
        assert rc == 1 and {"BYOM614", "BYOM602"} <= codes(out), (path.name, out["errors"])
        msg = next(e["message"] for e in out["errors"] if e["code"] == "BYOM614")
        assert "archive/data.pkl" in msg and upper in msg, msg
    assert_refused(byom_bin, ran[0], tmp_path, "BYOM614")


def test_lone_upper_case_data_pkl_is_read_as_data_pkl(byom_bin, tmp_path):
    """With no lower-case data.pkl, torch loads `DATA.PKL` as data.pkl; byom used to say 'no
    data.pkl' (BYOM600) with safety 'safe'. It now inspects the record torch loads."""
    path, marker = tmp_path / "lone.pt", tmp_path / "ran_lone"
    entries = [e for e in saved_entries() if e[0] != "archive/data.pkl"]
    path.write_bytes(zip_of([("archive/DATA.PKL", payload(marker))] + entries))
    torch_load_all([path])
    assert marker.exists(), "torch did not load DATA.PKL as data.pkl"
    assert_refused(byom_bin, path, tmp_path, "BYOM602")
    _, out = inspect(byom_bin, path)
    assert out["model"]["safety"] == "unsafe"
    assert "posix.system" in next(e["message"] for e in out["errors"] if e["code"] == "BYOM602")


def test_record_outside_the_archive_folder(byom_bin, tmp_path):
    """A record under another top folder: torch 2.11 refuses to open the zip (getAllRecords);
    byom refuses it too, with its own code, rather than reading it under a folder torch doesn't."""
    path, marker = tmp_path / "outside.pt", tmp_path / "ran_outside"
    path.write_bytes(zip_of(saved_entries() + [("other/data.pkl", payload(marker))]))
    result = torch_load_all([path])[path]
    assert result.startswith("error") and "subdirectory" in result, result
    assert not marker.exists()
    assert_refused(byom_bin, path, tmp_path, "BYOM615")
    _, out = inspect(byom_bin, path)
    assert "other/data.pkl" in next(e["message"] for e in out["errors"] if e["code"] == "BYOM615")


def _second_end_record(entries: list[tuple[str, bytes]], evil: bytes) -> bytes:
    """A valid zip whose end record's comment hides: a local record `archive/data.pkl` holding
    `evil`, a second central directory pointing data.pkl at it, and a second end record followed
    by one byte. miniz takes the LAST end-record signature; byom used to take the last one whose
    comment length reached the end of the file (the real one) and so read another directory."""
    real = zip_of(entries)
    sig, disk, cd_disk, n_disk, n, cd_size, cd_off, clen = struct.unpack("<4s4H2LH", real[-22:])
    assert sig == b"PK\x05\x06" and clen == 0
    evil_ofs = len(real)
    name = b"archive/data.pkl"
    crc = zipfile.crc32(evil)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(evil), len(evil), len(name), 0)
    local += name + evil
    cd, p = b"", cd_off
    for _ in range(n):
        h = list(struct.unpack("<4s6H3L5H2L", real[p:p + 46]))
        nlen, xlen, elen = h[10], h[11], h[12]
        fname = real[p + 46:p + 46 + nlen]
        if fname == name:
            h[7], h[8], h[9], h[16] = crc, len(evil), len(evil), evil_ofs
        cd += struct.pack("<4s6H3L5H2L", *h) + real[p + 46:p + 46 + nlen + xlen + elen]
        p += 46 + nlen + xlen + elen
    fake_cd_ofs = evil_ofs + len(local)
    fake_eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(cd), fake_cd_ofs, 0)
    comment = local + cd + fake_eocd + b"\x00"
    return real[:-2] + struct.pack("<H", len(comment)) + comment


def test_second_end_record_in_the_comment(byom_bin, tmp_path):
    """A related view split: the end record. torch must run the hidden pickle; byom must refuse
    the file (BYOM604: the last end record does not end the file)."""
    path, marker = tmp_path / "eocd.pt", tmp_path / "ran_eocd"
    path.write_bytes(_second_end_record(saved_entries(), payload(marker)))
    result = torch_load_all([path])[path]
    assert marker.exists(), f"torch did not read the second directory: {result}"
    assert_refused(byom_bin, path, tmp_path, "BYOM604")
    _, out = inspect(byom_bin, path)
    assert "end-of-central-directory" in next(e["message"] for e in out["errors"] if e["code"] == "BYOM604")


def test_server_refuses_what_torch_would_load_differently(tmp_path_factory, tmp_path):
    """The red-team saw the server store these (201); it re-validates with the same core, so
    each hostile variant is now a 422 naming the rule, and nothing is kept."""
    from helpers import serve

    entries = saved_entries()
    marker = tmp_path / "never"
    evil = payload(marker)
    variants = {
        "BYOM613": zip_of([("archive/data.pkl", evil)] + entries),
        "BYOM614": zip_of(entries + [("archive/DATA.PKL", evil)]),
        "BYOM615": zip_of(entries + [("other/data.pkl", evil)]),
    }
    for server in serve(tmp_path_factory, "ptzip"):
        token = server.tenant_token("ptzip", "uploader")
        for code, pt in variants.items():
            data = make_packages.package_bytes(make_packages.BASE, pt_data=pt)
            body = server.error(server.upload(token, data), 422, "invalid_package")
            assert code in codes(body["report"]), (code, body["report"]["errors"])
        listed = server.call("GET", "/api/v1/packages", token).json()
        assert listed["packages"] == [], listed
    assert not marker.exists()
