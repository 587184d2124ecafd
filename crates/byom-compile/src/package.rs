//! Re-validation and extraction of an uploaded package.
//!
//! The browser already validated it, but the server trusts nothing: the package goes through
//! the same core validator again, and only then are the three metadata files and the `.pt`
//! copied out — by exact member name, regular files only, each size bounded by the limits —
//! to a fixed file name in the work directory (no path from the archive ever reaches the file
//! system).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use byom_core::{Report, Settings, Validator};
use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use crate::error::CompileError;

/// Read chunk for validation and hashing.
const CHUNK: usize = 1 << 20;

/// The parts of a package the compiler needs.
#[derive(Debug, Clone)]
pub struct ExtractedPackage {
    pub sha256: String,
    /// The core's verdict (valid; its warnings go to the compile log).
    pub report: Report,
    pub config_yaml: Option<String>,
    pub mochi_json: String,
    pub manifest_json: String,
    /// File name of the `.pt` inside `export_artifacts/`.
    pub model_name: String,
    /// Where the `.pt` was written.
    pub model_path: PathBuf,
}

/// Streams the package through the core validator and a sha256.
pub fn validate(package: &Path, settings: &Settings) -> Result<(Report, String), CompileError> {
    let file = File::open(package).map_err(CompileError::io(package))?;
    let mut reader = BufReader::with_capacity(CHUNK, file);
    let mut validator = Validator::new(settings);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf).map_err(CompileError::io(package))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        validator.feed(&buf[..n]);
    }
    let mut report = validator.finish();
    let sha = hex::encode(hasher.finalize());
    report.sha256 = Some(sha.clone());
    Ok((report, sha))
}

/// Turns a failed report into the job's failure message (codes and messages of every error).
pub fn invalid_reason(report: &Report) -> String {
    if report.errors.is_empty() {
        return "the validator did not accept the package (no error was reported)".to_string();
    }
    report
        .errors
        .iter()
        .map(|e| format!("{} {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Normalises a member path the way the validator does for the names we look for
/// (`./config.yaml` → `config.yaml`); anything unusual simply does not match.
fn normalise(path: &str) -> &str {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p
}

/// Re-validates `package` and extracts what the compiler needs into `work_dir`.
pub fn extract(
    package: &Path,
    settings: &Settings,
    work_dir: &Path,
) -> Result<ExtractedPackage, CompileError> {
    let (report, sha256) = validate(package, settings)?;
    if !report.valid {
        return Err(CompileError::InvalidPackage(invalid_reason(&report)));
    }
    let limits = &settings.limits;
    let file = File::open(package).map_err(CompileError::io(package))?;
    let mut archive = tar::Archive::new(MultiGzDecoder::new(BufReader::with_capacity(CHUNK, file)));
    let model_path = work_dir.join("input.pt");
    let (mut config_yaml, mut mochi_json, mut manifest_json, mut model_name) =
        (None, None, None, None);
    let bad = |e: std::io::Error| CompileError::InvalidPackage(format!("unreadable archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let Ok(name) = std::str::from_utf8(&raw) else {
            continue;
        };
        let name = normalise(name).to_string();
        let size = entry.size();
        let metadata_slot = match name.as_str() {
            "config.yaml" => Some(&mut config_yaml),
            "mochi.json" => Some(&mut mochi_json),
            "export_artifacts/manifest.json" => Some(&mut manifest_json),
            _ => None,
        };
        if let Some(slot) = metadata_slot {
            if size > limits.max_metadata_bytes {
                return Err(CompileError::InvalidPackage(format!(
                    "{name} is over the metadata limit"
                )));
            }
            let mut text = String::new();
            entry
                .by_ref()
                .take(limits.max_metadata_bytes)
                .read_to_string(&mut text)
                .map_err(|e| CompileError::InvalidPackage(format!("{name}: {e}")))?;
            *slot = Some(text);
            continue;
        }
        let Some(pt) = name.strip_prefix("export_artifacts/") else {
            continue;
        };
        if pt.contains('/') || !pt.ends_with(".pt") || pt.starts_with("._") {
            continue;
        }
        if model_name.is_some() {
            return Err(CompileError::InvalidPackage(
                "more than one .pt file".to_string(),
            ));
        }
        if size > limits.max_uncompressed_bytes {
            return Err(CompileError::InvalidPackage(format!(
                "{pt} is over the size limit"
            )));
        }
        let mut out = File::create(&model_path).map_err(CompileError::io(&model_path))?;
        let copied = std::io::copy(
            &mut entry.by_ref().take(limits.max_uncompressed_bytes),
            &mut out,
        )
        .map_err(CompileError::io(&model_path))?;
        out.flush().map_err(CompileError::io(&model_path))?;
        if copied != size {
            return Err(CompileError::InvalidPackage(format!(
                "{pt}: truncated member"
            )));
        }
        model_name = Some(pt.to_string());
    }
    let missing =
        |what: &str| CompileError::InvalidPackage(format!("{what} not found in the package"));
    Ok(ExtractedPackage {
        sha256,
        report,
        config_yaml,
        mochi_json: mochi_json.ok_or_else(|| missing("mochi.json"))?,
        manifest_json: manifest_json.ok_or_else(|| missing("export_artifacts/manifest.json"))?,
        model_name: model_name.ok_or_else(|| missing("export_artifacts/*.pt"))?,
        model_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_strips_dot_slash_only() {
        assert_eq!(normalise("./mochi.json"), "mochi.json");
        assert_eq!(normalise("././a"), "a");
        assert_eq!(normalise("/abs"), "/abs");
        assert_eq!(normalise("x/./y"), "x/./y");
    }

    #[test]
    fn invalid_reason_names_codes() {
        let mut report = Validator::new(&Settings::default()).finish();
        report.errors.clear();
        assert!(invalid_reason(&report).contains("did not accept"));
        report.errors.push(byom_core::Issue {
            code: byom_core::Code::new("BYOM101"),
            severity: byom_core::Severity::Error,
            message: "Missing required files".into(),
            file: None,
            hint: String::new(),
        });
        assert_eq!(invalid_reason(&report), "BYOM101 Missing required files");
    }
}
