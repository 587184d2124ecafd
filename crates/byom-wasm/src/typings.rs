//! TypeScript types of the JSON shapes the functions return, emitted into `byom_wasm.d.ts` so
//! other portals embedding the validator get checked types (the shapes are the core's serde
//! types: keep in step with `byom_core::report`, `settings`, `limits` and `torch`).

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Bounds on what a package may contain (byom_core::Limits). */
export interface Limits {
  max_uncompressed_bytes: number;
  max_compression_ratio: number;
  ratio_grace_bytes: number;
  max_metadata_bytes: number;
  max_entries: number;
  max_path_bytes: number;
  max_nesting_depth: number;
  max_yaml_aliases: number;
  max_pickle_bytes: number;
  max_code_bytes: number;
  max_zip_directory_bytes: number;
  max_zip_records: number;
  max_pickle_ops: number;
  max_tensors: number;
  [limit: string]: number;
}

/** The policy a verdict is made under (byom_core::Settings). */
export interface Settings {
  limits: Limits;
  /** Oldest torch that must load the model, "major.minor". */
  required_torch: string;
  /** Operator namespaces the compile server runs ("aten", "prim", "torchvision", ...). */
  operator_namespaces: string[];
}

export type Severity = "error" | "warning";

/** What an issue concerns, derived from its code (byom_core::Category). */
export type Category =
  | "archive"
  | "layout"
  | "config"
  | "mochi"
  | "manifest"
  | "agreement"
  | "safety"
  | "model"
  | "compatibility";

/** One finding (byom_core::Issue). */
export interface Issue {
  /** Stable rule code, e.g. "BYOM101". */
  code: string;
  /** What it concerns: group and colour by this, not by the code's digits. */
  category: Category;
  severity: Severity;
  message: string;
  /** Package-relative path of the file concerned, null for the archive as a whole. */
  file: string | null;
  /** How to fix it. */
  hint: string;
}

/** Found while streaming (byom_core::Event). */
export type ValidationEvent =
  | { event: "entry"; path: string; size: number }
  | ({ event: "issue" } & Issue);

/** What the package declares (byom_core::Summary). */
export interface Summary {
  model_type: string | null;
  input_shape: number[] | null;
  output_shape: number[] | null;
  num_classes: number | null;
  class_names: string[] | null;
  model_file: string | null;
  model_file_bytes: number | null;
  compressed_bytes: number;
  uncompressed_bytes: number;
  entries: string[];
}

export type PtKind =
  | "state_dict"
  | "checkpoint"
  | "torchscript_traced"
  | "torchscript_scripted"
  | "pickled_module"
  | "legacy"
  | "not_pytorch";

/** One tensor of the .pt inventory. */
export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
  [field: string]: unknown;
}

/** What the .pt inspection learned (byom_core::torch::PtInspection). */
export interface PtInspection {
  kind: PtKind;
  file_bytes: number;
  tensors: TensorInfo[];
  parameter_count: number;
  tensor_bytes: number;
  min_torch: string | null;
  /** "resnet18" (a recognised state dict), "timm ConvNeXt" (TorchScript, from its root class). */
  architecture: string | null;
  /** TorchScript: the root module's class. */
  script_class?: ScriptClass | null;
  /** Operators a TorchScript file calls, "namespace::name", sorted. */
  operators: string[];
  /** The root module's forward (TorchScript), as the server will call it. */
  forward: { class: string; params: { name: string; type: string; default: string | null }[]; returns: string | null } | null;
  [field: string]: unknown;
}

/** A TorchScript root class (byom_core::torch::ScriptClass). */
export interface ScriptClass {
  /** As the file names it: "__torch__.timm.models.convnext.ConvNeXt". */
  qualified: string;
  /** "timm.models.convnext"; "" for a class of the exporting script. */
  module: string;
  class: string;
  /** "timm", "torchvision", "ultralytics"; null for the exporting script's own class. */
  library: string | null;
}

/** The verdict on one package: the same JSON as `byom validate --format json`. */
export interface Report {
  valid: boolean;
  errors: Issue[];
  warnings: Issue[];
  summary: Summary;
  model: PtInspection | null;
  settings_hash: string;
  sha256?: string;
  byom_version: string;
}

/** A preprocessing resize, named by axis (byom_core::pack::Resize). */
export interface Resize {
  height: number;
  width: number;
}

/** Options of pack/packDetailed (byom_core::pack::PackOptions; every field optional). */
export interface PackOptions {
  model_type?: string;
  input_shape?: [number, number, number, number];
  output_shape?: number[];
  class_names?: string[];
  num_classes?: number;
  /** Written to manifest.json as [height, width]; default: the input's height and width. */
  resize?: Resize;
  mean?: number[];
  std?: number[];
  channel_order?: "RGB" | "BGR";
  postprocessing?: PostProcessing;
  threshold?: number;
  confidence_threshold?: number;
  nms_threshold?: number;
  name?: string;
  version?: string;
  architecture?: string;
  settings?: Settings;
}

/** What packDetailed returns. */
export interface PackedPackage {
  /** The model.tar.gz bytes. */
  package: Uint8Array;
  pt_name: string;
  inspection: PtInspection;
  warnings: Issue[];
  /** What was inferred rather than declared, in words. */
  inferred: string[];
  config_yaml: string;
  mochi_json: string;
  manifest_json: string;
}

/** What inspectPt returns. */
export interface PtResult {
  inspection: PtInspection;
  issues: Issue[];
}
"#;

/// `PostProcessing`, generated from the core's one list (`postProcessingTypes()` returns the
/// same names at run time).
#[wasm_bindgen(typescript_custom_section)]
const TS_POST_PROCESSING: &'static str = byom_core::package::post_processing::TYPESCRIPT;
