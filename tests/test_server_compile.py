"""Compile through the API: upload a real traced model and a real torchvision state dict,
compile for x86_64-cpu in a sandboxed worker (the state dict rebuilt by torchvision in the
worker's Python child, inside the same sandbox), download the bundle and load its artifact with
Python torch, comparing its output with the original model's. (All four targets and the
scripted kind are covered by tests/test_compile_e2e.py.)"""

from __future__ import annotations

import io
import sys

import pytest

from helpers import FIXTURES_SRC, good_package, serve, tar_members


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "compile", "--workers", "1", "--python", sys.executable)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none), as the worker sees it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return max(libc.syscall(444, None, 0, 1), 0)  # landlock_create_ruleset(NULL, 0, VERSION)


def test_compile_x86_64_cpu_through_the_api(server):
    import torch

    tok = server.tenant_token("compiler", "uploader")
    pkg_bytes = good_package("compile")
    pkg = server.check(server.upload(tok, pkg_bytes), 201, "PackageResponse")["package"]
    job = server.check(server.call("POST", f"/api/v1/packages/{pkg['id']}/compile", tok, json={"targets": ["x86_64-cpu"]}),
                       202, "JobResponse")["job"]
    done = server.wait_job(tok, job["id"], timeout=600)
    assert done["status"] == "succeeded", done
    target = done["targets"][0]
    assert target["target"] == "x86_64-cpu" and target["status"] == "succeeded"
    assert target["duration_ms"] is not None and target["sha256"]
    # The worker confined itself before loading the model (this kernel has Landlock; see
    # jobs/confine.rs and its unit test for what that denies).
    if landlock_abi() >= 6:
        assert "sandbox: Landlock fully enforced" in (done["log_tail"] or ""), done["log_tail"]
    detail = server.check(server.call("GET", f"/api/v1/packages/{pkg['id']}", tok), 200, "PackageDetail")
    assert [j["id"] for j in detail["jobs"]] == [job["id"]]
    r = server.call("GET", target["artifact_url"], tok)
    assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
    assert "attachment" in r.headers["content-disposition"]
    bundle = tar_members(r.content)
    pt_names = [n for n in bundle if n.endswith(".pt")]
    assert len(pt_names) == 1, list(bundle)
    assert any(n.endswith("deployment.json") for n in bundle), list(bundle)
    artifact = torch.jit.load(io.BytesIO(bundle[pt_names[0]]), map_location="cpu")
    original_pt = [v for k, v in tar_members(pkg_bytes).items() if k.endswith(".pt")][0]
    original = torch.jit.load(io.BytesIO(original_pt), map_location="cpu")
    torch.manual_seed(0)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        a, b = artifact(x), original(x)
    assert a.shape == b.shape == (1, 2)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a, b)
    # a viewer of another tenant cannot fetch it
    other = server.tenant_token("compiler-other", "viewer")
    assert server.call("GET", target["artifact_url"], other).status_code == 404


def test_compile_a_state_dict_through_the_api(server):
    """The worker rebuilds a torchvision resnet18 state dict with torchvision's constructor in
    its Python child, which inherits the worker's sandbox (Landlock, memory and file caps, no
    network): it still reads its own venv, and the artifact computes what torchvision computes."""
    import torch
    import torchvision

    sys.path.insert(0, str(FIXTURES_SRC))
    import make_packages as mp

    torch.manual_seed(9)
    model = torchvision.models.resnet18(num_classes=3).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    shape = [1, 3, 64, 64]
    spec = mp.Package("unused", "resnet18.pt", "classification", shape, [1, 3], 3, ["a", "b", "c"],
                      preprocessing={"resize": [64, 64], "normalize": mp.IMAGENET, "channel_order": "RGB"},
                      postprocessing={"type": "softmax"})
    pkg_bytes = mp.gz(mp.tar_bytes(mp.members_of(spec, pt_data=buf.getvalue())), level=0)
    tok = server.tenant_token("compiler-sd", "uploader")
    pkg = server.check(server.upload(tok, pkg_bytes), 201, "PackageResponse")["package"]
    job = server.check(server.call("POST", f"/api/v1/packages/{pkg['id']}/compile", tok, json={"targets": ["x86_64-cpu"]}),
                       202, "JobResponse")["job"]
    done = server.wait_job(tok, job["id"], timeout=600)
    assert done["status"] == "succeeded", done
    if landlock_abi() >= 6:
        assert "sandbox: Landlock fully enforced" in (done["log_tail"] or ""), done["log_tail"]
    assert "rebuilt with torchvision's own constructor" in (done["log_tail"] or ""), done["log_tail"]
    target = done["targets"][0]
    bundle = tar_members(server.call("GET", target["artifact_url"], tok).content)
    [pt_name] = [n for n in bundle if n.endswith(".pt")]
    artifact = torch.jit.load(io.BytesIO(bundle[pt_name]), map_location="cpu")
    x = torch.linspace(-1, 1, 3 * 64 * 64).reshape(shape)
    with torch.no_grad():
        a, b = artifact(x), model(x)
    assert a.shape == b.shape == (1, 3)
    assert ((a - b).abs().max() / b.abs().max()).item() <= 1e-4, (a, b)


def test_a_model_that_crashes_a_load_time_step_still_compiles_through_the_api(server):
    """The oneDNN fuser, an x86_64-cpu load-time candidate, dies with SIGSEGV on this model
    (tests/llga_crash.py): the worker (byom-server itself, re-executed for the candidate) rules
    the fuser out and the job succeeds, its log saying why, where it used to die whole."""
    import torch

    import llga_crash

    sys.path.insert(0, str(FIXTURES_SRC))
    import make_packages as mp

    module = llga_crash.traced()
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    shape = list(llga_crash.INPUT_SHAPE)
    classes = [f"c{i}" for i in range(llga_crash.CLASSES)]
    spec = mp.Package("unused", "model.pt", "classification", shape, [1, len(classes)], len(classes), classes,
                      preprocessing={"resize": shape[2:], "normalize": mp.IMAGENET, "channel_order": "RGB"},
                      postprocessing={"type": "softmax"})
    tok = server.tenant_token("compiler-llga", "uploader")
    pkg = server.check(server.upload(tok, mp.gz(mp.tar_bytes(mp.members_of(spec, pt_data=buf.getvalue())))), 201,
                       "PackageResponse")["package"]
    job = server.check(server.call("POST", f"/api/v1/packages/{pkg['id']}/compile", tok, json={"targets": ["x86_64-cpu"]}),
                       202, "JobResponse")["job"]
    done = server.wait_job(tok, job["id"], timeout=600)
    assert done["status"] == "succeeded", done
    assert "load-time step onednn_fusion failed here (it crashed libtorch: killed by signal 11 (SIGSEGV)" in (
        done["log_tail"] or ""), done["log_tail"]
