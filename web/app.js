// The portal page's controller: validate in the worker, upload only what is valid, compile and
// follow the job. Rendering lives in render.js, HTTP in api.js, the worker protocol in
// worker-client.js, the .pt package builder in builder.js.
import * as api from "./api.js";
import { el, formatBytes, issueRow, verdictContent, summaryItems, inspectionView, jobTable, historyItem, TERMINAL } from "./render.js";
import { WorkerClient } from "./worker-client.js";
import { setupBuilder } from "./builder.js";

const $ = (id) => document.getElementById(id);

/** Poll interval for the job; fast enough to feel live, slow enough to be no load. */
const JOB_POLL_MS = 1000;
/** Issue categories (byom_core::Category) that concern the .pt file, shown beside its inspection. */
const MODEL_CATEGORIES = new Set(["safety", "model", "compatibility"]);

/** Packages per history page. */
const HISTORY_PAGE = 5;

/** How long after the last keystroke the token is checked with the server. */
const TOKEN_CHECK_MS = 350;

/** Where the page keeps the package and job it showed last, so a reload restores them. */
const LAST_KEY = "byom.last";

/** `?read=stream|js|wasm` picks the worker's read loop (default: the fastest one supported). */
const READ_MODE = new URLSearchParams(location.search).get("read") || undefined;

/** `?simd=0` forces the plain wasm build even where SIMD128 exists (to test the fallback). */
const FORCE_NO_SIMD = new URLSearchParams(location.search).get("simd") === "0";

const state = {
  /** The server's format-spec, or null when the page runs without a server. */
  spec: null,
  /** Settings JSON string the worker validates under (null: the wasm defaults). */
  settingsJson: null,
  file: null,
  report: null,
  upload: null,
  packageId: null,
  jobId: null,
  pollTimer: null,
  /** `GET /whoami` for the current token: {tenant, role, can}, or null (none, or refused). */
  identity: null,
  /** Why there is no identity, in words (shown next to the token and on the upload button). */
  identityProblem: "No token: enter your API token at the top right to upload and compile.",
  packageName: null,
  history: { packages: [], jobs: [], page: 0 },
};

const worker = new WorkerClient({ simd: FORCE_NO_SIMD ? false : undefined });

// ---------------------------------------------------------------- boot

async function boot() {
  const tokenInput = $("token-input");
  tokenInput.value = api.getToken();
  let tokenTimer = null;
  tokenInput.addEventListener("input", () => {
    api.setToken(tokenInput.value.trim());
    clearTimeout(tokenTimer);
    setTokenStatus("checking", "Checking token…");
    tokenTimer = setTimeout(checkToken, TOKEN_CHECK_MS);
  });
  $("history-refresh").addEventListener("click", loadHistory);
  $("history-prev").addEventListener("click", () => showHistoryPage(state.history.page - 1));
  $("history-next").addEventListener("click", () => showHistoryPage(state.history.page + 1));

  setupTabs();
  setupDropzone($("dropzone"), $("package-input"), (file) => validateFile(file));
  $("validate-cancel").addEventListener("click", cancelValidation);
  $("upload-button").addEventListener("click", startUpload);
  $("upload-cancel").addEventListener("click", () => state.upload && state.upload.abort());
  $("compile-button").addEventListener("click", startCompile);
  $("job-cancel").addEventListener("click", cancelJob);
  for (const box of $("targets").querySelectorAll("input")) box.addEventListener("change", updateCompileButton);

  setupBuilder({
    worker,
    settingsJson: () => state.settingsJson,
    setupDropzone,
    onValidate: (file) => {
      selectTab("validate");
      validateFile(file);
    },
  });

  const [ready] = await Promise.all([worker.ready.catch((e) => ({ error: e })), loadSpec()]);
  if (state.spec) {
    await checkToken();
    await restoreLast();
  } else {
    setTokenStatus("none", "No server");
  }
  if (ready.error) {
    showNotice(ready.error.message);
    return;
  }
  $("versions").textContent = `validator byom-core ${ready.version}` +
    (state.spec ? ` · server ${state.spec.byom_version} · settings ${state.spec.settings_hash.slice(0, 19)}…` : " · default settings");
  // Which wasm build the worker runs (SIMD128, or the plain fallback): for the tests and support.
  document.body.dataset.wasm = ready.simd ? "simd" : "plain";
  document.body.dataset.ready = "true";
}

async function loadSpec() {
  const status = $("server-status");
  try {
    state.spec = await api.formatSpec();
    state.settingsJson = JSON.stringify(state.spec.settings);
    status.textContent = "Server connected";
    status.className = "pill ok";
  } catch (error) {
    state.spec = null;
    state.settingsJson = null;
    status.textContent = "No server";
    status.className = "pill bad";
    showNotice("The server's format spec could not be loaded, so packages are checked with the default settings. " +
      "Uploading and compiling need the server.");
  }
}

function setTokenStatus(kind, text) {
  const box = $("token-status");
  box.dataset.state = kind;
  box.textContent = text;
  box.className = `token-status ${kind}`;
}

/** Ask the server who the token is; the page's permissions follow from the answer. */
async function checkToken() {
  const token = api.getToken();
  const pill = $("server-status");
  if (!state.spec) return;
  if (!token) {
    state.identity = null;
    state.identityProblem = "No token: enter your API token at the top right to upload and compile.";
    setTokenStatus("none", "No token");
    pill.textContent = "Server connected · no token";
    pill.className = "pill warn";
  } else {
    try {
      const who = await api.whoami();
      if (api.getToken() !== token) return;
      state.identity = who;
      state.identityProblem = who.can.upload
        ? null
        : `Your token is a ${who.role} token: it can read but not upload or compile. Ask your tenant admin for an uploader token.`;
      setTokenStatus(who.can.upload ? "ok" : "readonly", `${who.role} · tenant ${who.tenant}`);
      $("token-status").title = `Token ${who.token_id}: ${who.role} of tenant ${who.tenant}`;
      pill.textContent = "Server connected";
      pill.className = "pill ok";
    } catch (error) {
      if (api.getToken() !== token) return;
      state.identity = null;
      state.identityProblem = error.status === 401
        ? "The server did not accept this token (mistyped, revoked or for another server). Check it, or ask your tenant admin for a new one."
        : `The token could not be checked: ${error.message}`;
      setTokenStatus("bad", error.status === 401 ? "Token not accepted" : "Token not checked");
      $("token-status").title = state.identityProblem;
      pill.textContent = "Server connected · token not accepted";
      pill.className = "pill bad";
    }
  }
  updateUploadButton();
  updateCompileButton();
  loadHistory();
}

function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = false;
}

// ---------------------------------------------------------------- tabs and drop zones

function setupTabs() {
  const tabs = [$("tab-validate"), $("tab-build")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab.id.slice(4)));
    tab.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
      const next = tabs[(tabs.indexOf(tab) + 1) % tabs.length];
      selectTab(next.id.slice(4));
      next.focus();
    });
  }
}

function selectTab(name) {
  for (const which of ["validate", "build"]) {
    const selected = which === name;
    const tab = $(`tab-${which}`);
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`panel-${which}`).hidden = !selected;
  }
}

function setupDropzone(zone, input, onFile) {
  input.addEventListener("change", () => {
    if (input.files && input.files[0]) onFile(input.files[0]);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragover");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragover"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragover");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) onFile(file);
  });
}

// ---------------------------------------------------------------- validation

function resetResults() {
  state.report = null;
  state.packageId = null;
  stopPolling();
  const verdict = $("verdict");
  verdict.hidden = true;
  verdict.removeAttribute("data-valid");
  verdict.removeAttribute("data-file");
  verdict.replaceChildren();
  $("issues").replaceChildren();
  $("details").hidden = true;
  $("upload-result").replaceChildren();
  $("upload-progress-wrap").hidden = true;
  $("job").replaceChildren();
  $("job-cancel").hidden = true;
  $("targets").disabled = true;
  updateUploadButton();
  updateCompileButton();
}

async function validateFile(file) {
  if (state.upload) state.upload.abort();
  state.file = file;
  resetResults();
  $("validate-file").textContent = file.name;
  $("validate-progress-wrap").hidden = false;
  $("validate-cancel").hidden = false;
  const bar = $("validate-progress");
  const text = $("validate-progress-text");
  bar.max = Math.max(file.size, 1);
  bar.value = 0;
  text.textContent = `0 of ${formatBytes(file.size)}`;
  const issues = $("issues");
  const started = performance.now();
  try {
    const result = await worker.request(
      { type: "validate", file, settings: state.settingsJson, mode: READ_MODE },
      {
        onProgress: (read, total) => {
          bar.value = read;
          text.textContent = `${formatBytes(read)} of ${formatBytes(total)}`;
        },
        // Issues appear as they are found; the final report replaces them in a fixed order.
        onEvents: (events) => {
          for (const event of events) if (event.event === "issue") issues.append(issueRow(event));
        },
      },
    );
    if (state.file !== file) return;
    bar.value = bar.max;
    const seconds = (performance.now() - started) / 1000;
    text.textContent = `${formatBytes(file.size)} checked in ${seconds.toFixed(1)} s`;
    showReport(result.report, seconds);
    // Which reader gave the verdict (`?read=parallel` falls back to the default one on any
    // doubt): for tests and bug reports.
    const stages = result.stages || {};
    $("verdict").dataset.reader = stages.decoders && !stages.fallback ? "parallel" : "sequential";
  } catch (error) {
    if (state.file !== file) return;
    text.textContent = error.cancelled ? "Cancelled" : "Failed";
    if (!error.cancelled) issues.replaceChildren(el("div", { class: "disagree", text: `The validator failed: ${error.message}` }));
  } finally {
    if (state.file === file) $("validate-cancel").hidden = true;
  }
}

function cancelValidation() {
  worker.restart();
}

function showReport(report, seconds) {
  state.report = report;
  const verdict = $("verdict");
  const meta = [
    `${formatBytes(report.summary.compressed_bytes)} in ${seconds.toFixed(1)} s`,
    el("br"),
    state.spec ? "server settings" : "default settings",
  ];
  const validText = !state.spec ? "Uploading it needs the server (this page was opened without one)."
    : canWrite() ? "Ready to upload." : "Valid. Uploading needs a valid uploader token (see step 2).";
  verdict.replaceChildren(...verdictContent(report, meta, validText));
  verdict.dataset.file = state.file.name;
  verdict.dataset.valid = String(report.valid);
  verdict.hidden = false;
  $("issues").replaceChildren(...report.errors.map(issueRow), ...report.warnings.map(issueRow));
  $("summary").replaceChildren(...summaryItems(report.summary));
  const modelIssues = [...report.errors, ...report.warnings].filter((i) => MODEL_CATEGORIES.has(i.category));
  $("model").replaceChildren(inspectionView(report.model, modelIssues));
  $("details").hidden = false;
  updateUploadButton();
}

// ---------------------------------------------------------------- upload

function canWrite() {
  return Boolean(state.identity && state.identity.can.upload);
}

function updateUploadButton() {
  const button = $("upload-button");
  const canUpload = Boolean(state.report && state.report.valid && state.spec && canWrite() && !state.upload && !state.packageId);
  button.disabled = !canUpload;
  const help = $("upload-help");
  help.dataset.reason = "";
  // The verdict's "what next" follows the token too (it is entered after or before the check).
  const next = state.report && state.report.valid && $("verdict").querySelector(".small");
  if (next && state.spec) next.textContent = canWrite() ? "Ready to upload." : "Valid. Uploading needs a valid uploader token (see step 2).";
  if (!state.spec) help.textContent = "Uploading needs the server (the page was opened without one).";
  else if (state.report && !state.report.valid) help.textContent = "This package has errors: fix them before uploading.";
  else if (!canWrite() && !state.packageId) {
    help.textContent = state.identityProblem || "Your token cannot upload.";
    help.dataset.reason = state.identity ? "role" : "token";
  }
  else if (state.packageId) help.textContent = `Uploaded: ${state.packageName || (state.file && state.file.name) || state.packageId}. Choose targets and compile.`;
  else if (state.report) help.textContent = `Ready: ${state.file.name} (${formatBytes(state.file.size)}).`;
  else help.textContent = "Only a package that passed the check above can be uploaded.";
}

async function startUpload() {
  // The button is disabled for invalid packages; this guard keeps that true even if it is not.
  if (!state.report || !state.report.valid || !state.file) return;
  const file = state.file;
  const localReport = state.report;
  const bar = $("upload-progress");
  const text = $("upload-progress-text");
  const result = $("upload-result");
  result.replaceChildren();
  bar.max = Math.max(file.size, 1);
  bar.value = 0;
  $("upload-progress-wrap").hidden = false;
  $("upload-cancel").hidden = false;
  const started = performance.now();
  state.upload = api.uploadPackage(file, file.name, (loaded, total) => {
    bar.max = Math.max(total, 1);
    bar.value = loaded;
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0.2 ? ` · ${formatBytes(loaded / seconds)}/s` : "";
    text.textContent = `${formatBytes(loaded)} of ${formatBytes(total)}${rate}`;
  }, (offset) => {
    // A resumed upload: the server already had these bytes (an earlier try, or before a reload).
    bar.value = offset;
    text.textContent = `Resuming at ${formatBytes(offset)} of ${formatBytes(file.size)}`;
    text.dataset.resumedAt = String(offset);
  });
  updateUploadButton();
  try {
    const { status, body } = await state.upload.promise;
    if (state.file !== file) return;
    if (status === 201 || status === 200) {
      const pkg = body.package;
      state.packageId = pkg.id;
      state.packageName = pkg.name;
      remember({ packageId: pkg.id, packageName: pkg.name, jobId: null });
      loadHistory();
      bar.value = bar.max;
      text.textContent = `${formatBytes(file.size)} uploaded`;
      result.replaceChildren(el("span", { class: "ok", text: "Stored on the server." }), " ",
        el("span", { class: "muted small" }, "Package ", el("code", { text: pkg.id })));
      const disagreement = compareVerdicts(localReport, pkg.report);
      if (disagreement) result.append(disagreement);
      $("targets").disabled = false;
      updateCompileButton();
    } else {
      // Nothing was kept: the bar goes back to empty rather than freezing where it stopped.
      resetUploadProgress("Not uploaded");
      const failure = el("div", { class: "bad", dataset: { testid: "upload-error", status: String(status) }, text: api.explainStatus(status) });
      const detail = body && (body.message || body.error);
      result.replaceChildren(failure);
      if (detail && status !== 422) result.append(el("div", { class: "muted small", text: `Server said: ${detail}` }));
      if (status === 422 && body && body.report) result.append(compareVerdicts(localReport, body.report) || serverIssues(body.report));
      if (status === 401 || status === 403) checkToken();
    }
  } catch (error) {
    if (state.file === file) {
      resetUploadProgress(error.cancelled ? "Cancelled" : "Not uploaded");
      result.replaceChildren(el("span", { class: error.cancelled ? "muted" : "bad", dataset: { testid: "upload-error" }, text: error.message }));
    }
  } finally {
    if (state.file === file) {
      state.upload = null;
      $("upload-cancel").hidden = true;
      updateUploadButton();
    }
  }
}

function resetUploadProgress(words) {
  const bar = $("upload-progress");
  bar.value = 0;
  $("upload-progress-text").textContent = words;
}

function codes(report) {
  return [...report.errors, ...report.warnings].map((i) => i.code).sort().join(",");
}

/**
 * The server validates the same bytes under the same settings, so it should agree; if it ever
 * does not (different settings, different versions), say so plainly and show its verdict.
 */
function compareVerdicts(local, server) {
  if (!server) return null;
  const differences = [];
  if (local.settings_hash !== server.settings_hash) differences.push(`settings differ (${server.settings_hash.slice(0, 19)}… on the server)`);
  if (local.byom_version !== server.byom_version) differences.push(`server byom ${server.byom_version}, page ${local.byom_version}`);
  if (local.valid !== server.valid) differences.push(`server says ${server.valid ? "valid" : "invalid"}`);
  if (codes(local) !== codes(server)) differences.push(`server codes: ${codes(server) || "none"}`);
  if (!differences.length) return null;
  return el("div", { class: "disagree", dataset: { testid: "verdict-disagreement" } },
    el("strong", { text: "The server's verdict differs from the page's: " }), differences.join("; "), ".",
    serverIssues(server));
}

function serverIssues(report) {
  const rows = [...report.errors, ...report.warnings];
  return rows.length ? el("div", { class: "issues" }, rows.map((issue) => {
    const row = issueRow(issue);
    row.dataset.testid = "server-issue";
    return row;
  })) : null;
}

// ---------------------------------------------------------------- compile

function selectedTargets() {
  return [...$("targets").querySelectorAll("input:checked")].map((box) => box.value);
}

function updateCompileButton() {
  const polling = state.pollTimer !== null;
  const can = canWrite();
  $("compile-button").disabled = !(state.packageId && selectedTargets().length && !polling && can);
  $("targets").disabled = !(state.packageId && can);
}

async function startCompile() {
  const targets = selectedTargets();
  if (!state.packageId || !targets.length) return;
  const box = $("job");
  $("compile-button").disabled = true;
  try {
    const { job } = await api.startCompile(state.packageId, targets);
    state.jobId = job.id;
    remember({ packageId: state.packageId, packageName: state.packageName, jobId: job.id });
    renderJob(job);
    schedulePoll();
  } catch (error) {
    box.replaceChildren(el("p", { class: "bad", text: error.message }));
    updateCompileButton();
  }
}

function schedulePoll() {
  state.pollTimer = setTimeout(pollJob, JOB_POLL_MS);
  $("job-cancel").hidden = false;
  updateCompileButton();
}

function stopPolling() {
  if (state.pollTimer !== null) clearTimeout(state.pollTimer);
  state.pollTimer = null;
  $("job-cancel").hidden = true;
}

async function pollJob() {
  const jobId = state.jobId;
  try {
    const { job } = await api.getJob(jobId);
    if (state.jobId !== jobId) return;
    renderJob(job);
    if (TERMINAL.has(job.status) && job.targets.every((t) => TERMINAL.has(t.status))) {
      stopPolling();
      updateCompileButton();
      loadHistory();
      return;
    }
  } catch (error) {
    $("job").prepend(el("p", { class: "failure", text: `Refresh failed: ${error.message}; retrying.` }));
  }
  if (state.jobId === jobId) schedulePoll();
}

function renderJob(job) {
  $("job").replaceChildren(jobTable(job, (target) => download(job, target), (j) => api.getJobLog(j.id)));
  if (TERMINAL.has(job.status)) addSizes(job);
}

/** Bundle sizes come from the artifact route's Content-Length (a HEAD, nothing downloaded). */
async function addSizes(job) {
  for (const t of job.targets) {
    if (t.status !== "succeeded") continue;
    const bytes = await api.artifactSize(api.artifactUrl(job.id, t.target, t.artifact_url)).catch(() => null);
    const cell = document.querySelector(`[data-testid="target-numbers-${t.target}"] [data-key="size"]`);
    if (bytes !== null && cell && state.jobId === job.id) cell.textContent = formatBytes(bytes);
  }
}

async function download(job, target) {
  try {
    await api.downloadArtifact(api.artifactUrl(job.id, target.target, target.artifact_url), `${job.id}-${target.target}.tar.gz`);
  } catch (error) {
    $("job").prepend(el("p", { class: "failure", text: `Download failed: ${error.message}` }));
  }
}

async function cancelJob() {
  if (!state.jobId) return;
  try {
    await api.cancelJob(state.jobId);
  } catch (error) {
    $("job").prepend(el("p", { class: "failure", text: `Cancel failed: ${error.message}` }));
  }
}

// ---------------------------------------------------------------- last state and history

function remember(last) {
  sessionStorage.setItem(LAST_KEY, JSON.stringify(last));
}

function recalled() {
  try {
    return JSON.parse(sessionStorage.getItem(LAST_KEY) || "null");
  } catch {
    return null;
  }
}

/** After a reload: show the package and job the page showed last (if they still exist). */
async function restoreLast() {
  const last = recalled();
  if (!last || !last.packageId || !state.identity) return;
  try {
    const pkg = await api.getPackage(last.packageId);
    selectPackage(pkg, { quiet: true });
    const job = last.jobId && (pkg.jobs || []).find((j) => j.id === last.jobId);
    if (job) openJob(job);
  } catch (error) {
    if (error.status === 404) sessionStorage.removeItem(LAST_KEY);
  }
}

/** Make a stored package the one step 3 compiles. */
function selectPackage(pkg, { quiet = false } = {}) {
  if (state.upload) state.upload.abort();
  state.file = null;
  resetResults();
  state.packageId = pkg.id;
  state.packageName = pkg.name;
  remember({ packageId: pkg.id, packageName: pkg.name, jobId: null });
  $("upload-result").replaceChildren(
    el("span", { class: "ok", dataset: { testid: "current-package" }, text: `Stored on the server: ${pkg.name}` }), " ",
    el("span", { class: "muted small" }, "Package ", el("code", { text: pkg.id })));
  updateUploadButton();
  updateCompileButton();
  if (!quiet) $("h-compile").scrollIntoView({ block: "nearest" });
}

function openJob(job) {
  stopPolling();
  state.jobId = job.id;
  if (job.package_id && job.package_id !== state.packageId) {
    state.packageId = job.package_id;
    const pkg = state.history.packages.find((p) => p.id === job.package_id);
    state.packageName = pkg ? pkg.name : null;
  }
  remember({ packageId: state.packageId, packageName: state.packageName, jobId: job.id });
  renderJob(job);
  if (!(TERMINAL.has(job.status) && job.targets.every((t) => TERMINAL.has(t.status)))) schedulePoll();
  updateCompileButton();
}

async function loadHistory() {
  const status = $("history-status");
  if (!state.identity) {
    state.history = { packages: [], jobs: [], page: 0 };
    $("history-list").replaceChildren();
    status.textContent = state.spec ? "Enter a valid token to see your tenant's packages." : "The history needs the server.";
    updatePager();
    return;
  }
  try {
    const [{ packages }, { jobs }] = await Promise.all([api.listPackages(), api.listJobs()]);
    state.history = { packages, jobs, page: Math.min(state.history.page, Math.max(0, Math.ceil(packages.length / HISTORY_PAGE) - 1)) };
    showHistoryPage(state.history.page);
  } catch (error) {
    status.textContent = `The history could not be loaded: ${error.message}`;
  }
}

function showHistoryPage(page) {
  const { packages, jobs } = state.history;
  const pages = Math.max(1, Math.ceil(packages.length / HISTORY_PAGE));
  page = Math.max(0, Math.min(page, pages - 1));
  state.history.page = page;
  const handlers = {
    canCompile: canWrite(),
    canDelete: Boolean(state.identity && state.identity.can.delete),
    select: (pkg) => selectPackage(pkg),
    remove: (pkg) => confirmDelete(pkg),
    openJob: (job) => openJob(job),
    download: (job, t) => download(job, t),
  };
  const shown = packages.slice(page * HISTORY_PAGE, (page + 1) * HISTORY_PAGE);
  $("history-list").replaceChildren(...shown.map((pkg) => historyItem(pkg, jobs.filter((j) => j.package_id === pkg.id), handlers)));
  $("history-status").textContent = packages.length
    ? `${packages.length} package${packages.length === 1 ? "" : "s"} in tenant ${state.identity.tenant}, newest first.`
    : `No packages in tenant ${state.identity.tenant} yet.`;
  updatePager();
}

function updatePager() {
  const { packages, page } = state.history;
  const pages = Math.max(1, Math.ceil(packages.length / HISTORY_PAGE));
  $("history-prev").disabled = page <= 0;
  $("history-next").disabled = page >= pages - 1;
  $("history-page").textContent = packages.length > HISTORY_PAGE ? `Page ${page + 1} of ${pages}` : "";
  $("history-page").closest("nav").hidden = pages <= 1;
}

/** Delete after an explicit confirmation in a dialog that names what goes. */
async function confirmDelete(pkg) {
  const jobs = state.history.jobs.filter((j) => j.package_id === pkg.id);
  const dialog = $("confirm-dialog");
  const what = jobs.length ? ` and its ${jobs.length} job${jobs.length === 1 ? "" : "s"} with their artifacts` : "";
  $("confirm-text").textContent = `${pkg.name} (${pkg.id})${what} will be removed from the server. This cannot be undone.`;
  dialog.returnValue = "";
  dialog.showModal();
  const answer = await new Promise((ok) => dialog.addEventListener("close", () => ok(dialog.returnValue), { once: true }));
  if (answer !== "delete") return;
  try {
    await api.deletePackage(pkg.id);
    if (state.packageId === pkg.id) {
      resetResults();
      state.jobId = null;
      sessionStorage.removeItem(LAST_KEY);
      updateUploadButton();
      updateCompileButton();
    }
    $("history-status").textContent = `Deleted ${pkg.name}.`;
  } catch (error) {
    $("history-status").textContent = `Not deleted: ${error.message}`;
    return;
  }
  await loadHistory();
  $("history-status").textContent = `Deleted ${pkg.name}. ${$("history-status").textContent}`;
}

boot();
