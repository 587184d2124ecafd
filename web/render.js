// DOM rendering of reports, inspections and jobs. Pure functions of their data: they build
// elements and never read page state, so the controller (app.js) stays about flow only.

/** `el("div", {class: "x", dataset: {testid: "y"}}, child, "text")` */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : 1)} ${UNITS[unit]}`;
}

export function formatCount(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function shape(value) {
  return Array.isArray(value) ? `[${value.join(", ")}]` : "—";
}

/** One error or warning row (test hook: data-testid="issue", data-code). */
export function issueRow(issue) {
  return el(
    "div",
    { class: `issue ${issue.severity}`, dataset: { testid: "issue", code: issue.code, category: issue.category, severity: issue.severity } },
    el(
      "div",
      { class: "issue-head" },
      el("span", { class: "code", text: issue.code }),
      el("span", { class: "sev", text: issue.severity }),
      issue.file ? el("span", { class: "issue-file", text: issue.file }) : null,
    ),
    el("div", { class: "issue-msg", text: issue.message }),
    issue.hint ? el("div", { class: "issue-hint", text: issue.hint }) : null,
  );
}

/** The verdict banner's content. */
export function verdictContent(report, meta, validText = "Ready to upload.") {
  const errors = report.errors.length;
  const warnings = report.warnings.length;
  const counts = [
    errors ? `${errors} error${errors === 1 ? "" : "s"}` : null,
    warnings ? `${warnings} warning${warnings === 1 ? "" : "s"}` : null,
  ].filter(Boolean).join(", ");
  const title = report.valid
    ? `Valid package${warnings ? ` — ${counts}` : ""}`
    : `Not a valid package — ${counts || "see below"}`;
  return [
    el("span", { class: "icon", "aria-hidden": "true", text: report.valid ? "✔" : "✖" }),
    el("div", {}, el("div", { class: "big", text: title }),
      el("div", { class: "small", text: report.valid ? validText : "Fix the errors below, then drop the package again." })),
    el("div", { class: "meta" }, meta),
  ];
}

/** Summary key/values (what the package declares). */
export function summaryItems(summary) {
  const rows = [
    ["Model type", summary.model_type || "—"],
    ["Input shape", shape(summary.input_shape)],
    ["Output shape", shape(summary.output_shape)],
    ["Classes", summary.num_classes ?? "—"],
    ["Class names", summary.class_names && summary.class_names.length ? summary.class_names.join(", ") : "—"],
    ["Model file", summary.model_file ? `${summary.model_file} (${formatBytes(summary.model_file_bytes)})` : "—"],
    ["Package", `${formatBytes(summary.compressed_bytes)} compressed, ${formatBytes(summary.uncompressed_bytes)} unpacked`],
    ["Files", summary.entries && summary.entries.length ? summary.entries.join("\n") : "—"],
  ];
  // Short values pair up two per line; the long ones (names, files) take a whole line.
  const long = new Set(["Class names", "Model file", "Package", "Files"]);
  return rows.flatMap(([key, value]) => [
    el("dt", { text: key }),
    el("dd", {
      class: [long.has(key) ? "span" : "", key === "Files" ? "mono small" : ""].join(" ").trim() || null,
      style: key === "Files" ? "white-space: pre-line" : null,
      text: String(value),
    }),
  ]);
}

const KIND_LABEL = {
  state_dict: "state dict (weights only)",
  checkpoint: "training checkpoint (state dict inside a dict)",
  torchscript_traced: "TorchScript (traced)",
  torchscript_scripted: "TorchScript (scripted)",
  pickled_module: "pickled nn.Module",
  legacy: "legacy torch.save format",
  not_pytorch: "not a PyTorch file",
};

/** `forward(x: Tensor) -> Tensor`, as the core's ForwardSignature::display writes it. */
export function forwardText(f) {
  const params = (f.params || []).map((p) => `${p.name}: ${p.type}${p.default !== null && p.default !== undefined ? `=${p.default}` : ""}`);
  return `forward(${params.join(", ")})${f.returns ? ` -> ${f.returns}` : ""}`;
}

/**
 * The root forward of a TorchScript file and whether the server can call it with one tensor
 * (BYOM631 says it cannot): the server and every bundle call `forward(x)`.
 */
function forwardView(forward, issues) {
  const refused = issues.filter((i) => i.code === "BYOM631");
  return el("span", { dataset: { testid: "forward", verdict: refused.length ? "refused" : "ok" } },
    el("code", { class: "mono small", text: forwardText(forward) }), " ",
    refused.length
      ? el("span", { class: "badge bad", title: refused[0].message, text: "BYOM631: cannot take one tensor" })
      : el("span", { class: "badge ok", text: "takes one tensor" }));
}

/**
 * The operators a TorchScript file calls, counted by namespace (`aten 12 · torchvision 1`), the
 * full list one click away; a namespace the server lacks (BYOM630) is marked. The server loads
 * the file only if it provides every namespace.
 */
function operatorsView(operators, issues) {
  const byNs = new Map();
  for (const op of operators) {
    const ns = op.includes("::") ? op.slice(0, op.indexOf("::")) : op;
    byNs.set(ns, (byNs.get(ns) || 0) + 1);
  }
  const missing = issues.filter((i) => i.code === "BYOM630");
  const refusedNs = new Set(missing.flatMap((i) => [...byNs.keys()].filter((ns) => i.message.includes(`namespace "${ns}"`))));
  const namespaces = [...byNs.entries()].map(([ns, n]) => el("span", {
    class: refusedNs.has(ns) ? "badge bad" : "badge",
    dataset: { namespace: ns },
    title: refusedNs.has(ns) ? "not provided by the server (BYOM630)" : null,
    text: `${ns} ${n}`,
  }));
  return el("span", { dataset: { testid: "operators", verdict: missing.length ? "refused" : "ok" } },
    ...namespaces.flatMap((b) => [b, " "]),
    el("details", { class: "inline" },
      el("summary", { text: `${operators.length} operator${operators.length === 1 ? "" : "s"}` }),
      el("div", { class: "mono small", text: operators.join(", ") })));
}

/**
 * The .pt inspection: kind, parameters, minimum torch, safety, architecture, the forward and
 * operators of TorchScript, and the largest tensors. `issues` are the model-related issues of the report (categories safety, model,
 * compatibility).
 */
export function inspectionView(model, issues = [], topN = 12) {
  if (!model) {
    return el("div", {}, el("h3", { text: "Model file" }), el("p", { class: "muted", text: "No .pt file was read." }));
  }
  const safetyIssues = issues.filter((i) => i.category === "safety");
  const safe = safetyIssues.length === 0
    ? el("span", { class: "badge ok", text: "no code execution on load" })
    : el("span", { class: "badge bad", text: safetyIssues.map((i) => i.code).join(", ") });
  const arch = model.architecture || (model.arch && model.arch.name) || null;
  const rows = [
    ["Kind", el("span", { class: "badge", text: KIND_LABEL[model.kind] || model.kind })],
    ["Parameters", `${formatCount(model.parameter_count)} (${formatBytes(model.tensor_bytes)})`],
    ["Tensors", formatCount(model.tensors ? model.tensors.length : 0)],
    ["Minimum torch", model.min_torch || "—"],
    // TorchScript is named from its root class; the full Python name is one hover away.
    ["Architecture", arch
      ? el("span", { title: model.script_class ? `TorchScript root class ${model.script_class.qualified}` : null, text: arch })
      : "not recognised"],
    ["Safety", safe],
  ];
  if (model.forward) rows.push(["Forward", forwardView(model.forward, issues)]);
  if (model.operators && model.operators.length) rows.push(["Operators", operatorsView(model.operators, issues)]);
  const dl = el("dl", { class: "kv wide" }, rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  const tensors = [...(model.tensors || [])].sort((a, b) => b.bytes - a.bytes).slice(0, topN);
  const table = tensors.length
    ? el("div", { class: "table-scroll", style: "margin-top: 0.6rem" },
      el("table", {},
        el("caption", { class: "visually-hidden", text: `Largest ${tensors.length} tensors` }),
        el("thead", {}, el("tr", {}, el("th", { text: "Tensor" }), el("th", { text: "dtype" }), el("th", { text: "Shape" }), el("th", { class: "num", text: "Size" }))),
        el("tbody", {}, tensors.map((t) => el("tr", {},
          el("td", { class: "name", text: t.name }), el("td", { text: t.dtype }),
          el("td", { class: "mono small shape", text: shape(t.shape) }), el("td", { class: "num", text: formatBytes(t.bytes) }))))))
    : null;
  return el("div", {},
    el("h3", { text: `Model file${model.file_bytes ? ` · ${formatBytes(model.file_bytes)}` : ""}` }),
    dl,
    tensors.length ? el("h3", { text: `Largest tensors (${tensors.length} of ${formatCount(model.tensors.length)})` }) : null,
    table);
}

export const TARGETS = ["x86_64-cpu", "x86_64-cuda", "arm64-cpu", "jetson-xavier"];
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

const TARGET_LABEL = {
  "x86_64-cpu": "x86_64 CPU",
  "x86_64-cuda": "x86_64 CUDA",
  "arm64-cpu": "arm64 CPU",
  "jetson-xavier": "Jetson Xavier",
};

/**
 * What the verification state means, in words that claim no more than the report proves. The
 * server classifies (jobs/view.rs `VerificationState`); `ran_on`/`status` are the report's own.
 */
export function verificationWords(target, v) {
  const state = (v && v.state) || "unverified";
  const gpu = target === "jetson-xavier" ? "Jetson" : "GPU";
  switch (state) {
    case "verified_on_device":
      return {
        state,
        label: `Verified on ${v.ran_on || "the device"}`,
        explain: `Loaded back and run on ${v.ran_on || "the device"}; its outputs match the original model within tolerance.`,
      };
    case "checked_on_build_host":
      return {
        state,
        label: "Built and checked on the build host's CPU",
        explain: `Loaded back and its outputs compared with the original on the build host's CPU, not on an ${TARGET_LABEL[target] || target} device: results and speed on the device are not measured.`,
      };
    case "built_not_run":
      return {
        state,
        label: "Built, not run on a device",
        explain: `No ${gpu} was available to the build host, so it never ran on one. ` +
          (v && v.max_abs_error !== null && v.max_abs_error !== undefined
            ? "It was only loaded back and checked on the build host's CPU; speed and results on the device are unmeasured."
            : "Speed and results on the device are unmeasured."),
      };
    default:
      return { state: "unverified", label: "Not verified", explain: "The report has no verification for this target." };
  }
}

function ms(value) {
  if (value === null || value === undefined) return "—";
  return value < 10 ? `${value.toFixed(2)} ms` : `${value.toFixed(1)} ms`;
}

function sci(value) {
  if (value === null || value === undefined) return "—";
  return value === 0 ? "0" : value.toExponential(2);
}

/** A sha256 shown short (the whole of it in the title and data-sha, for copying). */
function shaView(sha) {
  if (!sha) return "—";
  return el("code", { class: "sha", title: sha, dataset: { sha }, text: `${sha.slice(0, 16)}…` });
}

/** The report's numbers for one target (test hook: target-numbers-<target>). */
function targetNumbers(t) {
  const v = t.verification || {};
  const steps = v.load_time_steps && v.load_time_steps.length ? v.load_time_steps.join(", ") : "none";
  const rows = [
    ["Max abs error vs original", v.max_abs_error === undefined ? "—" : `${sci(v.max_abs_error)}${v.tolerance ? ` (tolerance ${sci(v.tolerance)})` : ""}`, "max-abs-error"],
    ["p50 latency, original", ms(v.original_p50_ms), "p50-original"],
    ["p50 latency, as shipped", v.p50_ms == null && v.latency_not_measured ? v.latency_not_measured : `${ms(v.p50_ms)}${v.latency_device ? ` on ${v.latency_device}` : ""}`, "p50"],
    ["p50 after load-time steps", ms(v.p50_after_load_time_steps_ms), "p50-after"],
    ["Load-time steps kept", steps, "steps"],
    ["Precision", v.precision || "—", "precision"],
    ["Model sha256", shaView(t.sha256), "sha256"],
    ["Bundle sha256", shaView(v.bundle_sha256), "bundle-sha256"],
    ["Bundle size", t.bundle_bytes ? formatBytes(t.bundle_bytes) : "—", "size"],
    ["Build time", formatDuration(t.duration_ms), "duration"],
  ];
  return el("dl", { class: "kv numbers", dataset: { testid: `target-numbers-${t.target}` } },
    rows.flatMap(([k, value, key]) => [el("dt", { text: k }), el("dd", { dataset: { key } }, value)]));
}

/**
 * A small bar chart of p50 latency: the original model, then each target as shipped (and after
 * its load-time steps). Bars are scaled to the slowest; the numbers are printed next to them.
 */
export function latencyChart(job) {
  const bars = [];
  const targets = (job.targets || []).filter((t) => t.verification);
  const original = targets.map((t) => t.verification.original_p50_ms).find((x) => typeof x === "number");
  if (typeof original === "number") bars.push({ label: "original", title: "the original model, unfrozen", value: original, kind: "original" });
  for (const t of targets) {
    const v = t.verification;
    const where = v.latency_device ? ` on ${v.latency_device}` : "";
    // A target not verified on its device was timed on the build host: the label says so.
    const host = v.state !== "verified_on_device" ? " (host CPU)" : "";
    if (typeof v.p50_ms === "number") bars.push({ label: `${t.target}${host}`, title: `${t.target} as shipped${where}`, value: v.p50_ms, kind: host ? "host" : "shipped" });
    if (typeof v.p50_after_load_time_steps_ms === "number") {
      const steps = (v.load_time_steps || []).join(", ") || "load-time steps";
      bars.push({ label: `${t.target} + ${steps}`, title: `${t.target} after ${steps}${where}`, value: v.p50_after_load_time_steps_ms, kind: "after" });
    }
  }
  if (bars.length < 2) return null;
  const max = Math.max(...bars.map((b) => b.value), 1e-9);
  const summary = bars.map((b) => `${b.title}: ${ms(b.value)}`).join("; ");
  return el("figure", { class: "chart", dataset: { testid: "latency-chart" } },
    el("figcaption", { class: "small", text: "p50 latency, shorter is faster. Measured where the build ran: on the build host's CPU, not on the devices, unless a target says \u201cVerified on\u201d a device." }),
    el("div", { role: "img", "aria-label": `p50 latency: ${summary}` },
      bars.map((b) => el("div", { class: "bar-row", dataset: { kind: b.kind }, title: b.title },
        el("span", { class: "bar-label small", text: b.label }),
        el("span", { class: "bar-track" }, el("span", { class: `bar ${b.kind}`, style: `width: ${Math.max(2, (100 * b.value) / max).toFixed(1)}%` })),
        el("span", { class: "bar-value small num", text: ms(b.value) })))));
}

/** One target of a job: build status, verification state and why, numbers, log, download. */
function targetView(job, t, onDownload) {
  const words = verificationWords(t.target, t.verification);
  const built = t.status === "succeeded";
  const statusText = built ? "built" : t.status;
  const status = el("span", { class: `status badge s-${t.status}`, dataset: { testid: `target-status-${t.target}`, status: t.status }, text: statusText });
  const verification = built
    ? el("span", { class: `badge v-${words.state}`, dataset: { testid: `target-verification-${t.target}`, state: words.state }, text: words.label })
    : null;
  const link = built
    ? el("a", {
      class: "btn btn-small",
      href: t.artifact_url || `/api/v1/jobs/${job.id}/artifacts/${t.target}`,
      dataset: { testid: `artifact-link-${t.target}` },
      onclick: (event) => { event.preventDefault(); onDownload(t); },
      text: "Download",
    })
    : null;
  const reason = t.failure_reason ? failureView(t.failure_reason, t.failure, `target-failure-${t.target}`) : null;
  const warnings = (t.warnings || []).length
    ? el("ul", { class: "warnings small", dataset: { testid: `target-warnings-${t.target}` } },
      t.warnings.map((w) => el("li", { text: w })))
    : null;
  const log = t.log_tail
    ? el("details", { class: "log", dataset: { testid: `target-log-${t.target}` } },
      el("summary", { text: "Log" }), el("pre", { class: "mono small", text: t.log_tail }))
    : null;
  return el("div", { class: "target", dataset: { target: t.target } },
    el("div", { class: "target-head" },
      el("span", { class: "mono target-name", text: t.target }), status, verification, link),
    built ? el("p", { class: "small explain", dataset: { testid: `target-explain-${t.target}` }, text: words.explain }) : null,
    reason,
    warnings,
    built ? el("details", { class: "numbers-wrap", open: true }, el("summary", { class: "small", text: "Report" }), targetNumbers(t)) : null,
    log);
}

/**
 * A failure: the one-line summary (first cause first), then what to do and where in the model's
 * own code, when the report knows; the full text is in the job's log.
 */
function failureView(summary, failure, testid) {
  const f = failure || {};
  return el("div", { class: "failure", dataset: { testid, kind: f.kind || "" } },
    el("div", { class: "failure-summary", text: summary }),
    f.hint ? el("div", { class: "failure-hint small", text: `What to do: ${f.hint}` }) : null,
    f.model_code ? el("div", { class: "failure-at small mono", text: `In the model's code: ${f.model_code}` }) : null);
}

/**
 * The job's whole log, fetched when opened (one click): `onLog(job)` resolves to its text.
 */
function fullLog(job, onLog) {
  if (!onLog || !TERMINAL.has(job.status)) return null;
  const pre = el("pre", { class: "mono small", text: "Loading…" });
  const details = el("details", { class: "log", dataset: { testid: "job-log" } },
    el("summary", { text: "Full log" }), pre);
  details.addEventListener("toggle", () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    onLog(job).then((text) => { pre.textContent = text; }, (error) => { pre.textContent = `Could not load the log: ${error.message}`; });
  });
  return details;
}

/** The job: one block per target with its status, verification, numbers, log and artifact. */
export function jobTable(job, onDownload, onLog) {
  return el("div", {},
    el("p", { class: "small muted job-head" }, `Job `, el("code", { text: job.id }),
      ` · ${job.status === "succeeded" ? "finished: every target built (see each one for how far it was verified)" : job.status}`),
    job.failure_reason && !(job.targets || []).some((t) => t.failure_reason)
      ? failureView(job.failure_reason, job.failure, "job-failure") : null,
    el("div", { class: "targets-list", dataset: { testid: "job-table" } },
      (job.targets || []).map((t) => targetView(job, t, onDownload))),
    latencyChart(job),
    fullLog(job, onLog));
}

function verdictBadge(report) {
  if (!report) return el("span", { class: "badge", text: "no report" });
  const w = report.warnings ? report.warnings.length : 0;
  return el("span", { class: `badge ${report.valid ? "ok" : "bad"}`, text: report.valid ? (w ? `valid · ${w} warning${w === 1 ? "" : "s"}` : "valid") : "invalid" });
}

/**
 * The tenant's history: one entry per package (verdict, size, when) with its jobs (targets,
 * statuses, verification, downloads). Test hooks: history-item (data-package-id), history-job.
 */
export function historyItem(pkg, jobs, handlers) {
  const when = pkg.created_at ? pkg.created_at.replace("T", " ").replace(/\..*$/, "").replace(/Z$/, "") : "";
  const jobRows = jobs.map((job) => el("li", { class: "history-job", dataset: { testid: "history-job", jobId: job.id, status: job.status } },
    el("div", { class: "history-job-head" },
      el("button", { class: "btn btn-small btn-ghost", type: "button", onclick: () => handlers.openJob(job), "aria-label": `Open job ${job.id}`, text: "Open" }),
      el("span", { class: `badge s-${job.status}`, text: job.status === "succeeded" ? "all targets built" : job.status }),
      el("span", { class: "muted small", text: job.created_at ? job.created_at.replace("T", " ").replace(/\..*$/, "").replace(/Z$/, "") : "" })),
    el("ul", { class: "history-targets" }, job.targets.map((t) => {
      const words = verificationWords(t.target, t.verification);
      return el("li", { dataset: { target: t.target, status: t.status, state: t.status === "succeeded" ? words.state : "" } },
        el("span", { class: "mono small", text: t.target }), " ",
        el("span", { class: `badge s-${t.status}`, text: t.status === "succeeded" ? "built" : t.status }), " ",
        t.status === "succeeded" ? el("span", { class: `badge v-${words.state}`, title: words.explain, text: words.label }) : null, " ",
        t.status === "succeeded"
          ? el("a", {
            href: t.artifact_url || `/api/v1/jobs/${job.id}/artifacts/${t.target}`,
            dataset: { testid: `history-download-${t.target}` },
            onclick: (event) => { event.preventDefault(); handlers.download(job, t); },
            text: "Download",
          }) : null);
    }))));
  return el("li", { class: "history-item", dataset: { testid: "history-item", packageId: pkg.id } },
    el("div", { class: "history-head" },
      el("span", { class: "file-name", text: pkg.name }),
      verdictBadge(pkg.report),
      el("span", { class: "muted small", text: `${formatBytes(pkg.size)} · ${when}` }),
      el("span", { class: "history-actions" },
        handlers.canCompile ? el("button", { class: "btn btn-small", type: "button", dataset: { testid: "history-select" }, onclick: () => handlers.select(pkg), text: "Compile…" }) : null,
        handlers.canDelete ? el("button", { class: "btn btn-small btn-danger", type: "button", dataset: { testid: "history-delete" }, "aria-label": `Delete ${pkg.name}`, onclick: () => handlers.remove(pkg), text: "Delete" }) : null)),
    el("div", { class: "muted small mono pkg-id", text: pkg.id }),
    jobRows.length ? el("ul", { class: "history-jobs" }, jobRows) : el("p", { class: "muted small", text: "Not compiled yet." }));
}
