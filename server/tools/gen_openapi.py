"""Writes server/openapi.json, the OpenAPI 3.1 document of byom-server's HTTP API.

Run: python server/tools/gen_openapi.py. The server embeds the JSON (include_str!) and serves it at
/api/v1/openapi.json; tests/test_server_*.py validate every response they get against it.
"""
import json
import sys
from pathlib import Path

S = lambda name: {"$ref": f"#/components/schemas/{name}"}
nullable = lambda t: {"type": [t, "null"]}
STATES = ["queued", "running", "succeeded", "failed", "cancelled"]
# admin: its own tenant only; operator: the whole server (tenant "admin" only). See docs/api.md.
ROLES = ["viewer", "uploader", "admin", "operator"]


def obj(props, required=None, extra=False):
    o = {"type": "object", "properties": props, "required": list(required if required is not None else props)}
    if not extra:
        o["additionalProperties"] = False
    return o


issue = obj({"code": {"type": "string", "pattern": "^BYOM[0-7][0-9]{2}$"},
             "category": {"description": "What the issue concerns, derived from its code: group and colour by this.",
                          "enum": ["archive", "layout", "config", "mochi", "manifest", "agreement", "safety", "model",
                                   "compatibility"]},
             "severity": {"enum": ["error", "warning"]},
             "message": {"type": "string"}, "file": nullable("string"), "hint": {"type": "string"}},
            extra=True)
summary = obj({
    "model_type": nullable("string"), "input_shape": {"type": ["array", "null"], "items": {"type": "integer"}},
    "output_shape": {"type": ["array", "null"], "items": {"type": "integer"}},
    "num_classes": {"type": ["integer", "null"]}, "class_names": {"type": ["array", "null"], "items": {"type": "string"}},
    "model_file": nullable("string"), "model_file_bytes": {"type": ["integer", "null"]},
    "compressed_bytes": {"type": "integer"}, "uncompressed_bytes": {"type": "integer"},
    "entries": {"type": "array", "items": {"type": "string"}},
}, required=["compressed_bytes", "uncompressed_bytes", "entries"], extra=True)
report = obj({
    "valid": {"type": "boolean"}, "errors": {"type": "array", "items": S("Issue")},
    "warnings": {"type": "array", "items": S("Issue")}, "summary": S("Summary"),
    "model": {"type": ["object", "null"], "description": "The .pt inspection (byom_core::torch::PtInspection)."},
    "settings_hash": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "byom_version": {"type": "string"},
}, required=["valid", "errors", "warnings", "summary", "model", "settings_hash", "byom_version"], extra=True)
package_props = {
    "id": {"type": "string", "pattern": "^pkg_[0-9a-f]{32}$"}, "name": {"type": "string"},
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "size": {"type": "integer", "minimum": 0},
    "created_at": {"type": "string", "format": "date-time"}, "status": {"enum": ["stored"]}, "report": S("Report"),
}
package = obj(package_props)
package_detail = obj(package_props | {"jobs": {"type": "array", "items": S("Job")}})
target = obj({
    "target": {"enum": ["x86_64-cpu", "x86_64-cuda", "arm64-cpu", "jetson-xavier"]},
    "status": {"enum": STATES}, "duration_ms": {"type": ["integer", "null"]},
    "failure_reason": nullable("string"), "log_tail": nullable("string"),
    "artifact_url": nullable("string"), "sha256": nullable("string"),
    "verification": {"oneOf": [{"type": "null"}, S("TargetVerification")]},
    "failure": {"oneOf": [{"type": "null"}, S("Failure")]},
    "warnings": {"type": "array", "items": {"type": "string"},
                 "description": "What byom changed or cannot promise for this target (e.g. fp16 weights cast to fp32 for a CPU)."},
})
failure = obj({
    "kind": {"enum": ["invalid_package", "unsupported_model", "load", "forward", "output_shape", "io", "no_targets",
                      "build", "target_runtime", "verification"],
             "description": "The stage that failed (byom_compile::FailureKind)."},
    "summary": {"type": "string", "description": "One line, the first cause first (the same text as failure_reason)."},
    "hint": nullable("string"), "model_code": {"type": ["string", "null"],
                                               "description": "Where in the model's own TorchScript code it failed."},
    "detail": {"type": "string", "description": "The whole error text (at most 16 KiB), source paths shortened."},
})
num = {"type": ["number", "null"]}
target_verification = obj({
    "state": {"enum": ["verified_on_device", "checked_on_build_host", "built_not_run", "unverified"],
              "description": "verified_on_device: run on the target's kind of device; checked_on_build_host: a CPU "
                             "target reloaded and compared on the build host's CPU, not on the device; built_not_run: "
                             "a GPU target not run on any GPU; unverified: no verification in the report."},
    "status": nullable("string"), "ran_on": nullable("string"),
    "max_abs_error": num, "max_rel_error": num, "tolerance": num,
    "original_p50_ms": num, "p50_ms": num, "p50_after_load_time_steps_ms": num,
    "latency_device": nullable("string"),
    "load_time_steps": {"type": "array", "items": {"type": "string"}},
    "bundle_sha256": nullable("string"),
    "precision": {"type": ["string", "null"], "description": "Of the artifact's weights and its input, as deployed."},
    "latency_not_measured": {"type": ["string", "null"],
                             "description": "Why p50_ms is null on purpose, e.g. \"not measured: no device\"."},
})
whoami = obj({
    "tenant": {"type": "string"}, "role": {"enum": ROLES}, "token_id": {"type": "string"},
    "can": obj({k: {"type": "boolean"} for k in ["read", "upload", "compile", "delete", "manage_tokens", "operate"]}),
})
job = obj({
    "id": {"type": "string", "pattern": "^job_[0-9a-f]{32}$"}, "package_id": {"type": "string"},
    "status": {"enum": STATES}, "created_at": {"type": "string"}, "started_at": nullable("string"),
    "finished_at": nullable("string"), "failure_reason": nullable("string"), "log_tail": nullable("string"),
    "failure": {"oneOf": [{"type": "null"}, S("Failure")],
                "description": "Set when the job failed before any target was built."},
    "log_url": {"type": "string", "description": "The job's whole log as text (GET)."},
    "targets": {"type": "array", "items": S("TargetStatus")},
    "report": {"type": ["object", "null"], "description": "The worker's CompileReport (byom_compile), once finished."},
})
error = obj({"error": {"type": "string"}, "message": {"type": "string"}, "report": S("Report"),
             "offset": {"type": "integer"}}, required=["error", "message"])
upload = obj({"upload_id": {"type": "string", "pattern": "^up_[0-9a-f]{32}$"}, "offset": {"type": "integer"},
              "length": {"type": "integer"}, "name": {"type": "string"},
              "state": {"enum": ["receiving", "stored", "rejected"],
                        "description": "receiving: bytes still expected; stored: complete and valid (package_id, package); "
                                       "rejected: complete and refused (status, error: the documented error body, with the report for 422)."},
              "expires": {"type": "string", "description": "While receiving: when it expires if no more bytes arrive (HTTP date)."},
              "package_id": {"type": "string"}, "package": {"oneOf": [{"type": "null"}, S("Package")],
                                                            "description": "null when the package was deleted since"},
              "status": {"type": "integer"}, "error": S("Error")}, required=["upload_id", "offset", "length", "state"])
fmt = obj({"settings": {"type": "object", "description": "byom_core::Settings: limits, required_torch and operator_namespaces (the operator namespaces the compile server provides)."},
           "settings_hash": {"type": "string"}, "byom_version": {"type": "string"},
           "max_upload_bytes": {"type": "integer"}})
tenant = obj({"name": {"type": "string"}, "quota_bytes": {"type": "integer"}, "used_bytes": {"type": "integer"},
              "created_at": {"type": "string"}})
new_token = obj({"id": {"type": "string"}, "token": {"type": "string"}, "tenant": {"type": "string"},
                 "role": {"enum": ROLES}, "created_at": {"type": "string"}})
token_info = obj({"id": {"type": "string"}, "tenant": {"type": "string"}, "role": {"enum": ROLES},
                  "created_at": {"type": "string"}, "revoked_at": nullable("string")})
audit = obj({"id": {"type": "integer"}, "at": {"type": "string"}, "tenant": nullable("string"),
             "token_id": nullable("string"), "action": {"type": "string"}, "subject": nullable("string"),
             "detail": nullable("string")})

schemas = {
    "Issue": issue, "Summary": summary, "Report": report, "Package": package, "PackageDetail": package_detail,
    "TargetStatus": target, "TargetVerification": target_verification, "Failure": failure, "Whoami": whoami, "Job": job, "Error": error, "UploadStatus": upload, "FormatSpec": fmt,
    "Tenant": tenant, "NewToken": new_token, "TokenInfo": token_info, "AuditEvent": audit,
    "PackageResponse": obj({"package": S("Package")}),
    "PackageList": obj({"packages": {"type": "array", "items": S("Package")}}),
    "JobResponse": obj({"job": S("Job")}),
    "JobList": obj({"jobs": {"type": "array", "items": S("Job")}}),
    "TenantResponse": obj({"tenant": S("Tenant")}),
    "TenantList": obj({"tenants": {"type": "array", "items": S("Tenant")}}),
    "TokenList": obj({"tokens": {"type": "array", "items": S("TokenInfo")}}),
    "AuditList": obj({"events": {"type": "array", "items": S("AuditEvent")}}),
    "CompileRequest": obj({"targets": {"type": "array", "minItems": 1, "items": {"type": "string"}}}),
    "TenantRequest": obj({"name": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"},
                          "quota_bytes": {"type": ["integer", "null"]}}, required=["name"]),
    "TokenRequest": obj({"tenant": {"type": "string"}, "role": {"enum": ROLES}}),
}


def js(name):
    return {"content": {"application/json": {"schema": S(name)}}}


def resp(code, desc, schema=None, headers=None):
    r = {"description": desc}
    if schema:
        r |= js(schema)
    if headers:
        r["headers"] = headers
    return code, r


ERR = {c: {"description": d} | js("Error") for c, d in {
    "400": "Bad request", "401": "Missing or invalid bearer token", "403": "The token's role may not do this",
    "404": "Not found (also for other tenants' ids)", "409": "Conflict", "413": "Too large or over quota",
    "408": "Upload idle for too long", "422": "Invalid package: the report says why; nothing was stored",
    "503": "Job queue full (Retry-After header)", "507": "Disk full; nothing was stored",
    "429": "Too many uploads of this tenant (or of all tenants) receiving at once; Retry-After says when to retry",
    "429-open": "The tenant has the most resumable uploads open that it may",
    "412": "Tus-Resumable missing or not 1.0.0 (the Tus-Version header lists what is served)",
    "415": "PATCH without Content-Type: application/offset+octet-stream",
}.items()}


def op(summary, responses, errors=(), body=None, params=(), auth=True, tag="api"):
    o = {"summary": summary, "tags": [tag], "responses": dict(responses)}
    for e in errors:
        # "429-open": a second wording of 429 (the same status, another cause).
        o["responses"][e.split("-")[0]] = ERR[e]
    if body:
        o["requestBody"] = body
    if params:
        o["parameters"] = list(params)
    if not auth:
        o["security"] = []
    return o


P = lambda name, desc: {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": desc}
NAME = {"name": "name", "in": "query", "required": False, "schema": {"type": "string"}, "description": "File name (default model.tar.gz)"}
H = lambda name, desc, req=True: {"name": name, "in": "header", "required": req, "schema": {"type": "integer"}, "description": desc}
RAW = {"required": True, "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}},
                                     "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
OFFSET_HDR = {"Upload-Offset": {"schema": {"type": "integer"}}, "Upload-Length": {"schema": {"type": "integer"}},
              "Upload-Expires": {"schema": {"type": "string"}, "description": "HTTP date after which an idle upload is deleted"},
              "Tus-Resumable": {"schema": {"const": "1.0.0"}}}
TUS = {"name": "Tus-Resumable", "in": "header", "required": True, "schema": {"const": "1.0.0"},
       "description": "tus protocol version (412 otherwise)"}
TUS_OPTIONS = {"Tus-Resumable": {"schema": {"const": "1.0.0"}}, "Tus-Version": {"schema": {"const": "1.0.0"}},
               "Tus-Extension": {"schema": {"const": "creation,termination,expiration"}},
               "Tus-Max-Size": {"schema": {"type": "integer"}, "description": "max_upload_bytes"}}
VERDICT_HDR = OFFSET_HDR | {"Byom-Package-Id": {"schema": {"type": "string"},
                                                "description": "The package the completed upload became"}}
META = {"name": "Upload-Metadata", "in": "header", "required": False, "schema": {"type": "string"},
        "description": "tus metadata: comma-separated `key base64(value)`; `filename` (or `name`) names the package "
                       "(the `name` query parameter wins when both are given)"}
TUS_PATCH = {"required": True, "content": {"application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}}}}

paths = {
    "/healthz": {"get": op("Liveness", [resp("200", "ok", headers=None)], auth=False, tag="meta")},
    "/metrics": {"get": op("Prometheus metrics (text exposition format); operator token only", [resp("200", "metrics")],
                           ["401", "403"], tag="meta")},
    "/api/v1/openapi.json": {"get": op("This document", [resp("200", "OpenAPI 3.1")], auth=False, tag="meta")},
    "/api/v1/format-spec": {"get": op("Validation settings in force (the browser validates under exactly these)",
                                      [resp("200", "settings", "FormatSpec")], auth=False, tag="meta")},
    "/api/v1/whoami": {"get": op("The caller's tenant, role and what the role may do (the page checks a token with it)",
                                 [resp("200", "identity", "Whoami")], ["401"], tag="meta")},
    "/api/v1/packages": {
        "put": op("Upload a package (raw .tar.gz body), validated while it streams in",
                  [resp("201", "stored", "PackageResponse")], ["400", "401", "403", "408", "413", "422", "429", "507"],
                  body=RAW, params=[NAME]),
        "get": op("This tenant's packages", [resp("200", "list", "PackageList")], ["401"]),
    },
    "/api/v1/packages/{id}": {
        "get": op("A package with its report and jobs", [resp("200", "package", "PackageDetail")], ["401", "404"],
                  params=[P("id", "package id")]),
        "delete": op("Delete a package (bytes stay while another package references them)",
                     [resp("204", "deleted")], ["401", "403", "404", "409"], params=[P("id", "package id")]),
    },
    "/api/v1/packages/{id}/compile": {
        "post": op("Start compiling a package", [resp("202", "queued", "JobResponse")],
                   ["400", "401", "403", "404", "503"], params=[P("id", "package id")],
                   body={"required": True} | js("CompileRequest")),
    },
    "/api/v1/uploads": {
        "options": op("tus discovery: versions, extensions and the largest upload", [resp("204", "tus 1.0.0", headers=TUS_OPTIONS)],
                      auth=False),
        "post": op("Open a resumable upload (tus creation); its URL is in Location",
                   [resp("201", "opened", "UploadStatus", OFFSET_HDR | {"Location": {"schema": {"type": "string"}}})],
                   ["400", "401", "403", "412", "413", "429-open", "507"],
                   params=[TUS, NAME, META, H("Upload-Length", "total bytes")]),
    },
    "/api/v1/uploads/{id}": {
        "options": op("tus discovery (as on /api/v1/uploads)", [resp("204", "tus 1.0.0", headers=TUS_OPTIONS)],
                      auth=False, params=[P("id", "upload id")]),
        "get": op("The upload's state as JSON (byom's, not tus'); once complete, its verdict: the package, or the refusal "
                  "with its report. Kept until the upload expiry after completion",
                  [resp("200", "state", "UploadStatus")], ["401", "404"], params=[P("id", "upload id")]),
        "head": op("Bytes received so far (tus). A completed upload answers Upload-Offset = Upload-Length with "
                   "Byom-Package-Id, or Byom-Upload-State: rejected (GET says why)",
                   [resp("200", "offset", headers=VERDICT_HDR | {"Byom-Upload-State": {"schema": {"const": "rejected"}}})],
                   ["401", "404", "412"], params=[TUS, P("id", "upload id")]),
        "patch": op("Append bytes at Upload-Offset (tus); the last byte validates and stores the package: 204 with "
                    "Byom-Package-Id, or the refusal (422 with the report, 413 over quota, ...). Repeating the last PATCH "
                    "after completion answers the same",
                    [resp("204", "accepted; Byom-Package-Id when the upload completed and was stored", headers=VERDICT_HDR)],
                    ["400", "401", "403", "404", "408", "409", "412", "413", "415", "422", "429", "507"],
                    params=[TUS, P("id", "upload id"), H("Upload-Offset", "where these bytes start")], body=TUS_PATCH),
        "delete": op("Terminate an upload (tus termination); for a completed one, forget its verdict (the package stays)",
                     [resp("204", "removed")], ["401", "403", "404", "412"], params=[TUS, P("id", "upload id")]),
    },
    "/api/v1/jobs": {"get": op("This tenant's jobs (newest 200)", [resp("200", "list", "JobList")], ["401"])},
    "/api/v1/jobs/{id}": {"get": op("A job", [resp("200", "job", "JobResponse")], ["401", "404"], params=[P("id", "job id")])},
    "/api/v1/jobs/{id}/cancel": {"post": op("Cancel a queued or running job", [resp("200", "job", "JobResponse")],
                                            ["401", "403", "404", "409"], params=[P("id", "job id")])},
    "/api/v1/jobs/{id}/log": {"get": op(
        "The job's whole log as plain text (the worker's job log, then each target's lines as [target] ...)",
        [("200", {"description": "the log", "content": {"text/plain": {"schema": {"type": "string"}}}})],
        ["401", "404"], params=[P("id", "job id")])},
    "/api/v1/jobs/{id}/artifacts/{target}": {"get": op(
        "Download a target's bundle (.tar.gz)",
        [("200", {"description": "the bundle", "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}})],
        ["401", "404"], params=[P("id", "job id"), P("target", "target name")])},
    "/api/v1/admin/tenants": {
        "post": op("Create a tenant (operator only)", [resp("201", "created", "TenantResponse")], ["400", "401", "403", "409"],
                   body={"required": True} | js("TenantRequest"), tag="admin"),
        "get": op("List tenants (a tenant admin: its own)", [resp("200", "list", "TenantList")], ["401", "403"], tag="admin"),
    },
    "/api/v1/admin/tokens": {
        "post": op("Create a token, secret shown once (a tenant admin: in its tenant, up to admin)",
                   [resp("201", "created", "NewToken")],
                   ["400", "401", "403", "404"], body={"required": True} | js("TokenRequest"), tag="admin"),
        "get": op("List tokens, never their secrets (a tenant admin: its tenant's)", [resp("200", "list", "TokenList")],
                  ["401", "403"], tag="admin"),
    },
    "/api/v1/admin/tokens/{id}": {"delete": op("Revoke a token (a tenant admin: its tenant's; never the last operator)",
                                               [resp("204", "revoked")], ["401", "403", "404", "409"],
                                               params=[P("id", "token id")], tag="admin")},
    "/api/v1/admin/audit": {"get": op("The audit log, newest first (a tenant admin: its tenant's)", [resp("200", "events", "AuditList")], ["401", "403"],
                                      params=[{"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}}],
                                      tag="admin")},
}

doc = {
    "openapi": "3.1.0",
    "info": {"title": "byom-server", "version": "0.1.0",
             "description": "Upload, validate and compile BYOM model packages. See docs/api.md."},
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": paths,
    "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
}
TEXT = json.dumps(doc, indent=2) + "\n"

if __name__ == "__main__":
    # `--check`: exit 1 when server/openapi.json is not what this script writes (the test uses it).
    out = Path(__file__).resolve().parent.parent / "openapi.json"
    if sys.argv[1:] == ["--check"]:
        if out.read_text() != TEXT:
            sys.exit(f"{out} is stale: run python server/tools/gen_openapi.py")
        print(f"{out} is up to date")
    else:
        out.write_text(TEXT)
        print(f"wrote {out}")
