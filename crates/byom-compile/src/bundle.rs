//! Step 6: one deployable bundle per target — `model.pt`, `deployment.json`, `SHA256SUMS`,
//! `load.py`, `load.cpp`, `README.txt` in `out_dir/<target>/`, and the same files (flat, no
//! folder) in `out_dir/<target>.tar.gz`. The schema is documented in docs/deployment-json.md.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use byom_core::archive::ustar;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::CompileError;
use crate::metadata::ModelDeclarations;
use crate::plan::Plan;
use crate::report::{ModelSummary, Pass, Verification};
use crate::target::{Precision, Target};

/// Version of the `deployment.json` schema.
pub const SCHEMA: &str = "byom-deployment/1";

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, CompileError> {
    let mut file = File::open(path).map_err(CompileError::io(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(CompileError::io(path))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Everything `deployment.json` says about one target.
pub struct Deployment<'a> {
    pub target: Target,
    pub plan: &'a Plan,
    pub passes: &'a [Pass],
    pub declared: &'a ModelDeclarations,
    pub model: &'a ModelSummary,
    pub selector: &'a str,
    pub package_sha256: &'a str,
    pub artifact_sha256: &'a str,
    pub artifact_bytes: u64,
    pub min_torch: Option<&'a str>,
    pub verification: &'a Verification,
    pub identical_to: &'a [Target],
    /// What the artifact's weights are, and so its input.
    pub precision: Precision,
    /// What the model's own weights were.
    pub source_precision: Precision,
    pub warnings: &'a [String],
}

/// The `deployment.json` document.
pub fn deployment_json(d: &Deployment<'_>) -> Value {
    let runtime = d.target.runtime();
    json!({
        "schema": SCHEMA,
        "target": d.target.as_str(),
        "artifact": {
            "file": "model.pt",
            "format": "torchscript",
            "sha256": d.artifact_sha256,
            "bytes": d.artifact_bytes,
            "frozen": d.plan.freeze,
            "precision": d.precision.as_str(),
            "source_precision": d.source_precision.as_str(),
            "device": if d.target.is_cuda() { "cuda" } else { "cpu" },
            "identical_to_targets": d.identical_to.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        },
        "model": {
            "name": d.declared.model_info.as_ref().and_then(|i| i.get("name")).cloned(),
            "type": d.declared.model_type,
            "source_file": d.model.model_file,
            "source_kind": d.model.kind,
            "architecture": d.model.architecture,
            "package_sha256": d.package_sha256,
            "model_info": d.declared.model_info,
        },
        "model_graph": { "stages": d.declared.model_graph },
        "input": {
            "name": "input",
            "shape": d.declared.input_shape,
            "dtype": d.precision.dtype(),
            "layout": "NCHW",
        },
        "image_size": { "width": d.declared.image_width, "height": d.declared.image_height },
        "classes": { "num_classes": d.declared.num_classes, "names": d.declared.class_names },
        "output": {
            "shape": d.model.output_shape,
            "checked": d.model.checked_output,
            "selector": d.selector,
        },
        "preprocessing": d.declared.preprocessing,
        "postprocessing": d.declared.postprocessing,
        "runtime": {
            "min_torch": d.min_torch,
            "target_torch": runtime.torch,
            "target_runtime": runtime.description,
            "compiled_with": format!("libtorch {}", crate::LIBTORCH_VERSION),
            "operator_libraries": d.model.operator_libraries,
        },
        "passes": d.passes,
        "load_time_steps": d.plan.load_time_steps,
        "verification": d.verification,
        "warnings": d.warnings,
        "byom_version": crate::VERSION,
    })
}

const LOAD_PY: &str = include_str!("../templates/load.py");
const LOAD_CPP: &str = include_str!("../templates/load.cpp");

fn readme(target: Target, d: &Value) -> String {
    let steps = d["load_time_steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|st| {
                    format!(
                        "  - {}: {}\n",
                        st["name"].as_str().unwrap_or(""),
                        st["why"].as_str().unwrap_or("")
                    )
                })
                .collect::<String>()
        })
        .unwrap_or_default();
    format!(
        "byom bundle for {target}\n\n\
         model.pt         TorchScript artifact ({precision}, frozen: {frozen})\n\
         deployment.json  what the model expects and returns, runtime needs, load-time steps,\n\
         \x20                verification results (schema {SCHEMA})\n\
         SHA256SUMS       sha256 of every file here (sha256sum -c SHA256SUMS)\n\
         load.py          Python loader and self-test: python load.py [--device cuda]\n\
         load.cpp         C++ (libtorch) loader and self-test\n\n\
         Minimum torch runtime: {min}; this target is assumed to ship torch {ships}\n\
         ({runtime}).\n\
         Input: {dtype} {shape}\n\
         Verification: {status}\n\
         Operator libraries besides libtorch: {libs}\n\
         Latency: {latency}\n\
         Load-time steps (load.py and load.cpp run them):\n{steps}{warnings}",
        dtype = d["input"]["dtype"].as_str().unwrap_or(""),
        shape = d["input"]["shape"]
            .as_array()
            .map(|dims| format!(
                "[{}]",
                dims.iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .unwrap_or_default(),
        latency = latency_words(&d["verification"]),
        warnings = d["warnings"]
            .as_array()
            .filter(|w| !w.is_empty())
            .map(|w| {
                let lines: String = w
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|l| format!("  - {l}\n"))
                    .collect();
                format!("Warnings:\n{lines}")
            })
            .unwrap_or_default(),
        libs = operator_libraries(d),
        precision = d["artifact"]["precision"].as_str().unwrap_or(""),
        frozen = d["artifact"]["frozen"],
        min = d["runtime"]["min_torch"]
            .as_str()
            .unwrap_or("not determined"),
        ships = d["runtime"]["target_torch"].as_str().unwrap_or(""),
        runtime = d["runtime"]["target_runtime"].as_str().unwrap_or(""),
        status = d["verification"]["status"].as_str().unwrap_or(""),
        steps = if steps.is_empty() {
            "  (none)\n".to_string()
        } else {
            steps
        },
    )
}

/// "torchvision 0.26.0 (torchvision::nms): load.py imports torchvision; load.cpp: see BYOM_PRELOAD
/// in load.cpp", or "none".
fn operator_libraries(d: &Value) -> String {
    let libs = d["runtime"]["operator_libraries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if libs.is_empty() {
        return "none".to_string();
    }
    let names: Vec<String> = libs
        .iter()
        .map(|l| {
            let ops: Vec<&str> = l["operators"]
                .as_array()
                .map(|o| o.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "{} {} ({})",
                l["name"].as_str().unwrap_or(""),
                l["version"].as_str().unwrap_or("(version unknown)"),
                ops.join(", ")
            )
        })
        .collect();
    format!(
        "{}\n  load.py imports them before torch.jit.load; load.cpp needs them linked or listed in\n  BYOM_PRELOAD (see the comment at its top)",
        names.join("; ")
    )
}

/// The artifact's latency as measured, or why it was not.
fn latency_words(v: &Value) -> String {
    match (
        v["latency"]["p50_ms"].as_f64(),
        v["latency_not_measured"].as_str(),
    ) {
        (Some(p50), _) => format!(
            "p50 {p50:.3} ms on {}",
            v["latency"]["device"].as_str().unwrap_or("the build host")
        ),
        (None, Some(why)) => why.to_string(),
        (None, None) => "not measured".to_string(),
    }
}

/// Writes the bundle directory and its `.tar.gz`; returns the archive's path and sha256.
pub fn write(
    out_dir: &Path,
    target: Target,
    artifact: &Path,
    deployment: &Value,
) -> Result<(PathBuf, String), CompileError> {
    let dir = out_dir.join(target.as_str());
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(CompileError::io(&dir))?;
    }
    fs::create_dir_all(&dir).map_err(CompileError::io(&dir))?;
    let model = dir.join("model.pt");
    fs::copy(artifact, &model).map_err(CompileError::io(&model))?;
    let text =
        serde_json::to_string_pretty(deployment).map_err(|e| CompileError::Load(e.to_string()))?;
    let files: [(&str, String); 4] = [
        ("deployment.json", text + "\n"),
        ("load.py", LOAD_PY.to_string()),
        ("load.cpp", LOAD_CPP.to_string()),
        ("README.txt", readme(target, deployment)),
    ];
    for (name, content) in &files {
        let p = dir.join(name);
        fs::write(&p, content).map_err(CompileError::io(&p))?;
    }
    let mut names = vec!["model.pt"];
    names.extend(files.iter().map(|(n, _)| *n));
    names.sort_unstable();
    let mut sums = String::new();
    for name in &names {
        sums.push_str(&format!("{}  {name}\n", sha256_file(&dir.join(name))?));
    }
    let sums_path = dir.join("SHA256SUMS");
    fs::write(&sums_path, sums).map_err(CompileError::io(&sums_path))?;
    names.push("SHA256SUMS");
    names.sort_unstable();

    // Written to a temporary name and renamed, so a reader never sees half an archive.
    let archive = out_dir.join(format!("{}.tar.gz", target.as_str()));
    let tmp = out_dir.join(format!(".{}.tar.gz.tmp", target.as_str()));
    let file = File::create(&tmp).map_err(CompileError::io(&tmp))?;
    let mut gz = GzEncoder::new(file, Compression::default());
    for name in &names {
        let path = dir.join(name);
        let mut f = File::open(&path).map_err(CompileError::io(&path))?;
        let len = f.metadata().map_err(CompileError::io(&path))?.len();
        // The names are this module's own fixed names, so this cannot fail; if it ever did, the
        // bundle must not be written with a mangled name.
        let header = ustar::header(name, len).map_err(|e| {
            CompileError::io(&path)(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        gz.write_all(&header).map_err(CompileError::io(&archive))?;
        let copied =
            std::io::copy(&mut (&mut f).take(len), &mut gz).map_err(CompileError::io(&archive))?;
        if copied != len {
            return Err(CompileError::io(&path)(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was archived",
            )));
        }
        gz.write_all(ustar::padding(len))
            .map_err(CompileError::io(&archive))?;
    }
    gz.write_all(&ustar::END_OF_ARCHIVE)
        .map_err(CompileError::io(&archive))?;
    let mut file = gz.finish().map_err(CompileError::io(&archive))?;
    file.flush().map_err(CompileError::io(&archive))?;
    file.sync_all().map_err(CompileError::io(&archive))?;
    fs::rename(&tmp, &archive).map_err(CompileError::io(&archive))?;
    let sha = sha256_file(&archive)?;
    Ok((archive, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_archive_reads_back_through_the_core_reader() {
        let dir = std::env::temp_dir().join(format!("byom-bundle-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let artifact = dir.join("artifact.pt");
        // 1300 bytes: not a multiple of 512, so the padding is exercised.
        fs::write(&artifact, vec![7u8; 1300]).unwrap();
        let (archive, sha) = write(
            &dir,
            Target::X86_64Cpu,
            &artifact,
            &json!({"schema": SCHEMA}),
        )
        .unwrap();
        assert_eq!(sha, sha256_file(&archive).unwrap());
        let report = byom_core::validate::validate_bytes(
            &fs::read(&archive).unwrap(),
            &byom_core::Settings::default(),
        );
        // Not a model package (no mochi.json), but a clean archive: no archive-level issue.
        assert!(
            report
                .errors
                .iter()
                .chain(&report.warnings)
                .all(|i| i.category() != byom_core::Category::Archive),
            "{:?}",
            report.errors
        );
        assert_eq!(
            report.summary.entries,
            [
                "README.txt",
                "SHA256SUMS",
                "deployment.json",
                "load.cpp",
                "load.py",
                "model.pt"
            ]
        );
        let sizes: u64 = [
            "README.txt",
            "SHA256SUMS",
            "deployment.json",
            "load.cpp",
            "load.py",
        ]
        .iter()
        .map(|n| fs::metadata(dir.join("x86_64-cpu").join(n)).unwrap().len())
        .sum();
        assert_eq!(report.summary.uncompressed_bytes, sizes + 1300);
        let _ = fs::remove_dir_all(&dir);
    }
}
