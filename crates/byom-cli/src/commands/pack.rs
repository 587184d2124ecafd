//! `byom pack`: build a valid package from a bare `.pt` (the logic lives in `byom_core::pack`).

use std::path::PathBuf;
use std::process::ExitCode;

use byom_core::pack::{pack_with_details, PackError, PackOptions, Resize};
use byom_core::package::PostProcessing;
use byom_core::{Settings, TorchVersion};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::output::{self, human_bytes, Format};

#[derive(clap::Args)]
pub struct Args {
    /// The model file (.pt: TorchScript or a state dict).
    pub model: PathBuf,
    /// Stage type: classification, object_detection, anomaly_detection, semantic_segmentation, ...
    #[arg(long = "type", default_value = "classification")]
    pub model_type: String,
    /// Input shape B,C,H,W (e.g. 1,3,224,224).
    #[arg(long, value_delimiter = ',', num_args = 1.., required = true)]
    pub input: Vec<i64>,
    /// Output shape, comma separated (e.g. 1,2); inferred for classifiers.
    #[arg(long, value_name = "SHAPE", value_delimiter = ',', num_args = 1..)]
    pub output_shape: Option<Vec<i64>>,
    /// Class names, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub classes: Vec<String>,
    /// Number of classes (when no names are given; else inferred from the classifier head).
    #[arg(long)]
    pub num_classes: Option<u64>,
    /// Preprocessing resize H,W (height first, as in --input B,C,H,W; default: the input size).
    #[arg(long, value_name = "H,W", value_parser = parse_resize)]
    pub resize: Option<Resize>,
    /// Normalisation mean, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub mean: Option<Vec<f64>>,
    /// Normalisation std, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub std: Option<Vec<f64>>,
    /// RGB or BGR.
    #[arg(long)]
    pub channel_order: Option<String>,
    /// Post-processing type written to manifest.json.
    #[arg(long, value_parser = post_processing_parser())]
    pub postprocessing: Option<PostProcessing>,
    /// Decision threshold of the stage (0..1), e.g. an anomaly score cut-off.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Minimum detection confidence (0..1) written to manifest.json's postprocessing.
    #[arg(long)]
    pub confidence_threshold: Option<f64>,
    /// IoU threshold of non-maximum suppression (0..1) for detectors.
    #[arg(long)]
    pub nms_threshold: Option<f64>,
    /// model_info.name (default: the file name).
    #[arg(long)]
    pub name: Option<String>,
    /// model_info.version (default 1.0.0).
    #[arg(long)]
    pub version: Option<String>,
    /// model_info.architecture (default: the recognised architecture, if any).
    #[arg(long)]
    pub architecture: Option<String>,
    /// Oldest PyTorch the model must load in, "major.minor" (default: the server's libtorch, 2.11).
    #[arg(long, value_name = "X.Y")]
    pub required_torch: Option<TorchVersion>,
    /// The package file to write (.tar.gz).
    #[arg(short = 'o', long = "output", visible_alias = "output-file", value_name = "FILE", default_value = "model.tar.gz", value_parser = parse_output_file)]
    pub output_file: PathBuf,
    /// Output format: text for people, json for machines (the file, its exact size and sha256, what was inferred).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `-o/--output FILE`: was once the output shape's flag; a shape given here is refused with
/// the new name rather than silently written as a file called "1,2".
fn parse_output_file(s: &str) -> Result<PathBuf, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b',') {
        return Err(format!(
            "{s:?} looks like a shape: -o/--output is the package file; the output shape is --output-shape"
        ));
    }
    Ok(PathBuf::from(s))
}

/// `--resize H,W`.
fn parse_resize(s: &str) -> Result<Resize, String> {
    let bad = || format!("expected H,W (height,width), e.g. 224,224; not {s:?}");
    let (h, w) = s.split_once(',').ok_or_else(bad)?;
    let (height, width) = (
        h.trim().parse().map_err(|_| bad())?,
        w.trim().parse().map_err(|_| bad())?,
    );
    Ok(Resize { height, width })
}

/// `--postprocessing`: the core's list, so `--help` and the error show the known names.
fn post_processing_parser() -> impl TypedValueParser<Value = PostProcessing> {
    PossibleValuesParser::new(PostProcessing::ALL.iter().map(|p| p.as_str()))
        .try_map(|s| s.parse::<PostProcessing>())
}

/// The core's options from the command line (the page's builder sends the same as JSON).
fn options(args: &Args) -> PackOptions {
    let mut settings = Settings::default();
    if let Some(v) = args.required_torch {
        settings.required_torch = v;
    }
    PackOptions {
        model_type: args.model_type.clone(),
        input_shape: args.input.clone(),
        output_shape: args.output_shape.clone(),
        class_names: args.classes.clone(),
        num_classes: args.num_classes,
        resize: args.resize,
        mean: args.mean.clone(),
        std: args.std.clone(),
        channel_order: args.channel_order.clone(),
        postprocessing: args.postprocessing,
        threshold: args.threshold,
        confidence_threshold: args.confidence_threshold,
        nms_threshold: args.nms_threshold,
        name: args.name.clone(),
        version: args.version.clone(),
        architecture: args.architecture.clone(),
        settings,
    }
}

pub fn run(args: Args) -> ExitCode {
    let bytes = match std::fs::read(&args.model) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("byom pack: cannot read {}: {e}", args.model.display());
            return ExitCode::from(2);
        }
    };
    let opts = options(&args);
    let name = args
        .model
        .file_name()
        .map_or_else(|| "model.pt".into(), |n| n.to_string_lossy().into_owned());
    let json = args.format == Format::Json;
    match pack_with_details(&bytes, &name, &opts) {
        Ok(p) => {
            if let Err(e) = std::fs::write(&args.output_file, &p.tar_gz) {
                eprintln!(
                    "byom pack: cannot write {}: {e}",
                    args.output_file.display()
                );
                return ExitCode::from(2);
            }
            let written = if json {
                output::write_json(
                    "pack",
                    &json!({
                        "written": true,
                        "file": args.output_file.display().to_string(),
                        "bytes": p.tar_gz.len(),
                        "sha256": hex::encode(Sha256::digest(&p.tar_gz)),
                        "model_file": format!("export_artifacts/{}", p.pt_name),
                        "verdict": p.inspection.verdict,
                        "inferred": p.inferred,
                        "errors": [],
                        "warnings": p.warnings,
                    }),
                )
            } else {
                let mut text = format!(
                    "wrote {} ({}): {} as export_artifacts/{}\n",
                    args.output_file.display(),
                    human_bytes(p.tar_gz.len() as u64),
                    p.inspection.verdict,
                    p.pt_name
                );
                for i in &p.inferred {
                    text.push_str(&format!("  inferred: {i}\n"));
                }
                for w in &p.warnings {
                    text.push_str(&format!(
                        "warning[{}]: {}\n  hint: {}\n",
                        w.code, w.message, w.hint
                    ));
                }
                output::write_out("pack", &text)
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(code) => code,
            }
        }
        Err(PackError::Refused { file, issues }) => {
            // The same errors the validator would report for the package, so nothing is written.
            eprintln!("byom pack: refusing to pack {file}:");
            for i in &issues {
                eprintln!("error[{}]: {}\n  hint: {}", i.code, i.message, i.hint);
            }
            if json {
                let _ = output::write_json(
                    "pack",
                    &json!({ "written": false, "file": null, "errors": issues, "warnings": [] }),
                );
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("byom pack: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const TINY_PT: &[u8] = include_bytes!("../../../byom-core/tests/data/tiny_traced.pt");

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        let cli = crate::Cli::try_parse_from(["byom", "pack"].iter().chain(argv))?;
        match cli.command {
            crate::Command::Pack(args) => Ok(args),
            _ => panic!("not the pack command"),
        }
    }

    /// The JSON web/builder.js `packOptions` sends for a 256x320 (height x width) model with
    /// the form's preprocessing fields; the wasm face reads it with `PackOptions::from_json`.
    const PAGE_JSON: &str = include_str!("../../../byom-core/tests/data/page_pack_options.json");

    #[test]
    fn non_square_cli_and_page_write_the_same_metadata() {
        let args = parse(&[
            "model.pt",
            "--input",
            "1,3,256,320",
            "--classes",
            "good,defect",
            "--resize",
            "256,320",
            "--mean",
            "0.485,0.456,0.406",
            "--std",
            "0.229,0.224,0.225",
            "--channel-order",
            "RGB",
            "--postprocessing",
            "softmax",
        ])
        .unwrap();
        let cli = options(&args);
        let page = PackOptions::from_json(PAGE_JSON).unwrap();
        // The page also sends the count of the names it sends (the core checks they agree).
        let counted = PackOptions {
            num_classes: Some(2),
            ..cli.clone()
        };
        assert_eq!(counted, page);
        let a = pack_with_details(TINY_PT, "model.pt", &cli).unwrap();
        let b = pack_with_details(TINY_PT, "model.pt", &page).unwrap();
        assert_eq!(a.config_yaml, b.config_yaml);
        assert_eq!(a.mochi_json, b.mochi_json);
        assert_eq!(a.manifest_json, b.manifest_json);
        assert_eq!(a.tar_gz, b.tar_gz);
        // Without --resize the CLI writes the input size, the same [height, width].
        let defaulted = PackOptions {
            resize: None,
            ..cli.clone()
        };
        let c = pack_with_details(TINY_PT, "model.pt", &defaulted).unwrap();
        assert_eq!(c.manifest_json, b.manifest_json);
        let manifest: serde_json::Value = serde_json::from_str(&a.manifest_json).unwrap();
        assert_eq!(
            manifest["preprocessing"]["resize"],
            serde_json::json!([256, 320])
        );
    }

    #[test]
    fn bad_values_are_refused_by_the_command_line() {
        let base = ["model.pt", "--input", "1,3,2,2"];
        for (extra, needle) in [
            (
                ["--required-torch", "banana"],
                "\"banana\" is not a torch version: expected major.minor",
            ),
            (["--required-torch", "2"], "expected major.minor"),
            (["--resize", "256"], "expected H,W (height,width)"),
            (["--resize", "256,x"], "expected H,W (height,width)"),
            (
                ["--postprocessing", "sigmoid"],
                "[possible values: softmax, argmax",
            ),
        ] {
            let argv: Vec<&str> = base.iter().chain(&extra).copied().collect();
            let e = parse(&argv).err().expect("refused").to_string();
            assert!(e.contains(needle), "{extra:?}: {e}");
        }
        let args = parse(&["model.pt", "--input", "1,3,2,2", "--required-torch", "1.8"]).unwrap();
        assert_eq!(options(&args).settings.required_torch, TorchVersion(1, 8));
    }
}
