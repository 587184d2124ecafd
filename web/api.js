// The server's HTTP API (see the README's API section), as small functions the page calls.
// Every call under /api/v1 except format-spec carries the bearer token.

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

/** An API failure with the server's own message when it sent one. */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const message = (body && (body.message || body.error)) || fallback || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.body = body;
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

/** Words for the statuses a user can act on. */
export function explainStatus(status) {
  switch (status) {
    case 401: return "The server needs an API token (enter it at the top right).";
    case 403: return "This token is not allowed to do that (an uploader token is needed).";
    case 404: return "Not found on the server.";
    case 413: return "The package is larger than the server accepts.";
    case 422: return "The server found the package invalid.";
    case 503: return "The server is busy; try again in a moment.";
    case 507: return "The server's storage is full; nothing was kept.";
    default: return `The server answered HTTP ${status}.`;
  }
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
 * `PUT /api/v1/packages?name=…` with XHR (fetch has no upload progress).
 * Returns {promise, abort}; the promise resolves to {status, body}.
 */
export function uploadPackage(file, name, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("PUT", `/api/v1/packages?name=${encodeURIComponent(name)}`);
    const token = getToken();
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Content-Type", "application/gzip");
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    xhr.onload = () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = { message: xhr.responseText.slice(0, 300) };
      }
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
