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
    doc: "Images resized to another size than the model's input either fail or get rescaled twice.\n\n\
The order is `[height, width]`, as in `input_shape`. A non-square resize written `[width, height]` \
is reported too, with its own message: the file does not prove the order wrong, but the guide, \
`byom pack` and the page all write `[height, width]`, so it most likely swaps the axes.",
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

/// What every cross-file check reads: the parsed files and their declarations, pulled once.
struct Facts<'a> {
    c: &'a Contents,
    d: Declared,
    /// The declared `[B, C, H, W]` input (mochi's, else the manifest's).
    input: Option<Vec<i64>>,
}

impl Facts<'_> {
    /// manifest.json's `preprocessing` mapping, when there is one.
    fn preprocessing(&self) -> Option<&Value> {
        self.c
            .manifest
            .value()?
            .get("preprocessing")
            .filter(|p| p.is_map())
    }

    /// A key of manifest.json `model_graph.stages[0]`.
    fn graph(&self, key: &str) -> Option<&Value> {
        self.d.graph_stage.as_ref()?.get(key)
    }
}

/// One check per rule, in code order (the order their issues are reported in).
const CHECKS: &[fn(&Facts<'_>, &mut Vec<Issue>)] = &[
    dimension_mismatch,
    input_shape_disagreement,
    stage_type_disagreement,
    output_shape_disagreement,
    num_classes_disagreement,
    class_names_count,
    unusual_channels,
    implausible_output_shape,
    preprocessing_resize_mismatch,
    normalize_invalid,
    channel_order_invalid,
    unknown_postprocessing,
    threshold_out_of_range,
];

/// All cross-file checks.
pub fn check(c: &Contents) -> Vec<Issue> {
    let d = Declared::from(c);
    let input = d.input_shape().map(<[i64]>::to_vec);
    let facts = Facts { c, d, input };
    let mut out = Vec::new();
    for check in CHECKS {
        check(&facts, &mut out);
    }
    out
}

/// Whether `issue` is one of this module's warnings that follow from the input's channel axis
/// alone (BYOM507, BYOM509, BYOM510's channel count). When the model proves that axis wrong
/// (BYOM621, whose message gives the shape to write) they say the same thing again in other
/// words, so the validator leaves them out; BYOM510's non-positive std does not depend on the
/// axis and stays.
pub fn follows_from_channels(issue: &Issue) -> bool {
    issue.code == UNUSUAL_CHANNELS.code
        || issue.code == PREPROCESSING_RESIZE_MISMATCH.code
        || (issue.code == NORMALIZE_INVALID.code && issue.message.contains(NORMALIZE_COUNT))
}

/// The words of BYOM510's channel-count message that [`follows_from_channels`] recognises.
const NORMALIZE_COUNT: &str = "values but the input has";

/// BYOM501.
fn dimension_mismatch(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let d = &f.d;
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
}

/// BYOM502: every declared input shape against the reference.
fn input_shape_disagreement(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let d = &f.d;
    let reference = d
        .mochi_input
        .as_deref()
        .map(|s| (s, "mochi.json stages[0].input_shape"));
    let reference = reference.or(d
        .manifest_input
        .as_deref()
        .map(|s| (s, "manifest.json input_shape")));
    let (Some((refshape, refname)), Some(manifest)) = (reference, f.c.manifest.value()) else {
        return;
    };
    let mut others: Vec<(String, Option<Vec<i64>>)> = vec![
        ("input_shape".into(), d.manifest_input.clone()),
        (
            "model_graph.stages[0].input_shape".into(),
            shape4(f.graph("input_shape")),
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

/// BYOM503.
fn stage_type_disagreement(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let graph_type = f.graph("type").and_then(Value::as_str);
    if let (Some(a), Some(b)) = (f.d.mochi_type.as_deref(), graph_type) {
        if a != b {
            out.push(STAGE_TYPE_DISAGREEMENT.issue(
                Some(MANIFEST),
                format!(
                    "mochi.json stage type is \"{a}\" but manifest.json model_graph says \"{b}\"."
                ),
            ));
        }
    }
}

/// BYOM504.
fn output_shape_disagreement(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let graph_out = f.graph("output_shape").and_then(Value::as_shape);
    if let (Some(a), Some(b)) = (&f.d.mochi_output, &graph_out) {
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
}

/// BYOM505.
fn num_classes_disagreement(f: &Facts<'_>, out: &mut Vec<Issue>) {
    if let (Some(a), Some(b)) = (f.d.config_classes, f.d.mochi_classes) {
        if a != b {
            out.push(NUM_CLASSES_DISAGREEMENT.issue(
                Some(MOCHI),
                format!("config.yaml has num_classes {a} but mochi.json stages[0] has {b}."),
            ));
        }
    }
}

/// BYOM506.
fn class_names_count(f: &Facts<'_>, out: &mut Vec<Issue>) {
    if let (Some(names), Some(n)) = (&f.d.class_names, f.d.num_classes()) {
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
}

/// BYOM507.
fn unusual_channels(f: &Facts<'_>, out: &mut Vec<Issue>) {
    if let Some(s) = &f.input {
        if s[1] != 1 && s[1] != 3 {
            out.push(UNUSUAL_CHANNELS.issue(
                Some(if f.d.mochi_input.is_some() {
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
}

/// BYOM508.
fn implausible_output_shape(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let d = &f.d;
    if let (Some(kind), Some(output)) = (d.stage_type(), d.output_shape()) {
        if let Some(msg) = implausible_output(kind, &output, f.input.as_deref(), d.num_classes()) {
            out.push(IMPLAUSIBLE_OUTPUT_SHAPE.issue(Some(MOCHI), msg));
        }
    }
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

/// BYOM509. `resize` is `[height, width]` (as `input_shape`'s last two) or one number for a
/// square input.
fn preprocessing_resize_mismatch(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let (Some(resize), Some(s)) = (f.preprocessing().and_then(|p| p.get("resize")), &f.input)
    else {
        return;
    };
    let (h, w) = (s[2], s[3]);
    let message = match resize {
        Value::Seq(_) => match resize.as_shape() {
            Some(r) if r == [h, w] => return,
            // Only likely, not proven, wrong: the file does not say which axis comes first,
            // but the guide, `byom pack` and the page all write [height, width].
            Some(r) if r == [w, h] => format!(
                "preprocessing.resize is {resize}, the input's width then height: the order is \
                 [height, width], so it is most likely transposed (the input is {h}x{w}, height \
                 x width: write [{h}, {w}])."
            ),
            _ => mismatch(resize, h, w),
        },
        Value::Int(x) if i128::from(h) == *x && i128::from(w) == *x => return,
        _ => mismatch(resize, h, w),
    };
    out.push(PREPROCESSING_RESIZE_MISMATCH.issue(Some(MANIFEST), message));
}

fn mismatch(resize: &Value, h: i64, w: i64) -> String {
    format!("preprocessing.resize is {resize} but the input is {h}x{w} (height x width).")
}

/// BYOM510.
fn normalize_invalid(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let Some(norm) = f.preprocessing().and_then(|p| p.get("normalize")) else {
        return;
    };
    let channels = f.input.as_ref().map(|s| s[1]);
    for key in ["mean", "std"] {
        let Some(v) = norm.get(key) else { continue };
        let values: Option<Vec<f64>> = v
            .as_seq()
            .and_then(|s| s.iter().map(Value::as_number).collect());
        let Some(values) = values else {
            out.push(NORMALIZE_INVALID.issue(
                Some(MANIFEST),
                format!("preprocessing.normalize.{key} is {v}; it should be a list of numbers."),
            ));
            continue;
        };
        if let Some(ch) = channels.filter(|c| values.len() as i64 != *c) {
            out.push(NORMALIZE_INVALID.issue(
                Some(MANIFEST),
                format!(
                    "preprocessing.normalize.{key} has {} {NORMALIZE_COUNT} {ch} channels.",
                    values.len()
                ),
            ));
        }
        if key == "std" && values.iter().any(|x| *x <= 0.0 || x.is_nan()) {
            out.push(NORMALIZE_INVALID.issue(
                Some(MANIFEST),
                format!(
                    "preprocessing.normalize.std {v} has a value ≤ 0; normalisation divides by it."
                ),
            ));
        }
    }
}

/// BYOM511.
fn channel_order_invalid(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let Some(order) = f.preprocessing().and_then(|p| p.get("channel_order")) else {
        return;
    };
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

/// manifest.json's `postprocessing`, when there is one.
fn postprocessing<'a>(f: &'a Facts<'_>) -> Option<&'a Value> {
    f.c.manifest.value()?.get("postprocessing")
}

/// BYOM512.
fn unknown_postprocessing(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let Some(t) = postprocessing(f).and_then(|p| p.get("type")) else {
        return;
    };
    if t.as_str()
        .and_then(|t| t.parse::<PostProcessing>().ok())
        .is_none()
    {
        out.push(UNKNOWN_POSTPROCESSING.issue(
            Some(MANIFEST),
            format!(
                "postprocessing.type {t} is not one of {}.",
                post_processing::NAMES
            ),
        ));
    }
}

/// BYOM513, in manifest.json's `postprocessing` and mochi.json's first stage.
fn threshold_out_of_range(f: &Facts<'_>, out: &mut Vec<Issue>) {
    let places = [
        (MANIFEST, "postprocessing.", postprocessing(f)),
        (MOCHI, "stages[0].", f.d.mochi_stage.as_ref()),
    ];
    for (file, prefix, map) in places {
        let Some(Value::Map(entries)) = map else {
            continue;
        };
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
}
