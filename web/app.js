// The portal page's controller: validate in the worker, upload only what is valid, compile and
// follow the job. Rendering lives in render.js, HTTP in api.js, the worker protocol in
// worker-client.js, the .pt package builder in builder.js.
import * as api from "./api.js";
import { el, formatBytes, issueRow, verdictContent, summaryItems, inspectionView, jobTable, TERMINAL } from "./render.js";
import { WorkerClient } from "./worker-client.js";
import { setupBuilder } from "./builder.js";

const $ = (id) => document.getElementById(id);

/** Poll interval for the job; fast enough to feel live, slow enough to be no load. */
const JOB_POLL_MS = 1000;
/** Issue categories (byom_core::Category) that concern the .pt file, shown beside its inspection. */
const MODEL_CATEGORIES = new Set(["safety", "model", "compatibility"]);

/** `?read=stream|js|wasm` picks the worker's read loop (default: the fastest one supported). */
const READ_MODE = new URLSearchParams(location.search).get("read") || undefined;

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
};

const worker = new WorkerClient();

// ---------------------------------------------------------------- boot

async function boot() {
  const tokenInput = $("token-input");
  tokenInput.value = api.getToken();
  tokenInput.addEventListener("input", () => api.setToken(tokenInput.value.trim()));

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
  if (ready.error) {
    showNotice(ready.error.message);
    return;
  }
  $("versions").textContent = `validator byom-core ${ready.version}` +
    (state.spec ? ` · server ${state.spec.byom_version} · settings ${state.spec.settings_hash.slice(0, 19)}…` : " · default settings");
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
  const validText = state.spec ? "Ready to upload." : "Uploading it needs the server (this page was opened without one).";
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

function updateUploadButton() {
  const button = $("upload-button");
  const canUpload = Boolean(state.report && state.report.valid && state.spec && !state.upload && !state.packageId);
  button.disabled = !canUpload;
  const help = $("upload-help");
  if (!state.spec) help.textContent = "Uploading needs the server (the page was opened without one).";
  else if (state.report && !state.report.valid) help.textContent = "This package has errors: fix them before uploading.";
  else if (state.packageId) help.textContent = `Uploaded: ${state.file.name}. Choose targets and compile.`;
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
  });
  updateUploadButton();
  try {
    const { status, body } = await state.upload.promise;
    if (state.file !== file) return;
    if (status === 201 || status === 200) {
      const pkg = body.package;
      state.packageId = pkg.id;
      bar.value = bar.max;
      text.textContent = `${formatBytes(file.size)} uploaded`;
      result.replaceChildren(el("span", { class: "ok", text: "Stored on the server." }), " ",
        el("span", { class: "muted small" }, "Package ", el("code", { text: pkg.id })));
      const disagreement = compareVerdicts(localReport, pkg.report);
      if (disagreement) result.append(disagreement);
      $("targets").disabled = false;
      updateCompileButton();
    } else if (status === 422 && body && body.report) {
      result.replaceChildren(el("span", { class: "bad", text: "The server refused the package as invalid." }));
      result.append(compareVerdicts(localReport, body.report) || serverIssues(body.report));
    } else {
      result.replaceChildren(el("span", { class: "bad", text: (body && body.message) || api.explainStatus(status) }));
    }
  } catch (error) {
    if (state.file === file) {
      result.replaceChildren(el("span", { class: error.cancelled ? "muted" : "bad", text: error.message }));
      text.textContent = error.cancelled ? "Cancelled" : text.textContent;
    }
  } finally {
    if (state.file === file) {
      state.upload = null;
      $("upload-cancel").hidden = true;
      updateUploadButton();
    }
  }
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
  $("compile-button").disabled = !(state.packageId && selectedTargets().length && !polling);
}

async function startCompile() {
  const targets = selectedTargets();
  if (!state.packageId || !targets.length) return;
  const box = $("job");
  $("compile-button").disabled = true;
  try {
    const { job } = await api.startCompile(state.packageId, targets);
    state.jobId = job.id;
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
      return;
    }
  } catch (error) {
    $("job").prepend(el("p", { class: "failure", text: `Refresh failed: ${error.message}; retrying.` }));
  }
  if (state.jobId === jobId) schedulePoll();
}

function renderJob(job) {
  $("job").replaceChildren(jobTable(job, (target) => download(job, target)));
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

boot();
