"""`byom validate --inflate-threads`: the parallel gunzip (the default on machines with more than
one core) gives the same report, byte for byte (sha256 included), as the sequential reader
(`--inflate-threads 1`) on the generated packages.

Chunks of 4 KiB force the parallel path (chunk search, window markers, stitching, the fallback
on doubt) on every fixture larger than one chunk; BYOM_INFLATE_TRACE says, per file, whether the
parallel path ran or why the sequential reader decided instead, so the test can check that it
really ran. One process per mode over all fixtures keeps this cheap.
"""

from __future__ import annotations

import array
import io
import json
import os
import random
import tarfile

import pytest

from helpers import byom_bin, corpus_dir_path, fixtures_dir_path, run_byom, run_on_tty


def test_parallel_inflate_reports_equal_sequential_on_every_fixture():
    byom = byom_bin()
    # The fixtures up to 4 MB (all but the ~20 real-model weight files, which repeat the same
    # paths at 10x the bytes): the debug build's new decoder is what takes the time here.
    paths = sorted(str(p) for p in fixtures_dir_path().glob("*.tar.gz") if p.stat().st_size <= 4 << 20)
    # ~110 of the fixtures place a picklescan corpus file as the .pt; without the corpus beside
    # the clone (conftest prints that loudly) the rest must still be there and still agree.
    minimum = 200 if corpus_dir_path() else 100
    assert len(paths) > minimum, f"{len(paths)} fixtures: run tests/fixtures/make_packages.py"
    seq = run_byom(
        byom, "validate", "--format", "json", "--no-progress", *paths,
        env_extra={"BYOM_INFLATE_THREADS": "1", "BYOM_INFLATE_TRACE": "1"}, timeout=600,
    )
    assert "parallel inflate" not in seq.stderr.decode(), "threads=1 must be the sequential reader"
    par = run_byom(
        byom, "validate", "--format", "json", "--no-progress", *paths,
        env_extra={"BYOM_INFLATE_THREADS": "3", "BYOM_INFLATE_CHUNK": "4096", "BYOM_INFLATE_TRACE": "1"},
        timeout=600,
    )
    assert par.returncode == seq.returncode
    assert par.stdout == seq.stdout, "a report differs between the parallel and sequential readers"
    trace = par.stderr.decode().splitlines()
    ran = [t for t in trace if "bytes on 3 threads" in t]
    fell_back = [t for t in trace if "sequential instead" in t]
    # Most multi-chunk fixtures are decoded in parallel; the corrupt and multi-member ones are not.
    assert len(ran) >= minimum // 2, trace
    assert any("trailer" in t for t in fell_back), fell_back
    reports = json.loads(seq.stdout)
    assert len(reports) == len(paths) and all(r.get("sha256") for r in reports)


def test_the_default_inflates_in_parallel_and_shows_its_progress_bar(tmp_path):
    # > 64 MiB (the bar's threshold) of incompressible bytes in a tar.gz: the default reader is
    # the parallel one on a machine with 2+ cores, and it draws the same bar as the sequential.
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: the default is the sequential reader")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        data = os.urandom(70 << 20)
        info = tarfile.TarInfo("model.pt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    package = tmp_path / "big.tar.gz"
    package.write_bytes(buf.getvalue())
    env = os.environ | {"BYOM_INFLATE_TRACE": "1"}
    env.pop("BYOM_INFLATE_THREADS", None)
    parallel = run_on_tty([str(byom_bin()), "validate", str(package)], env, timeout=120)
    assert b"parallel inflate: " in parallel and b"chunks of" in parallel, parallel[-2000:]
    assert b"validating [" in parallel, "the parallel path draws the progress bar"
    sequential = run_on_tty(
        [str(byom_bin()), "validate", "--inflate-threads", "1", str(package)], env, timeout=120
    )
    assert b"parallel inflate" not in sequential
    assert b"validating [" in sequential


def test_a_zeroed_layer_is_decoded_in_order_and_the_rest_stays_parallel(tmp_path):
    # A zeroed (pruned, zero-initialised) layer inflates ~1000x: the chunk holding it goes far
    # past any per-chunk output cap. It must be decoded in order by itself, not send the whole
    # file back to the sequential reader, and the report must not change.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        # fp32 weights (they compress a little, in Huffman-coded blocks the chunk search
        # finds; os.urandom would be stored blocks, which it does not look for).
        rng = random.Random(7)
        weights = array.array("f", (rng.gauss(0.0, 0.02) for _ in range(3 << 20))).tobytes()
        data = weights[: 6 << 20] + bytes(32 << 20) + weights[6 << 20 :]
        info = tarfile.TarInfo("export_artifacts/model.pt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    package = tmp_path / "zeroed.tar.gz"
    package.write_bytes(buf.getvalue())
    args = ("validate", "--format", "json", "--no-progress", str(package))
    seq = run_byom(byom_bin(), *args, env_extra={"BYOM_INFLATE_THREADS": "1"})
    par = run_byom(byom_bin(), *args, env_extra={"BYOM_INFLATE_THREADS": "2", "BYOM_INFLATE_TRACE": "1"})
    trace = par.stderr.decode()
    assert "sequential instead" not in trace, trace
    assert "chunks of 1048576 bytes on 2 threads" in trace and ", 1 decoded in order" in trace, trace
    assert par.returncode == seq.returncode
    assert par.stdout == seq.stdout
