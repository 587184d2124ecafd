"""The fixtures are what they claim to be, checked with Python's own gzip/tarfile/torch.

Independent of byom: if a fixture were built wrong (a "truncated" gzip that is whole, a "valid"
package the guide's own layout rejects), the validator's tests would prove nothing. So each
hostile archive is checked for its defect and each valid package for its soundness here.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zlib

import pytest

from helpers import tar_infos, tar_members

VALID_LAYOUT = {"config.yaml", "mochi.json", "export_artifacts/manifest.json"}


def _read(fixtures_dir, name) -> bytes:
    return (fixtures_dir / f"{name}.tar.gz").read_bytes()


def test_every_valid_case_has_the_guide_layout(fixtures_dir, expected):
    for name, exp in expected.items():
        if exp["valid"] is not True:
            continue
        names = {m.name.removeprefix("./") for m in tar_infos(_read(fixtures_dir, name)) if m.isfile()}
        assert VALID_LAYOUT <= names, name
        pts = [n for n in names if n.startswith("export_artifacts/") and n.endswith(".pt")
               and not n.rsplit("/", 1)[-1].startswith("._")]
        assert len(pts) == 1, (name, pts)


@pytest.mark.parametrize("name,error", [
    ("truncated_gzip", EOFError),
    ("truncated_gzip_trailer", EOFError),
    ("corrupt_gzip_crc", gzip.BadGzipFile),
    ("corrupt_gzip_size", gzip.BadGzipFile),
    ("trailing_garbage", gzip.BadGzipFile),
    ("corrupt_deflate", zlib.error),
    ("not_gzip", gzip.BadGzipFile),
    ("plain_tar", gzip.BadGzipFile),
])
def test_gzip_defects_are_real(fixtures_dir, name, error):
    with pytest.raises(error):
        gzip.decompress(_read(fixtures_dir, name))


def test_concatenated_members_are_valid_gzip(fixtures_dir):
    data = _read(fixtures_dir, "concatenated_gzip_members")
    assert data.count(b"\x1f\x8b\x08") >= 2
    assert len(tar_infos(data)) == 4


@pytest.mark.parametrize("name", ["gzip_not_tar", "tar_bad_checksum", "tar_truncated_member"])
def test_tar_defects_are_real(fixtures_dir, name):
    with pytest.raises(tarfile.ReadError):
        tar_infos(_read(fixtures_dir, name))


@pytest.mark.parametrize("name,check", [
    ("absolute_path", lambda m: m.name.startswith("/")),
    ("dotdot_path", lambda m: ".." in m.name.split("/")),
    ("symlink_member", lambda m: m.issym()),
    ("symlink_as_pt", lambda m: m.issym() and m.name.endswith(".pt")),
    ("hardlink_member", lambda m: m.islnk()),
    ("device_member", lambda m: m.ischr()),
    ("fifo_member", lambda m: m.isfifo()),
    ("path_too_long", lambda m: len(m.name.encode()) > 1024),
])
def test_hostile_members_are_real(fixtures_dir, name, check):
    assert any(check(m) for m in tar_infos(_read(fixtures_dir, name))), name


def test_duplicates_are_real(fixtures_dir):
    names = [m.name for m in tar_infos(_read(fixtures_dir, "duplicate_member"))]
    assert names.count("config.yaml") == 2
    names = [m.name.removeprefix("./") for m in tar_infos(_read(fixtures_dir, "duplicate_after_normalising"))]
    assert names.count("config.yaml") == 2


def test_bomb_ratio(fixtures_dir):
    data = _read(fixtures_dir, "decompression_bomb")
    total = sum(m.size for m in tar_infos(data))
    assert total >= 300 * 2**20 and total / len(data) > 200, (total, len(data))


def test_guide_examples_declare_what_their_models_do(fixtures_dir):
    """Load each guide example's .pt with real torch and run it on the declared input shape."""
    import torch

    for name in ("guide_yolov10_9ch", "guide_yolov10_verbatim_84", "guide_anomaly_local", "guide_segmentation_hf"):
        members = tar_members(_read(fixtures_dir, name))
        mochi = json.loads(members["mochi.json"])
        pt = next(v for k, v in members.items() if k.endswith(".pt"))
        model = torch.jit.load(io.BytesIO(pt))
        stage = mochi["stages"][0]
        with torch.no_grad():
            out = model(torch.zeros(*stage["input_shape"]))
        assert list(out.shape) == stage["output_shape"], name
