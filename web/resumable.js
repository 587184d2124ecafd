// Resumable uploads for large packages: the server's tus 1.0 endpoint (docs/api.md).
//
// The upload's URL is kept in localStorage under the file's name, size and modification time,
// so after a reload (the user picks the same file again; the page validates it locally as
// always before the upload button is enabled) or a lost connection the upload goes on from the
// server's offset (HEAD) instead of byte 0. Each PATCH is an XHR for progress events. Failures
// are retried with a doubling wait (at most MAX_RETRIES in a row). The answer has the shape of a
// PUT's: {status: 201, body: {package}} or the refusal's status and error body.
import { responseBody } from "./xhr.js";

const TUS = { "Tus-Resumable": "1.0.0" };
/** Files at least this large go resumable (localStorage "byom.resumableThreshold" overrides). */
export const DEFAULT_THRESHOLD = 32 * 1024 * 1024;
/** Bytes per PATCH (localStorage "byom.resumableChunk" overrides). */
export const DEFAULT_CHUNK = 8 * 1024 * 1024;
const MAX_RETRIES = 8;
const FIRST_WAIT_MS = 1000;
const MAX_WAIT_MS = 30_000;
/** Upload URLs older than this are not tried (the server's default expiry is a day). */
const KEEP_MS = 24 * 3600 * 1000;

function setting(key, fallback) {
  const v = Number(localStorage.getItem(key));
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

export function useResumable(file) {
  return file.size >= setting("byom.resumableThreshold", DEFAULT_THRESHOLD);
}

/** The localStorage key of a file's upload: name, size and modification time. */
export function storageKey(file) {
  return `byom.upload:${file.name}:${file.size}:${file.lastModified}`;
}

function remembered(file) {
  try {
    const saved = JSON.parse(localStorage.getItem(storageKey(file)) || "null");
    if (saved && saved.url && Date.now() - saved.at < KEEP_MS) return saved.url;
  } catch {
    /* a damaged entry is as good as none */
  }
  localStorage.removeItem(storageKey(file));
  return null;
}

function base64Utf8(text) {
  let binary = "";
  for (const b of new TextEncoder().encode(text)) binary += String.fromCharCode(b);
  return btoa(binary);
}

async function readBody(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return { message: text.slice(0, 300) };
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Upload `file` resumably as `name`. `headers()` gives the auth header; `onProgress(loaded,
 * total)`, `onResume(offset)` report. Returns {promise, abort}, as api.uploadPackage does.
 */
export function resumableUpload(file, name, headers, onProgress, onResume = () => {}) {
  let xhr = null;
  let cancelled = false;
  const chunk = setting("byom.resumableChunk", DEFAULT_CHUNK);
  const cancelError = () => Object.assign(new Error("Upload cancelled."), { cancelled: true });

  async function offsetOf(url) {
    const r = await fetch(url, { method: "HEAD", headers: { ...headers(), ...TUS } });
    if (r.status !== 200) return null;
    return Number(r.headers.get("Upload-Offset"));
  }

  async function create() {
    const r = await fetch("/api/v1/uploads", {
      method: "POST",
      headers: { ...headers(), ...TUS, "Upload-Length": String(file.size), "Upload-Metadata": `filename ${base64Utf8(name)}` },
    });
    if (r.status !== 201) return { refused: { status: r.status, body: await readBody(r) } };
    const url = r.headers.get("Location");
    localStorage.setItem(storageKey(file), JSON.stringify({ url, at: Date.now() }));
    return { url };
  }

  /** One PATCH of file[offset, offset + chunk): {status, offset, packageId, body} or throws on a lost connection. */
  function patch(url, offset) {
    return new Promise((resolve, reject) => {
      xhr = new XMLHttpRequest();
      xhr.open("PATCH", url);
      for (const [k, v] of Object.entries({ ...headers(), ...TUS, "Upload-Offset": String(offset) })) xhr.setRequestHeader(k, v);
      xhr.setRequestHeader("Content-Type", "application/offset+octet-stream");
      xhr.upload.onprogress = (event) => onProgress(offset + event.loaded, file.size);
      xhr.onload = () => {
        const body = responseBody(xhr);
        resolve({
          status: xhr.status,
          offset: Number(xhr.getResponseHeader("Upload-Offset")),
          hasOffset: xhr.getResponseHeader("Upload-Offset") !== null,
          packageId: xhr.getResponseHeader("Byom-Package-Id"),
          body,
        });
      };
      xhr.onerror = () => reject(new Error("The connection to the server was lost."));
      xhr.onabort = () => reject(cancelError());
      xhr.send(file.slice(offset, Math.min(file.size, offset + chunk)));
    });
  }

  /** The kept verdict of a completed upload, as a PUT answers it. */
  async function verdict(url) {
    const r = await fetch(url, { headers: headers() });
    const body = await readBody(r);
    if (r.status === 200 && body.state === "stored") return { status: 201, body: { package: body.package } };
    if (r.status === 200 && body.state === "rejected") return { status: body.status, body: body.error };
    return { status: r.status, body };
  }

  async function run() {
    let url = remembered(file);
    let offset = url === null ? null : await offsetOf(url);
    if (url !== null && offset === null) {
      localStorage.removeItem(storageKey(file)); // expired or deleted: start again
      url = null;
    }
    if (url === null) {
      const created = await create();
      if (created.refused) return created.refused;
      url = created.url;
      offset = 0;
    } else if (offset > 0) {
      onResume(offset);
    }
    let failures = 0;
    while (offset < file.size) {
      if (cancelled) throw cancelError();
      let answer;
      try {
        answer = await patch(url, offset);
      } catch (error) {
        if (error.cancelled) throw error;
        answer = { status: 0, error };
      }
      // 409 with Upload-Offset: a wrong offset, go on from the right one; without: another
      // request (one whose connection dropped, still draining on the server) holds it: retry.
      if (answer.status === 204 || (answer.status === 409 && answer.hasOffset)) {
        offset = answer.offset;
        failures = 0;
        continue;
      }
      const retry = answer.status === 0 || answer.status === 409 || answer.status === 408 || answer.status === 423 || answer.status === 429 || answer.status >= 500;
      if (!retry) {
        localStorage.removeItem(storageKey(file));
        return { status: answer.status, body: answer.body };
      }
      failures += 1;
      if (failures > MAX_RETRIES) throw answer.error || new Error(`The upload failed: the server answered HTTP ${answer.status}.`);
      await sleep(Math.min(MAX_WAIT_MS, FIRST_WAIT_MS * 2 ** (failures - 1)));
      const at = await offsetOf(url).catch(() => null);
      if (at !== null) {
        offset = at;
        onResume(offset);
      }
    }
    onProgress(file.size, file.size);
    localStorage.removeItem(storageKey(file));
    return verdict(url);
  }

  const promise = run();
  return {
    promise,
    abort: () => {
      cancelled = true;
      if (xhr) xhr.abort();
      // Cancelling ends the upload on the server too (tus termination).
      const url = remembered(file);
      localStorage.removeItem(storageKey(file));
      if (url) fetch(url, { method: "DELETE", headers: { ...headers(), ...TUS } }).catch(() => {});
    },
  };
}
