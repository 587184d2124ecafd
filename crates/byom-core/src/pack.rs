//! Building a valid package from a bare `.pt` and declared metadata (used by `byom pack` and the
//! browser's package builder).
//!
//! Why in the core: the CLI and the page must write the same three metadata files the same way,
//! and refuse the same files. The `.pt` is inspected first; an unsafe or unusable file
//! (any inspection error) is refused with the inspection's issues. What can be inferred safely is
//! inferred: the number of classes from a recognised classifier head when no class names are
//! given, the output shape of a classifier. The archive is deterministic (mode 0644, mtime 0,
//! owner 0, fixed order), so the same inputs always give the same bytes.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::package::PostProcessing;
use crate::report::{Issue, Severity};
use crate::settings::Settings;
use crate::torch::{self, PtInspection};

/// The size images are resized to before inference, named by axis so that no caller can swap
/// them: written to `manifest.json` as `[height, width]` (the order of `input_shape`'s last two
/// dimensions and of BYOM509's check). The CLI takes `--resize H,W`, the page sends
/// `{"height": .., "width": ..}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resize {
    pub height: u64,
    pub width: u64,
}

impl<'de> Deserialize<'de> for Resize {
    /// Only `{"height": .., "width": ..}`: serde's derived impl would also take `[a, b]`, the
    /// very form whose order was ambiguous.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            height: u64,
            width: u64,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Resize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object {\"height\": H, \"width\": W}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Resize, A::Error> {
                let n = Named::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Resize {
                    height: n.height,
                    width: n.width,
                })
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Everything the guide's metadata carries, as a user would declare it.
///
/// Also the page's JSON contract (the wasm face deserialises it directly): every field is
/// optional there (missing ones take [`PackOptions::default`]), and an unknown field is refused
/// so a typo never silently drops what the user declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PackOptions {
    /// Stage type (`classification`, `object_detection`, `anomaly_detection`, ...).
    pub model_type: String,
    /// `[batch, channels, height, width]`.
    pub input_shape: Vec<i64>,
    /// Declared output shape; inferred for classifiers when `None`.
    pub output_shape: Option<Vec<i64>>,
    /// Class names; when empty, `num_classes` (or the model's classifier) gives the count.
    pub class_names: Vec<String>,
    pub num_classes: Option<u64>,
    /// Preprocessing resize; defaults to the input size when any preprocessing is given.
    pub resize: Option<Resize>,
    pub mean: Option<Vec<f64>>,
    pub std: Option<Vec<f64>>,
    /// `RGB` or `BGR`.
    pub channel_order: Option<String>,
    pub postprocessing: Option<PostProcessing>,
    pub threshold: Option<f64>,
    pub confidence_threshold: Option<f64>,
    pub nms_threshold: Option<f64>,
    /// model_info.
    pub name: Option<String>,
    pub version: Option<String>,
    pub architecture: Option<String>,
    /// Policy the `.pt` is inspected under.
    pub settings: Settings,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            model_type: "classification".into(),
            input_shape: vec![1, 3, 224, 224],
            output_shape: None,
            class_names: Vec::new(),
            num_classes: None,
            resize: None,
            mean: None,
            std: None,
            channel_order: None,
            postprocessing: None,
            threshold: None,
            confidence_threshold: None,
            nms_threshold: None,
            name: None,
            version: None,
            architecture: None,
            settings: Settings::default(),
        }
    }
}

impl PackOptions {
    /// The options as JSON (the page's contract: see the type's documentation). The wasm face
    /// reads them with exactly this, so a test of it natively is a test of the page's path.
    pub fn from_json(json: &str) -> Result<PackOptions, PackError> {
        serde_json::from_str(json).map_err(|e| PackError::Invalid(format!("pack options: {e}")))
    }
}

/// Why a package was not built.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The options themselves are wrong (shape, class count, names).
    #[error("invalid option: {0}")]
    Invalid(String),
    /// The `.pt` is unsafe or unusable; the inspection's errors say why.
    #[error("refusing to pack {file}: {}", .issues.iter().map(|i| format!("[{}] {}", i.code, i.message)).collect::<Vec<_>>().join("; "))]
    Refused { file: String, issues: Vec<Issue> },
    #[error("could not write the archive: {0}")]
    Archive(String),
}

/// A built package and what was learned on the way.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The `.tar.gz`.
    pub tar_gz: Vec<u8>,
    /// Name of the `.pt` inside `export_artifacts/`.
    pub pt_name: String,
    pub inspection: PtInspection,
    /// Warnings from the inspection and the cross-checks (the package is still valid).
    pub warnings: Vec<Issue>,
    /// What was inferred rather than declared, in words.
    pub inferred: Vec<String>,
    pub config_yaml: String,
    pub mochi_json: String,
    pub manifest_json: String,
}

/// Build a package; returns the `.tar.gz` bytes.
pub fn pack(pt_bytes: &[u8], pt_name: &str, opts: &PackOptions) -> Result<Vec<u8>, PackError> {
    pack_with_details(pt_bytes, pt_name, opts).map(|p| p.tar_gz)
}

/// Build a package and say what was inferred and warned about.
pub fn pack_with_details(
    pt_bytes: &[u8],
    pt_name: &str,
    opts: &PackOptions,
) -> Result<Packed, PackError> {
    let shape = &opts.input_shape;
    if shape.len() != 4 || shape.iter().any(|&d| d <= 0) {
        return Err(PackError::Invalid(format!(
            "input shape {shape:?} must be four positive integers [batch, channels, height, width]"
        )));
    }
    let (height, width) = (shape[2], shape[3]);
    if let Some(r) = opts.resize.filter(|r| r.height == 0 || r.width == 0) {
        return Err(PackError::Invalid(format!(
            "resize {}x{} (height x width) must be positive",
            r.height, r.width
        )));
    }
    let pt_name = pt_file_name(pt_name)?;
    let path = format!("export_artifacts/{pt_name}");

    let (mut inspection, issues) = torch::inspect_bytes(pt_bytes, &opts.settings, &path);
    let errors: Vec<Issue> = issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(PackError::Refused {
            file: pt_name,
            issues: errors,
        });
    }
    let mut warnings: Vec<Issue> = issues;
    let mut inferred = Vec::new();

    // Classes: declared names, else a declared count, else the recognised classifier head.
    let num_classes = if !opts.class_names.is_empty() {
        let n = opts.class_names.len() as u64;
        if let Some(c) = opts.num_classes.filter(|&c| c != n) {
            return Err(PackError::Invalid(format!(
                "{n} class names given but num_classes is {c}"
            )));
        }
        Some(n)
    } else if let Some(n) = opts.num_classes {
        Some(n)
    } else if let Some(a) = &inspection.arch {
        inferred.push(format!(
            "num_classes = {} from the {} classifier head",
            a.num_classes, a.name
        ));
        Some(a.num_classes)
    } else if let Some(h) = torch::head::find(&inspection).filter(|h| h.proven()) {
        inferred.push(format!(
            "num_classes = {} from the classifier head {}",
            h.outputs, h.tensor
        ));
        Some(h.outputs)
    } else {
        None
    };
    if num_classes == Some(0) {
        return Err(PackError::Invalid("num_classes must be positive".into()));
    }
    if opts.class_names.iter().any(|c| c.trim().is_empty()) {
        return Err(PackError::Invalid("class names must not be empty".into()));
    }
    // Twins (builders with these very tensors): `--architecture` chooses as model_info does;
    // without it the first twin is written below, and the warning (BYOM616) says so here,
    // where the user can still pass `--architecture`.
    warnings.extend(torch::twins::choose(
        &mut inspection,
        opts.architecture.as_deref(),
        &path,
    ));
    // What the validator would call an error (a class count the head proves wrong) is refused
    // here with the same message, so `pack` never writes a package that fails validation.
    let (refused, checked): (Vec<Issue>, Vec<Issue>) =
        torch::cross_check(&inspection, &path, Some(shape), num_classes)
            .into_iter()
            .partition(|i| i.severity == Severity::Error);
    if !refused.is_empty() {
        return Err(PackError::Refused {
            file: pt_name,
            issues: refused,
        });
    }
    warnings.extend(checked);

    let output_shape = match (&opts.output_shape, num_classes) {
        (Some(o), _) => Some(o.clone()),
        (None, Some(n)) if is_classification(&opts.model_type) => {
            inferred.push(format!(
                "output_shape = [{}, {n}] for a classifier",
                shape[0]
            ));
            Some(vec![shape[0], n as i64])
        }
        _ => None,
    };
    let architecture = opts.architecture.clone().or_else(|| {
        inspection
            .architecture
            .clone()
            .inspect(|a| inferred.push(format!("model_info.architecture = {a} (recognised)")))
    });

    let config_yaml = config_yaml(width, height, num_classes, &opts.class_names);
    let stage = stage(opts, shape, output_shape.as_deref(), num_classes, true);
    let mut info = Map::new();
    info.insert(
        "name".into(),
        json!(opts
            .name
            .clone()
            .unwrap_or_else(|| stem(&pt_name).to_string())),
    );
    info.insert(
        "version".into(),
        json!(opts.version.clone().unwrap_or_else(|| "1.0.0".into())),
    );
    info.insert("framework".into(), json!("pytorch"));
    if let Some(a) = &architecture {
        info.insert("architecture".into(), json!(a));
    }
    let mochi = json!({ "stages": [stage], "model_info": Value::Object(info) });

    let mut manifest = Map::new();
    manifest.insert(
        "model_graph".into(),
        json!({ "stages": [self::stage(opts, shape, output_shape.as_deref(), None, false)] }),
    );
    manifest.insert("input_shape".into(), json!(shape));
    manifest.insert(
        "compilable_models".into(),
        json!([{ "filename": pt_name, "data_input_config": { "input": shape }, "framework": "PYTORCH" }]),
    );
    if let Some(p) = preprocessing(opts, height, width) {
        manifest.insert("preprocessing".into(), p);
    }
    if let Some(p) = postprocessing(opts) {
        manifest.insert("postprocessing".into(), p);
    }
    let mochi_json = pretty(&mochi)?;
    let manifest_json = pretty(&Value::Object(manifest))?;

    let tar_gz = write_archive(&[
        ("config.yaml", config_yaml.as_bytes()),
        ("mochi.json", mochi_json.as_bytes()),
        ("export_artifacts/manifest.json", manifest_json.as_bytes()),
        (path.as_str(), pt_bytes),
    ])?;
    Ok(Packed {
        tar_gz,
        pt_name,
        inspection,
        warnings,
        inferred,
        config_yaml,
        mochi_json,
        manifest_json,
    })
}

fn is_classification(t: &str) -> bool {
    t.contains("classification") || t == "anomaly_detection"
}

/// The `.pt` name inside the package: the base name, with a `.pt` extension.
fn pt_file_name(name: &str) -> Result<String, PackError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).trim();
    if base.is_empty() || base.starts_with('.') {
        return Err(PackError::Invalid(format!(
            "{name:?} is not a usable file name for the model"
        )));
    }
    if base.ends_with(".pt") {
        return Ok(base.to_string());
    }
    Ok(format!("{}.pt", stem(base)))
}

fn stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s,
        _ => name,
    }
}

/// config.yaml; strings are written as JSON strings, which YAML reads as double-quoted scalars.
fn config_yaml(width: i64, height: i64, num_classes: Option<u64>, names: &[String]) -> String {
    let mut s = format!("dataset:\n  image_width: {width}\n  image_height: {height}\n");
    if let Some(n) = num_classes {
        s.push_str(&format!("  num_classes: {n}\n"));
    }
    if !names.is_empty() {
        s.push_str("  class_names:\n");
        for n in names {
            s.push_str(&format!("    - {}\n", Value::String(n.clone())));
        }
    }
    s
}

fn stage(
    opts: &PackOptions,
    shape: &[i64],
    output: Option<&[i64]>,
    num_classes: Option<u64>,
    full: bool,
) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(opts.model_type));
    m.insert("input_shape".into(), json!(shape));
    if let Some(o) = output {
        m.insert("output_shape".into(), json!(o));
    }
    if full {
        if let Some(n) = num_classes {
            m.insert("num_classes".into(), json!(n));
        }
        if let Some(t) = opts.confidence_threshold {
            m.insert("confidence_threshold".into(), json!(t));
        }
        if let Some(t) = opts.nms_threshold {
            m.insert("nms_threshold".into(), json!(t));
        }
        if opts.model_type == "anomaly_detection" {
            if let Some(t) = opts.threshold {
                m.insert("anomaly_threshold".into(), json!(t));
            }
        }
    }
    Value::Object(m)
}

fn preprocessing(opts: &PackOptions, height: i64, width: i64) -> Option<Value> {
    if opts.resize.is_none()
        && opts.mean.is_none()
        && opts.std.is_none()
        && opts.channel_order.is_none()
    {
        return None;
    }
    let mut m = Map::new();
    // [height, width], as BYOM509 reads it.
    let resize = match opts.resize {
        Some(r) => json!([r.height, r.width]),
        None => json!([height, width]),
    };
    m.insert("resize".into(), resize);
    if opts.mean.is_some() || opts.std.is_some() {
        let c = usize::try_from(opts.input_shape.get(1).copied().unwrap_or(3)).unwrap_or(3);
        m.insert(
            "normalize".into(),
            json!({
                "mean": opts.mean.clone().unwrap_or_else(|| vec![0.0; c]),
                "std": opts.std.clone().unwrap_or_else(|| vec![1.0; c]),
            }),
        );
    }
    m.insert(
        "channel_order".into(),
        json!(opts.channel_order.clone().unwrap_or_else(|| "RGB".into())),
    );
    Some(Value::Object(m))
}

fn postprocessing(opts: &PackOptions) -> Option<Value> {
    let t = opts.postprocessing.as_ref()?;
    let mut m = Map::new();
    m.insert("type".into(), json!(t.as_str()));
    if let Some(v) = opts.threshold {
        m.insert("threshold".into(), json!(v));
    }
    if let Some(v) = opts.confidence_threshold {
        m.insert("confidence_threshold".into(), json!(v));
    }
    if let Some(v) = opts.nms_threshold {
        m.insert("nms_threshold".into(), json!(v));
    }
    Some(Value::Object(m))
}

fn pretty(v: &Value) -> Result<String, PackError> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| PackError::Archive(e.to_string()))
}

/// A deterministic `.tar.gz` of regular files (no directory entries, no fs metadata), written
/// by the core's one tar writer straight into the compressor (the `.pt` is not copied again).
fn write_archive(files: &[(&str, &[u8])]) -> Result<Vec<u8>, PackError> {
    use crate::archive::ustar;
    let err = |e: std::io::Error| PackError::Archive(e.to_string());
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
    for (name, data) in files {
        let header = ustar::header(name, data.len() as u64)
            .map_err(|e| PackError::Archive(e.to_string()))?;
        gz.write_all(&header).map_err(err)?;
        gz.write_all(data).map_err(err)?;
        gz.write_all(ustar::padding(data.len() as u64))
            .map_err(err)?;
    }
    gz.write_all(&ustar::END_OF_ARCHIVE).map_err(err)?;
    gz.finish().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_non_pytorch_file() {
        let e = pack(
            b"not a model at all, just text",
            "model.pt",
            &PackOptions::default(),
        );
        assert!(matches!(e, Err(PackError::Refused { .. })), "{e:?}");
    }

    #[test]
    fn refuses_a_malicious_pickle() {
        let e = pack(
            b"cos\nsystem\n(S'echo hi'\ntR.",
            "model.pt",
            &PackOptions::default(),
        );
        match e {
            Err(PackError::Refused { issues, .. }) => assert_eq!(issues[0].code, "BYOM602"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_shapes_and_names() {
        let o = PackOptions {
            input_shape: vec![1, 3, 224],
            ..PackOptions::default()
        };
        assert!(matches!(pack(b"", "m.pt", &o), Err(PackError::Invalid(_))));
        assert!(matches!(pt_file_name(".pt"), Err(PackError::Invalid(_))));
        assert_eq!(
            pt_file_name("dir/model.pth").ok().as_deref(),
            Some("model.pt")
        );
    }

    const TINY_PT: &[u8] = include_bytes!("../tests/data/tiny_traced.pt");

    /// What the page's builder sends for a 256x320 (height x width) model, with every
    /// preprocessing field it sets (web/builder.js `packOptions`).
    const PAGE_JSON: &str = include_str!("../tests/data/page_pack_options.json");

    fn non_square() -> PackOptions {
        PackOptions {
            input_shape: vec![1, 3, 256, 320],
            class_names: vec!["good".into(), "defect".into()],
            num_classes: Some(2),
            resize: Some(Resize {
                height: 256,
                width: 320,
            }),
            mean: Some(vec![0.485, 0.456, 0.406]),
            std: Some(vec![0.229, 0.224, 0.225]),
            channel_order: Some("RGB".into()),
            postprocessing: Some(PostProcessing::Softmax),
            ..PackOptions::default()
        }
    }

    #[test]
    fn page_json_is_the_same_options_as_the_struct() {
        assert_eq!(PackOptions::from_json(PAGE_JSON).unwrap(), non_square());
        assert_eq!(
            PackOptions::from_json("{}").unwrap(),
            PackOptions::default()
        );
    }

    #[test]
    fn resize_is_written_height_then_width_and_passes_byom509() {
        let p = pack_with_details(TINY_PT, "model.pt", &non_square()).unwrap();
        let manifest: Value = serde_json::from_str(&p.manifest_json).unwrap();
        assert_eq!(manifest["preprocessing"]["resize"], json!([256, 320]));
        assert_eq!(manifest["postprocessing"]["type"], "softmax");
        assert!(p
            .config_yaml
            .contains("image_width: 320\n  image_height: 256\n"));
        // The defaulted resize (preprocessing without resize) is the input's [height, width].
        let o = PackOptions {
            resize: None,
            ..non_square()
        };
        let p2 = pack_with_details(TINY_PT, "model.pt", &o).unwrap();
        assert_eq!(p2.manifest_json, p.manifest_json);
        // The validator finds nothing to warn about in the preprocessing.
        let mut v = crate::Validator::new(&Settings::default());
        v.feed(&p.tar_gz);
        let report = v.finish();
        assert!(report.valid, "{:?}", report.errors);
        assert!(
            report.warnings.iter().all(|w| w.code != "BYOM509"),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn bad_page_options_are_refused_with_the_field_named() {
        for (json, needle) in [
            (
                r#"{"resize": [256, 320]}"#,
                "expected an object {\"height\": H, \"width\": W}",
            ),
            (r#"{"resize": {"height": 256}}"#, "missing field `width`"),
            (r#"{"resize": {"h": 256, "w": 320}}"#, "unknown field `h`"),
            (
                r#"{"postprocessing": "sigmoid"}"#,
                "unknown post-processing \"sigmoid\"",
            ),
            (
                r#"{"settings": {"required_torch": "banana"}}"#,
                "\"banana\" is not a torch version",
            ),
            (
                r#"{"input_shapes": [1, 3, 2, 2]}"#,
                "unknown field `input_shapes`",
            ),
        ] {
            let e = PackOptions::from_json(json).unwrap_err().to_string();
            assert!(e.contains(needle), "{json}: {e}");
        }
        let o = PackOptions {
            resize: Some(Resize {
                height: 0,
                width: 320,
            }),
            ..non_square()
        };
        let e = pack(TINY_PT, "model.pt", &o).unwrap_err().to_string();
        assert!(
            e.contains("resize 0x320 (height x width) must be positive"),
            "{e}"
        );
    }

    #[test]
    fn yaml_strings_are_quoted() {
        let y = config_yaml(224, 112, Some(2), &["good: yes".into(), "dé\"fect".into()]);
        assert!(y.contains("image_width: 224\n  image_height: 112\n"));
        assert!(y.contains("- \"good: yes\"\n"));
        assert!(y.contains("- \"dé\\\"fect\"\n"));
    }
}
