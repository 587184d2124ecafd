// The server's HTTP API (see the README's API section), as small functions the page calls.
// Every call under /api/v1 except format-spec carries the bearer token.

import { resumableUpload, useResumable } from "./resumable.js";
import { responseBody } from "./xhr.js";

const TOKEN_KEY = "byom.token";

/** The token lives in sessionStorage: it survives reloads of this tab, not the browser. */
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Statuses with a plain sentence of their own: the server's raw text becomes the detail. */
const PLAIN = new Set([401, 403, 409, 413, 422, 429, 503, 507]);

/**
 * An API failure: `message` is a sentence a user can act on (the plain one for the statuses
 * above, else the server's own message), `detail` the server's words when they differ.
 */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const server = (body && (body.message || body.error)) || "";
    const message = PLAIN.has(status) ? explainStatus(status) : server || fallback || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.body = body;
    this.detail = server && server !== message ? server : "";
  }
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { message: text.slice(0, 300) };
  }
}

async function call(method, path, body) {
  const headers = { ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await readJson(response);
  if (!response.ok) throw new ApiError(response.status, json, explainStatus(response.status));
  return json;
}

/** Plain sentences, with what to do, for the statuses a user can act on. */
export function explainStatus(status) {
  switch (status) {
    case 401: return "The server did not accept the API token (missing, mistyped or revoked). Enter a valid token at the top right; ask your tenant admin for one.";
    case 403: return "Your token may not do this: uploading, compiling and deleting need an uploader (or admin) token. Ask your tenant admin for one.";
    case 404: return "Not found on the server (it may have been deleted).";
    case 409: return "Not possible right now: the package has a queued or running job. Cancel it or wait for it to finish, then try again.";
    case 413: return "The package is larger than this server accepts. Make it smaller (e.g. fewer or smaller files) or ask the operator to raise the limit.";
    case 422: return "The server found the package invalid. Fix the errors listed below and upload it again.";
    case 429: return "Too many uploads at once for your tenant. Wait for the running ones to finish and try again in a minute.";
    case 503: return "The server is busy (its compile queue is full). Try again in a minute.";
    case 507: return "The server's storage (or your tenant's allowance) is full, so nothing was kept. Delete old packages below, or ask the operator for more space.";
    default: return `The server answered HTTP ${status}.`;
  }
}

/** `GET /api/v1/whoami`: {tenant, role, token_id, can} for the current token; ApiError 401 otherwise. */
export function whoami() {
  return call("GET", "/api/v1/whoami");
}

export function listPackages() {
  return call("GET", "/api/v1/packages");
}

export function getPackage(packageId) {
  return call("GET", `/api/v1/packages/${encodeURIComponent(packageId)}`);
}

export function deletePackage(packageId) {
  return call("DELETE", `/api/v1/packages/${encodeURIComponent(packageId)}`);
}

export function listJobs() {
  return call("GET", "/api/v1/jobs");
}

/** `GET /api/v1/format-spec`: the settings the server validates under (no auth). */
export async function formatSpec() {
  const response = await fetch("/api/v1/format-spec", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new ApiError(response.status, null, explainStatus(response.status));
  const spec = await response.json();
  if (!spec || typeof spec.settings !== "object") throw new Error("format-spec has no settings");
  return spec;
}

/**
 * `PUT /api/v1/packages?name=…` with XHR (fetch has no upload progress); large files go through
 * the resumable (tus) upload instead, which survives reloads and lost connections
 * (resumable.js; `onResume(offset)` says where it went on from).
 * Returns {promise, abort}; the promise resolves to {status, body}.
 */
export function uploadPackage(file, name, onProgress, onResume) {
  if (useResumable(file)) return resumableUpload(file, name, authHeaders, onProgress, onResume);
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("PUT", `/api/v1/packages?name=${encodeURIComponent(name)}`);
    const token = getToken();
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Content-Type", "application/gzip");
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    xhr.onload = () => {
      const body = responseBody(xhr);
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => reject(new Error("The upload failed: the connection to the server was lost."));
    xhr.onabort = () => reject(Object.assign(new Error("Upload cancelled."), { cancelled: true }));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

export function startCompile(packageId, targets) {
  return call("POST", `/api/v1/packages/${encodeURIComponent(packageId)}/compile`, { targets });
}

export function getJob(jobId) {
  return call("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}`);
}

/** The job's whole log as text (the worker's lines and each target's, full error texts). */
export async function getJobLog(jobId) {
  const response = await fetch(`/api/v1/jobs/${encodeURIComponent(jobId)}/log`, { headers: authHeaders() });
  if (!response.ok) throw new ApiError(response.status, await readJson(response), explainStatus(response.status));
  return response.text();
}

export function cancelJob(jobId) {
  return call("POST", `/api/v1/jobs/${encodeURIComponent(jobId)}/cancel`);
}

/** The artifact route for a target (relative `artifact_url` from the job, or the documented path). */
export function artifactUrl(jobId, target, fromJob) {
  return fromJob || `/api/v1/jobs/${encodeURIComponent(jobId)}/artifacts/${encodeURIComponent(target)}`;
}

/**
 * Download an artifact: a plain link cannot carry the bearer header, so fetch it with the token
 * and hand the browser a blob URL to save.
 */
export async function downloadArtifact(url, fileName) {
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) throw new ApiError(response.status, await readJson(response), explainStatus(response.status));
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="?([^";]+)"?/i.exec(disposition);
  const blob = await response.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = (match && match[1]) || fileName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
  return blob.size;
}

/** The size of an artifact in bytes (HEAD: the Content-Length, nothing downloaded), or null. */
export async function artifactSize(url) {
  const response = await fetch(url, { method: "HEAD", headers: authHeaders() });
  if (!response.ok) return null;
  const length = Number(response.headers.get("Content-Length"));
  return Number.isFinite(length) && length > 0 ? length : null;
}
