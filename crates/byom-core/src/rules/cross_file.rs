//! Agreement between files (`BYOM5xx`): image size vs input shape, the four places an input
//! shape is declared, stage type, output shape, classes, and pre/post-processing plausibility.
//! This is where the reference portal is weakest: each file can be valid alone and the package
//! still cannot work.

use crate::package::contents::{CONFIG, MANIFEST, MOCHI};
use crate::package::declared::shape4;
use crate::package::post_processing::{
    self, post_processing_names, post_processing_names_code, PostProcessing,
};
/// Moved to [`crate::package::Declared`]; re-exported for existing callers.
pub use crate::package::Declared;
use crate::package::{Contents, Value};
use crate::report::Issue;
use crate::report::Severity::{Error, Warning};
use crate::rules::Rule;

pub const DIMENSION_MISMATCH: Rule = Rule {
    code: "BYOM501",
    name: "dimension-mismatch",
    severity: Error,
    summary: "config.yaml's image size differs from mochi.json's input_shape.",
    hint: "Make image_width equal input_shape[3] and image_height equal input_shape[2].",
    doc: "Dimension mismatch: config.yaml has {W}x{H}, but input_shape is [_, _, {h}, {w}]. \
Image dimensions must match.\n\nNote the order: input_shape is [batch, channels, height, width].",
};

pub const INPUT_SHAPE_DISAGREEMENT: Rule = Rule {
    code: "BYOM502",
    name: "input-shape-disagreement",
    severity: Error,
    summary: "The input shapes declared in mochi.json and manifest.json disagree.",
    hint: "Use one input shape everywhere: mochi stages[0].input_shape, manifest input_shape, model_graph.stages[0].input_shape and data_input_config.input.",
    doc: "The shape is declared up to four times. The compiler uses `data_input_config.input`, \
the edge runtime `mochi.json`; if they differ the compiled model rejects its input.",
};

pub const STAGE_TYPE_DISAGREEMENT: Rule = Rule {
    code: "BYOM503",
    name: "stage-type-disagreement",
    severity: Error,
    summary: "mochi.json and manifest.json name different stage types.",
    hint: "Use the same \"type\" in mochi.json stages[0] and manifest.json model_graph.stages[0].",
    doc: "The stage type decides how outputs are post-processed; two different types cannot \
both be right.",
};

pub const OUTPUT_SHAPE_DISAGREEMENT: Rule = Rule {
    code: "BYOM504",
    name: "output-shape-disagreement",
    severity: Error,
    summary: "mochi.json and manifest.json give different output shapes.",
    hint: "Use the same output_shape in both files (or leave it out of one).",
    doc: "Checked only when both files give `output_shape`.",
};

pub const NUM_CLASSES_DISAGREEMENT: Rule = Rule {
    code: "BYOM505",
    name: "num-classes-disagreement",
    severity: Error,
    summary: "config.yaml and mochi.json give different num_classes.",
    hint: "Use the same num_classes in config.yaml's dataset and mochi.json's stage.",
    doc: "Checked only when both files give `num_classes`.",
};

pub const CLASS_NAMES_COUNT: Rule = Rule {
    code: "BYOM506",
    name: "class-names-count",
    severity: Error,
    summary: "class_names has a different number of entries than num_classes.",
    hint: "List exactly one name per class in class_names.",
    doc: "The reference portal accepts `num_classes: 5` with three names; predictions of the \
missing classes then have no label.",
};

pub const UNUSUAL_CHANNELS: Rule = Rule {
    code: "BYOM507",
    name: "unusual-channels",
    severity: Warning,
    summary: "The input has a channel count other than 1 (grey) or 3 (RGB/BGR).",
    hint: "input_shape is [batch, channels, height, width]: channels is usually 3. Check the order (NCHW, not NHWC).",
    doc: "`[1, 224, 224, 3]` (channels last) is a common mistake; cameras deliver 1 or 3 channels.",
};

pub const IMPLAUSIBLE_OUTPUT_SHAPE: Rule = Rule {
    code: "BYOM508",
    name: "implausible-output-shape",
    severity: Warning,
    summary: "output_shape does not fit the stage type and the number of classes.",
    hint: "classification/anomaly_detection: [B, num_classes]; semantic_segmentation: [B, num_classes, H, W]; YOLO detection: [B, 4 + num_classes, anchors].",
    doc: "Plausible shapes by stage type:\n\n\
- `classification`, `multi_class_classification`, `anomaly_detection`: `[B, N]` (N = num_classes \
for classification)\n\
- `semantic_segmentation`: `[B, N, H, W]` with H, W from input_shape\n\
- `*object_detection*` (YOLO): `[B, 4 + N, anchors]` (or channels last, or `[B, K, 6]` after NMS)\n\n\
The guide's own YOLO example declares `[1, 84, 8400]` with 5 classes: 84 = 4 box coordinates + \
80 COCO classes, the pretrained default; a 5-class model outputs 9 channels. Other stage types \
are not checked.",
};

pub const PREPROCESSING_RESIZE_MISMATCH: Rule = Rule {
    code: "BYOM509",
    name: "preprocessing-resize-mismatch",
    severity: Warning,
    summary: "preprocessing.resize differs from the input height and width.",
    hint: "Set preprocessing.resize to [height, width] of input_shape.",
    doc: "Images resized to another size than the model's input either fail or get rescaled twice.",
};

pub const NORMALIZE_INVALID: Rule = Rule {
    code: "BYOM510",
    name: "normalize-invalid",
    severity: Warning,
    summary: "preprocessing.normalize has the wrong number of values or a non-positive std.",
    hint: "Give one mean and one std per channel (3 for RGB), every std > 0, e.g. mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225].",
    doc: "Normalisation divides by `std`: zero or negative values break inference, and a count \
other than the channel count cannot be applied.",
};

pub const CHANNEL_ORDER_INVALID: Rule = Rule {
    code: "BYOM511",
    name: "channel-order-invalid",
    severity: Warning,
    summary: "preprocessing.channel_order is not RGB or BGR.",
    hint: "Set \"channel_order\": \"RGB\" (torchvision, most training code) or \"BGR\" (OpenCV).",
    doc: "Only `RGB` and `BGR` are understood by the edge runtime.",
};

pub const UNKNOWN_POSTPROCESSING: Rule = Rule {
    code: "BYOM512",
    name: "unknown-postprocessing",
    severity: Warning,
    summary: "postprocessing.type is not one the runtime knows.",
    hint: concat!("Use one of: ", post_processing_names!(), "."),
    doc: concat!(
        "Known types: ",
        post_processing_names_code!(),
        ". Others are passed through but probably ignored."
    ),
};

pub const THRESHOLD_OUT_OF_RANGE: Rule = Rule {
    code: "BYOM513",
    name: "threshold-out-of-range",
    severity: Warning,
    summary: "A threshold is not a number between 0 and 1.",
    hint: "Thresholds are probabilities: use a value between 0 and 1, e.g. 0.5.",
    doc: "Checked for every key ending in `threshold` in manifest.json's `postprocessing` and \
mochi.json's first stage.",
};

pub const ALL: &[&Rule] = &[
    &DIMENSION_MISMATCH,
    &INPUT_SHAPE_DISAGREEMENT,
    &STAGE_TYPE_DISAGREEMENT,
    &OUTPUT_SHAPE_DISAGREEMENT,
    &NUM_CLASSES_DISAGREEMENT,
    &CLASS_NAMES_COUNT,
    &UNUSUAL_CHANNELS,
    &IMPLAUSIBLE_OUTPUT_SHAPE,
    &PREPROCESSING_RESIZE_MISMATCH,
    &NORMALIZE_INVALID,
    &CHANNEL_ORDER_INVALID,
    &UNKNOWN_POSTPROCESSING,
    &THRESHOLD_OUT_OF_RANGE,
];

fn show(shape: &[i64]) -> String {
    let parts: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// All cross-file checks.
pub fn check(c: &Contents) -> Vec<Issue> {
    let d = Declared::from(c);
    let mut out = Vec::new();

    // BYOM501
    if let (Some(w), Some(h), Some(s)) = (d.width, d.height, d.mochi_input.as_deref()) {
        if w as i64 != s[3] || h as i64 != s[2] {
            out.push(DIMENSION_MISMATCH.issue(
                Some(CONFIG),
                format!(
                    "Dimension mismatch: config.yaml has {w}x{h}, but input_shape is [_, _, {}, {}]. Image dimensions must match.",
                    s[2], s[3]
                ),
            ));
        }
    }

    // BYOM502: every declared input shape against the reference.
    let reference = d
        .mochi_input
        .as_deref()
        .map(|s| (s, "mochi.json stages[0].input_shape"));
    let reference = reference.or(d
        .manifest_input
        .as_deref()
        .map(|s| (s, "manifest.json input_shape")));
    if let (Some((refshape, refname)), Some(manifest)) = (reference, c.manifest.value()) {
        let mut others: Vec<(String, Option<Vec<i64>>)> = vec![
            ("input_shape".into(), d.manifest_input.clone()),
            (
                "model_graph.stages[0].input_shape".into(),
                shape4(d.graph_stage.as_ref().and_then(|s| s.get("input_shape"))),
            ),
        ];
        if let Some(models) = manifest.get("compilable_models").and_then(Value::as_seq) {
            for (i, m) in models.iter().enumerate() {
                others.push((
                    format!("compilable_models[{i}].data_input_config.input"),
                    shape4(m.path(&["data_input_config", "input"])),
                ));
            }
        }
        for (name, shape) in others {
            let full = format!("manifest.json {name}");
            if full == refname {
                continue;
            }
            if let Some(shape) = shape.filter(|s| s.as_slice() != refshape) {
                out.push(INPUT_SHAPE_DISAGREEMENT.issue(
                    Some(MANIFEST),
                    format!(
                        "{full} is {} but {refname} is {}.",
                        show(&shape),
                        show(refshape)
                    ),
                ));
            }
        }
    }

    // BYOM503
    let graph_type = d
        .graph_stage
        .as_ref()
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str);
    if let (Some(a), Some(b)) = (d.mochi_type.as_deref(), graph_type) {
        if a != b {
            out.push(STAGE_TYPE_DISAGREEMENT.issue(
                Some(MANIFEST),
                format!(
                    "mochi.json stage type is \"{a}\" but manifest.json model_graph says \"{b}\"."
                ),
            ));
        }
    }

    // BYOM504
    let graph_out = d
        .graph_stage
        .as_ref()
        .and_then(|s| s.get("output_shape"))
        .and_then(Value::as_shape);
    if let (Some(a), Some(b)) = (&d.mochi_output, &graph_out) {
        if a != b {
            out.push(OUTPUT_SHAPE_DISAGREEMENT.issue(
                Some(MANIFEST),
                format!(
                    "mochi.json output_shape is {} but manifest.json model_graph says {}.",
                    show(a),
                    show(b)
                ),
            ));
        }
    }

    // BYOM505
    if let (Some(a), Some(b)) = (d.config_classes, d.mochi_classes) {
        if a != b {
            out.push(NUM_CLASSES_DISAGREEMENT.issue(
                Some(MOCHI),
                format!("config.yaml has num_classes {a} but mochi.json stages[0] has {b}."),
            ));
        }
    }

    // BYOM506
    if let (Some(names), Some(n)) = (&d.class_names, d.num_classes()) {
        if names.len() as u64 != n {
            out.push(CLASS_NAMES_COUNT.issue(
                Some(CONFIG),
                format!(
                    "class_names has {} entries but num_classes is {n}.",
                    names.len()
                ),
            ));
        }
    }

    let input = d.input_shape().map(<[i64]>::to_vec);
    // BYOM507
    if let Some(s) = &input {
        if s[1] != 1 && s[1] != 3 {
            out.push(UNUSUAL_CHANNELS.issue(
                Some(if d.mochi_input.is_some() {
                    MOCHI
                } else {
                    MANIFEST
                }),
                format!(
                    "input_shape {} has {} channels; images have 1 or 3.",
                    show(s),
                    s[1]
                ),
            ));
        }
    }

    // BYOM508
    if let (Some(kind), Some(output)) = (d.stage_type(), d.output_shape()) {
        if let Some(msg) = implausible_output(kind, &output, input.as_deref(), d.num_classes()) {
            out.push(IMPLAUSIBLE_OUTPUT_SHAPE.issue(Some(MOCHI), msg));
        }
    }

    if let Some(manifest) = c.manifest.value() {
        check_preprocessing(manifest, input.as_deref(), &mut out);
        if let Some(post) = manifest.get("postprocessing") {
            check_postprocessing(post, &mut out);
        }
    }
    if let Some(stage) = &d.mochi_stage {
        check_thresholds(MOCHI, "stages[0].", stage, &mut out);
    }
    out
}

fn implausible_output(
    kind: &str,
    out: &[i64],
    input: Option<&[i64]>,
    classes: Option<u64>,
) -> Option<String> {
    let kind_l = kind.to_ascii_lowercase();
    let n = classes.map(|n| n as i64);
    let shown = show(out);
    match kind_l.as_str() {
        "classification" | "multi_class_classification" | "anomaly_detection" => {
            if out.len() != 2 {
                return Some(format!(
                    "output_shape {shown} for a {kind} stage should be [batch, classes]."
                ));
            }
            match n {
                Some(n) if kind_l != "anomaly_detection" && out[1] != n => Some(format!(
                    "output_shape {shown} gives {} scores but there are {n} classes.",
                    out[1]
                )),
                _ => None,
            }
        }
        "semantic_segmentation" => {
            if out.len() != 4 {
                return Some(format!(
                    "output_shape {shown} for semantic_segmentation should be [batch, classes, height, width]."
                ));
            }
            if let Some(n) = n.filter(|n| out[1] != *n) {
                return Some(format!(
                    "output_shape {shown} has {} channels but there are {n} classes.",
                    out[1]
                ));
            }
            if let Some(s) = input.filter(|s| s[2] != out[2] || s[3] != out[3]) {
                return Some(format!(
                    "output_shape {shown} is not the input size {}x{} (height x width).",
                    s[2], s[3]
                ));
            }
            None
        }
        k if k.contains("object_detection") || k.contains("yolo") => {
            if out.len() != 3 {
                return Some(format!(
                    "output_shape {shown} for {kind} should be [batch, 4 + classes, anchors] (YOLO)."
                ));
            }
            let n = n?;
            let expected = 4 + n;
            // Channels first (YOLOv8 style), channels last, or post-NMS [B, K, 6].
            if out[1] == expected || out[2] == expected || out[2] == 6 {
                return None;
            }
            if (out[1] == 84 || out[2] == 84) && n != 80 {
                return Some(format!(
                    "output_shape {shown} declares 84 channels = 4 box coordinates + 80 classes (the COCO \
                     default of a pretrained YOLO), but this model has {n} classes: expected {expected} \
                     = 4 + {n}, i.e. [{}, {expected}, {}].",
                    out[0], out[2]
                ));
            }
            Some(format!(
                "output_shape {shown} should have 4 + {n} = {expected} channels for {n} classes."
            ))
        }
        _ => None,
    }
}

fn check_preprocessing(manifest: &Value, input: Option<&[i64]>, out: &mut Vec<Issue>) {
    let Some(pre) = manifest.get("preprocessing").filter(|p| p.is_map()) else {
        return;
    };
    if let (Some(resize), Some(s)) = (pre.get("resize"), input) {
        let (h, w) = (s[2], s[3]);
        let ok = match resize {
            Value::Seq(_) => resize
                .as_shape()
                .is_some_and(|r| r == [h, w] || r == [w, h]),
            Value::Int(x) => i128::from(h) == *x && i128::from(w) == *x,
            _ => false,
        };
        if !ok {
            out.push(PREPROCESSING_RESIZE_MISMATCH.issue(
                Some(MANIFEST),
                format!(
                    "preprocessing.resize is {resize} but the input is {h}x{w} (height x width)."
                ),
            ));
        }
    }
    if let Some(norm) = pre.get("normalize") {
        let channels = input.map(|s| s[1]);
        for key in ["mean", "std"] {
            let Some(v) = norm.get(key) else { continue };
            let values: Option<Vec<f64>> = v
                .as_seq()
                .and_then(|s| s.iter().map(Value::as_number).collect());
            let Some(values) = values else {
                out.push(NORMALIZE_INVALID.issue(
                    Some(MANIFEST),
                    format!(
                        "preprocessing.normalize.{key} is {v}; it should be a list of numbers."
                    ),
                ));
                continue;
            };
            if let Some(ch) = channels.filter(|c| values.len() as i64 != *c) {
                out.push(NORMALIZE_INVALID.issue(
                    Some(MANIFEST),
                    format!("preprocessing.normalize.{key} has {} values but the input has {ch} channels.", values.len()),
                ));
            }
            if key == "std" && values.iter().any(|x| *x <= 0.0 || x.is_nan()) {
                out.push(NORMALIZE_INVALID.issue(
                    Some(MANIFEST),
                    format!("preprocessing.normalize.std {v} has a value ≤ 0; normalisation divides by it."),
                ));
            }
        }
    }
    if let Some(order) = pre.get("channel_order") {
        if !order
            .as_str()
            .is_some_and(|o| o.eq_ignore_ascii_case("rgb") || o.eq_ignore_ascii_case("bgr"))
        {
            out.push(CHANNEL_ORDER_INVALID.issue(
                Some(MANIFEST),
                format!("preprocessing.channel_order is {order}; use \"RGB\" or \"BGR\"."),
            ));
        }
    }
}

fn check_postprocessing(post: &Value, out: &mut Vec<Issue>) {
    if let Some(t) = post.get("type") {
        let known = t.as_str().and_then(|t| t.parse::<PostProcessing>().ok());
        if known.is_none() {
            out.push(UNKNOWN_POSTPROCESSING.issue(
                Some(MANIFEST),
                format!(
                    "postprocessing.type {t} is not one of {}.",
                    post_processing::NAMES
                ),
            ));
        }
    }
    check_thresholds(MANIFEST, "postprocessing.", post, out);
}

fn check_thresholds(file: &str, prefix: &str, map: &Value, out: &mut Vec<Issue>) {
    let Value::Map(entries) = map else { return };
    for (k, v) in entries {
        if !k.ends_with("threshold") {
            continue;
        }
        if !v.as_number().is_some_and(|x| (0.0..=1.0).contains(&x)) {
            out.push(THRESHOLD_OUT_OF_RANGE.issue(
                Some(file),
                format!("{prefix}{k} is {v}; thresholds must be between 0 and 1."),
            ));
        }
    }
}
