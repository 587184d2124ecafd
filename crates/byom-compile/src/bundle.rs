//! Step 6: one deployable bundle per target — `model.pt`, `deployment.json`, `SHA256SUMS`,
//! `load.py`, `load.cpp`, `README.txt` in `out_dir/<target>/`, and the same files (flat, no
//! folder) in `out_dir/<target>.tar.gz`. The schema is documented in docs/deployment-json.md.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::CompileError;
use crate::metadata::ModelDeclarations;
use crate::plan::Plan;
use crate::report::{ModelSummary, Pass, Verification};
use crate::target::Target;

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
}

/// The `deployment.json` document.
pub fn deployment_json(d: &Deployment<'_>) -> Value {
    let input_dtype = if d.plan.half {
        "float16"
    } else {
        d.model.input_dtype.as_str()
    };
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
            "precision": d.target.precision().as_str(),
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
            "dtype": input_dtype,
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
         Verification: {status}\n\
         Operator libraries besides libtorch: {libs}\n\
         Load-time steps (load.py and load.cpp run them):\n{steps}",
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

/// A POSIX ustar header for a regular file `name` (a short fixed name of ours, under 100
/// bytes) of `size` bytes: mode 0644, owner 0, mtime 0, so the archive depends only on content.
/// Written by hand, and plainly, so that the crate carries no tar library: the one tar reader
/// in the system is byom-core's (GNU tar, Python and the core read these headers alike, see
/// the test below).
fn ustar_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(99);
    h[..n].copy_from_slice(&name.as_bytes()[..n]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 1 << 33 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        // Over 8 GiB: GNU base-256, which GNU tar, Python and the core all read.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
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
        gz.write_all(&ustar_header(name, len))
            .map_err(CompileError::io(&archive))?;
        let copied =
            std::io::copy(&mut (&mut f).take(len), &mut gz).map_err(CompileError::io(&archive))?;
        if copied != len {
            return Err(CompileError::io(&path)(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was archived",
            )));
        }
        let pad = (512 - len % 512) % 512;
        gz.write_all(&[0u8; 512][..pad as usize])
            .map_err(CompileError::io(&archive))?;
    }
    // End of archive: two zero blocks.
    gz.write_all(&[0u8; 1024])
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

    #[test]
    fn ustar_header_sizes() {
        let h = ustar_header("model.pt", 1300);
        assert_eq!(&h[124..136], b"00000002424\0");
        let big = ustar_header("model.pt", 9 << 30);
        assert_eq!(big[124], 0x80);
        assert_eq!(
            u64::from_be_bytes(big[128..136].try_into().unwrap()),
            9 << 30
        );
    }
}
