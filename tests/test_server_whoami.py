"""GET /api/v1/whoami: the portal checks a token with it when it is entered. Each role's answer
matches what that role is really allowed to do (checked against the routes themselves), a wrong
or revoked token is 401, and the answer is in the OpenAPI document."""

from __future__ import annotations

import pytest

from helpers import Server, good_package


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("whoami") / "data").start()
    yield s
    s.stop()


def test_whoami_names_tenant_and_role_and_what_it_may_do(server):
    assert ("get" in server.openapi()["paths"]["/api/v1/whoami"])
    good = good_package()
    for role in ("viewer", "uploader", "admin"):
        token = server.tenant_token("wa", role)
        me = server.check(server.call("GET", "/api/v1/whoami", token), 200, "Whoami")
        assert (me["tenant"], me["role"]) == ("wa", role)
        # "can.upload" is a promise the page relies on: hold it to what the upload route does.
        upload = server.upload(token, good)
        assert (upload.status_code == 201) == me["can"]["upload"], (role, upload.status_code)
        assert me["can"]["operate"] is False
        assert me["can"]["manage_tokens"] == (role == "admin")
    op = server.check(server.call("GET", "/api/v1/whoami", server.admin), 200, "Whoami")
    assert (op["role"], op["can"]["operate"]) == ("operator", True)


def test_whoami_refuses_a_wrong_or_revoked_token(server):
    server.error(server.call("GET", "/api/v1/whoami"), 401, "unauthorized")
    server.error(server.call("GET", "/api/v1/whoami", "byom_not_a_token"), 401, "unauthorized")
    minted = server.check(server.call("POST", "/api/v1/admin/tokens", server.admin,
                                      json={"tenant": "wa", "role": "uploader"}), 201, "NewToken")
    server.check(server.call("GET", "/api/v1/whoami", minted["token"]), 200, "Whoami")
    revoked = server.call("DELETE", f"/api/v1/admin/tokens/{minted['id']}", server.admin)
    assert revoked.status_code in (200, 204)
    server.error(server.call("GET", "/api/v1/whoami", minted["token"]), 401, "unauthorized")
