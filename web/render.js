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

/**
 * The .pt inspection: kind, parameters, minimum torch, safety, architecture, and the largest
 * tensors. `issues` are the model-related issues of the report (categories safety, model,
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
    ["Architecture", arch || "not recognised"],
    ["Safety", safe],
  ];
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

/** The job table: one row per target with its status, duration, failure reason and artifact. */
export function jobTable(job, onDownload) {
  const rows = (job.targets || []).map((t) => {
    const status = el("span", { class: "status", dataset: { testid: `target-status-${t.target}`, status: t.status }, text: t.status });
    const link = t.status === "succeeded"
      ? el("a", {
        href: t.artifact_url || `/api/v1/jobs/${job.id}/artifacts/${t.target}`,
        dataset: { testid: `artifact-link-${t.target}` },
        onclick: (event) => { event.preventDefault(); onDownload(t); },
        text: "Download",
      })
      : el("span", { class: "muted", text: "—" });
    const reason = t.failure_reason ? el("div", { class: "failure", text: t.failure_reason }) : null;
    return el("tr", {},
      el("td", {}, el("div", { class: "mono", text: t.target }), reason),
      el("td", {}, status),
      el("td", { class: "num", text: formatDuration(t.duration_ms) }),
      el("td", {}, link));
  });
  return el("div", {},
    el("p", { class: "small muted" }, `Job `, el("code", { text: job.id }), ` · ${job.status}`),
    el("table", { dataset: { testid: "job-table" } },
      el("thead", {}, el("tr", {}, el("th", { text: "Target" }), el("th", { text: "Status" }), el("th", { class: "num", text: "Time" }), el("th", { text: "Artifact" }))),
      el("tbody", {}, rows)));
}
