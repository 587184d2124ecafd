"""Resumable uploads speak tus 1.0 (core, creation, termination, expiration): the protocol's
headers and refusals, tenant isolation, a standard tus client (`tuspy`) completing a valid and an
invalid package, the verdict kept for a client whose last answer was lost, and `byom push`
resuming through a connection that drops mid-upload."""

from __future__ import annotations

import base64
import email.utils
import json
import re
import socket
import struct
import threading
import time

import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

from helpers import Server, bad_package, byom_bin, good_package, run_byom, sha256, serve

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "tus")


def meta(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def test_tus_discovery_creation_termination_and_refusals(server: Server):
    s = server
    alice, bob = s.tenant_token("tus-a", "uploader"), s.tenant_token("tus-b", "uploader")
    # OPTIONS: no token needed, says what is served
    r = s.call("OPTIONS", "/api/v1/uploads", headers={"Tus-Resumable": None})
    s.check(r, 204)
    assert r.headers["Tus-Resumable"] == "1.0.0" and r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {"creation", "termination", "expiration"}
    assert int(r.headers["Tus-Max-Size"]) == s.check(s.call("GET", "/api/v1/format-spec"), 200, "FormatSpec")["max_upload_bytes"]
    # the version is required, and only 1.0.0 is served
    for version in (None, "0.2.2"):
        r = s.call("POST", "/api/v1/uploads", alice, headers={"Tus-Resumable": version, "Upload-Length": "10"})
        s.error(r, 412, "tus_version")
        assert r.headers["Tus-Version"] == "1.0.0" and r.headers["Tus-Resumable"] == "1.0.0"
    # creation: the name from Upload-Metadata, Location, Upload-Expires (the default day ahead)
    data = good_package("tus-protocol")
    r = s.call("POST", "/api/v1/uploads", alice,
               headers={"Upload-Length": str(len(data)), "Upload-Metadata": meta(filename="meta.tar.gz", x="y")})
    up = s.check(r, 201, "UploadStatus")
    url = r.headers["Location"]
    assert url == f"/api/v1/uploads/{up['upload_id']}"
    expires = email.utils.parsedate_to_datetime(r.headers["Upload-Expires"]).timestamp()
    assert 86400 - 120 < expires - time.time() <= 86400 + 5
    s.error(s.call("POST", "/api/v1/uploads", alice, headers={"Upload-Length": "10", "Upload-Metadata": "filename %%%"}),
            400, "bad_request")
    # PATCH needs the tus body type (415) and the exact offset (409, told the right one)
    s.error(s.call("PATCH", url, alice, headers={"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
                   data=data[:100]), 415, "unsupported_media_type")
    r = s.call("PATCH", url, alice, headers={"Upload-Offset": "0"}, data=data[:100])
    s.check(r, 204)
    assert r.headers["Upload-Offset"] == "100" and "Upload-Expires" in r.headers
    r = s.call("PATCH", url, alice, headers={"Upload-Offset": "7"}, data=data[7:9])
    assert s.error(r, 409, "offset_mismatch")["offset"] == 100 and r.headers["Upload-Offset"] == "100"
    # HEAD: offset, length, no caching
    head = s.call("HEAD", url, alice)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == "100"
    assert head.headers["Upload-Length"] == str(len(data)) and head.headers["Cache-Control"] == "no-store"
    assert s.check(s.call("GET", url, alice), 200, "UploadStatus")["name"] == "meta.tar.gz"
    # another tenant sees nothing of it
    assert s.call("HEAD", url, bob).status_code == 404
    s.error(s.call("GET", url, bob), 404, "not_found")
    s.error(s.call("PATCH", url, bob, headers={"Upload-Offset": "100"}, data=b"x"), 404, "not_found")
    s.error(s.call("DELETE", url, bob), 404, "not_found")
    # termination
    s.check(s.call("DELETE", url, alice), 204)
    assert s.call("HEAD", url, alice).status_code == 404
    s.error(s.call("PATCH", url, alice, headers={"Upload-Offset": "100"}, data=b"x"), 404, "not_found")


def test_a_standard_tus_client_uploads_a_package_and_gets_the_verdict(server: Server):
    s = server
    tok = s.tenant_token("tuspy", "uploader")
    tc = tus_client.TusClient(s.url + "/api/v1/uploads", headers={"Authorization": f"Bearer {tok}"})
    good = good_package("tuspy")
    patches_before = len(s.request_lines("PATCH", "/api/v1/uploads/"))
    uploader = tc.uploader(file_stream=__import__("io").BytesIO(good), chunk_size=len(good) // 3 + 1,
                           metadata={"filename": "tuspy.tar.gz"})
    uploader.upload()
    assert len(s.request_lines("PATCH", "/api/v1/uploads/")) - patches_before == 3
    path = uploader.url[len(s.url):]
    done = s.check(s.call("GET", path, tok), 200, "UploadStatus")
    assert done["state"] == "stored" and done["offset"] == done["length"] == len(good)
    pkg = done["package"]
    assert pkg["name"] == "tuspy.tar.gz" and pkg["sha256"] == sha256(good) and pkg["report"]["valid"]
    listed = s.check(s.call("GET", "/api/v1/packages", tok), 200, "PackageList")["packages"]
    assert pkg["id"] in [p["id"] for p in listed]
    # a client whose last answer was lost: HEAD says complete (and which package), the last
    # PATCH again answers the same, another tenant learns nothing
    head = s.call("HEAD", path, tok)
    assert head.headers["Upload-Offset"] == str(len(good)) and head.headers["Byom-Package-Id"] == pkg["id"]
    r = s.call("PATCH", path, tok, headers={"Upload-Offset": str(len(good))}, data=b"")
    assert r.status_code == 204 and r.headers["Byom-Package-Id"] == pkg["id"]
    s.error(s.call("GET", path, s.tenant_token("tuspy-other", "uploader")), 404, "not_found")
    # terminating a completed upload forgets its verdict, not its package
    s.check(s.call("DELETE", path, tok), 204)
    s.error(s.call("GET", path, tok), 404, "not_found")
    s.check(s.call("GET", f"/api/v1/packages/{pkg['id']}", tok), 200, "PackageDetail")

    # an invalid package: the client's last PATCH fails with the 422 and its report
    bad = bad_package()
    uploader = tc.uploader(file_stream=__import__("io").BytesIO(bad), chunk_size=1 << 20,
                           metadata={"filename": "bad.tar.gz"})
    with pytest.raises(TusCommunicationError) as refused:
        uploader.upload()
    assert refused.value.status_code == 422
    report = json.loads(refused.value.response_content)["report"]
    assert "BYOM203" in [e["code"] for e in report["errors"]]
    path = uploader.url[len(s.url):]
    done = s.check(s.call("GET", path, tok), 200, "UploadStatus")
    assert done["state"] == "rejected" and done["status"] == 422 and done["error"]["report"] == report
    head = s.call("HEAD", path, tok)
    assert head.status_code == 200 and head.headers["Byom-Upload-State"] == "rejected"
    assert "Byom-Package-Id" not in head.headers


class DroppingProxy:
    """A TCP proxy that cuts a connection once: the first answer after `after` bytes from the
    client have gone through (mid-upload), and forwards everything else as it is."""

    def __init__(self, target_url: str, after: int):
        host, port = target_url.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.after = after
        self.forwarded = 0
        self.dropped = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(conn, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, conn, False), daemon=True).start()

    def _pipe(self, src, dst, from_client):
        try:
            while chunk := src.recv(65536):
                if from_client:
                    self.forwarded += len(chunk)
                elif not self.dropped and self.forwarded > self.after:
                    # The first answer after `after` request bytes never reaches the client:
                    # it cannot know how much of its PATCH arrived. Reset both ends, as when a
                    # network path dies.
                    self.dropped += 1
                    for end in (src, dst):
                        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    raise OSError("dropped on purpose")
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.sock.close()


def test_push_resumes_after_a_dropped_connection(server: Server, tmp_path):
    s = server
    tok = s.tenant_token("push-resume", "uploader")
    pkg = tmp_path / "resumed.tar.gz"
    data = good_package("push-resume") + b""  # small, so a low threshold makes push go resumable
    pkg.write_bytes(data)
    proxy = DroppingProxy(s.url, after=len(data) // 2)
    try:
        out = run_byom(byom_bin(), "push", str(pkg), "--server", proxy.url, "--token", tok, "--json",
                       "--resumable-threshold", "1", "--chunk-size", str(len(data) // 4 + 1),
                       "--retry-backoff-ms", "50", text=True)
    finally:
        proxy.close()
    assert out.returncode == 0, out.stderr
    assert proxy.dropped == 1
    pushed = json.loads(out.stdout)["package"]
    assert pushed["sha256"] == sha256(data) and pushed["name"] == "resumed.tar.gz"
    # push learned the offset with HEAD after the drop and went on from there
    assert len(s.request_lines("HEAD", "/api/v1/uploads/")) >= 1
    resumed = re.search(r"resuming at byte (\d+) of (\d+)", out.stderr)
    assert resumed and 0 < int(resumed[1]) < len(data), out.stderr
