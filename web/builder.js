// "Build a package from a bare .pt": inspect the .pt in the worker, show what was inferred,
// let the user describe the model, and build model.tar.gz with the core's own packing code
// (byom_core::pack, compiled to wasm) — no Python, nothing uploaded.
import { el, formatBytes, issueRow, inspectionView } from "./render.js";

const $ = (id) => document.getElementById(id);

/** Guess input channels and class count from the tensors when the architecture is unknown. */
function inferShapes(inspection) {
  const tensors = inspection.tensors || [];
  const firstConv = tensors.find((t) => t.shape && t.shape.length === 4 && /weight$/.test(t.name));
  const weights2d = tensors.filter((t) => t.shape && t.shape.length === 2 && /weight$/.test(t.name));
  const last = weights2d[weights2d.length - 1];
  return {
    channels: inspection.in_channels ?? (firstConv ? firstConv.shape[1] : null),
    numClasses: inspection.num_classes ?? (last ? last.shape[0] : null),
  };
}

function numbers(text) {
  return text.split(/[\s,]+/).filter(Boolean).map(Number);
}

function classNames(text) {
  return text.split(/[\n,]+/).map((s) => s.trim()).filter(Boolean);
}

/** The form as the core's PackOptions JSON (see PackOptions in byom_wasm.d.ts). */
export function packOptions(form, inferred = {}) {
  const data = new FormData(form);
  const channels = Number(data.get("channels"));
  const height = Number(data.get("height"));
  const width = Number(data.get("width"));
  let names = classNames(String(data.get("class_names") || ""));
  // No names given but the classifier width is known: name them class_0…class_{N-1}.
  if (!names.length && inferred.numClasses) names = Array.from({ length: inferred.numClasses }, (_, i) => `class_${i}`);
  const modelType = String(data.get("model_type"));
  const options = {
    model_type: modelType,
    input_shape: [1, channels, height, width],
    class_names: names,
    channel_order: String(data.get("channel_order") || "RGB"),
  };
  // Empty: "(default for the type)", which the worker asks the core for.
  const postprocessing = String(data.get("postprocessing") || "");
  if (postprocessing) options.postprocessing = postprocessing;
  if (names.length) options.num_classes = names.length;
  // byom_core::pack::Resize: named axes, so the order cannot be swapped on the way.
  if (data.get("resize")) options.resize = { height, width };
  const mean = numbers(String(data.get("mean") || ""));
  const std = numbers(String(data.get("std") || ""));
  if (mean.length) options.mean = mean;
  if (std.length) options.std = std;
  return options;
}

function preBlock(title, text) {
  return el("details", { class: "prep" }, el("summary", { text: title }), el("pre", { class: "mono small", style: "white-space: pre-wrap; margin: 0.4rem 0 0", text }));
}

export function setupBuilder({ worker, settingsJson, setupDropzone, onValidate }) {
  let ptFile = null;
  let guess = {};
  const result = $("pt-result");
  const form = $("pack-form");
  const packResult = $("pack-result");

  // The post-processing choices come from the core (byom.postProcessingTypes()), not a copy.
  worker.ready.then(({ postProcessingTypes = [] }) => {
    const select = form.elements.postprocessing;
    select.append(...postProcessingTypes.map((name) => el("option", { value: name, text: name })));
  }).catch(() => {});

  setupDropzone($("pt-dropzone"), $("pt-input"), async (file) => {
    ptFile = file;
    $("pack-fields").disabled = true;
    packResult.replaceChildren();
    result.replaceChildren(el("p", { class: "muted", text: `Reading ${file.name} (${formatBytes(file.size)})…` }));
    try {
      const { result: inspected } = await worker.request({ type: "inspect", file, settings: settingsJson() });
      if (ptFile !== file) return;
      const { inspection, issues } = inspected;
      const errors = issues.filter((i) => i.severity === "error");
      guess = inferShapes(inspection);
      result.replaceChildren(
        el("div", { class: `verdict`, dataset: { valid: String(errors.length === 0), testid: "pt-verdict" } },
          el("span", { class: "icon", "aria-hidden": "true", text: errors.length ? "✖" : "✔" }),
          el("div", {}, el("div", { class: "big", text: errors.length ? "This file cannot be packaged as is" : "Looks like a model the server can compile" }),
            el("div", { class: "small", text: guess.channels || guess.numClasses
              ? `Inferred: ${guess.channels ?? "?"} input channels, ${guess.numClasses ?? "?"} outputs.`
              : "Fill in the input size and classes on the right." }))),
        el("div", { class: "issues" }, issues.map(issueRow)),
        inspectionView(inspection, issues),
      );
      if (guess.channels) form.elements.channels.value = guess.channels;
      if (guess.numClasses && !form.elements.class_names.value.trim()) {
        form.elements.class_names.placeholder = Array.from({ length: Math.min(guess.numClasses, 6) }, (_, i) => `class_${i}`).join("\n") +
          (guess.numClasses > 6 ? `\n… (${guess.numClasses} in all)` : "");
      }
      $("pack-fields").disabled = errors.length > 0;
    } catch (error) {
      if (ptFile === file) result.replaceChildren(el("p", { class: "failure", text: `Could not read the file: ${error.message}` }));
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!ptFile) return;
    if (!form.reportValidity()) return;
    const options = packOptions(form, guess);
    packResult.replaceChildren(el("p", { class: "muted", text: "Building the package…" }));
    try {
      const { packed } = await worker.request({ type: "pack", file: ptFile, options });
      const blob = new Blob([packed.package], { type: "application/gzip" });
      const file = new File([blob], "model.tar.gz", { type: "application/gzip" });
      const href = URL.createObjectURL(blob);
      packResult.replaceChildren(
        el("p", { class: "ok", text: `model.tar.gz built (${formatBytes(blob.size)}).` }),
        packed.inferred.length ? el("ul", { class: "small", dataset: { testid: "pack-inferred" } }, packed.inferred.map((line) => el("li", { text: line }))) : null,
        el("div", { class: "issues" }, packed.warnings.map(issueRow)),
        el("div", { class: "row" },
          el("a", { class: "btn btn-primary", href, download: "model.tar.gz", dataset: { testid: "pack-download" }, text: "Download model.tar.gz" }),
          el("button", { class: "btn", type: "button", dataset: { testid: "pack-validate" }, onclick: () => onValidate(file), text: "Validate & upload it" })),
        preBlock("config.yaml", packed.config_yaml),
        preBlock("mochi.json", packed.mochi_json),
        preBlock("export_artifacts/manifest.json", packed.manifest_json),
      );
    } catch (error) {
      packResult.replaceChildren(el("p", { class: "failure", text: `Could not build the package: ${error.message}` }));
    }
  });
}
