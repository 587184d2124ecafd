//! `byom pack`: build a valid package from a bare `.pt` (the logic lives in `byom_core::pack`).

use std::path::PathBuf;
use std::process::ExitCode;

use byom_core::pack::{pack_with_details, PackError, PackOptions};
use byom_core::Settings;

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
    /// Output shape (comma separated); inferred for classifiers.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub output: Option<Vec<i64>>,
    /// Class names, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub classes: Vec<String>,
    /// Number of classes (when no names are given; else inferred from the classifier head).
    #[arg(long)]
    pub num_classes: Option<u64>,
    /// Preprocessing resize W,H.
    #[arg(long, value_delimiter = ',')]
    pub resize: Option<Vec<u64>>,
    /// Normalisation mean, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub mean: Option<Vec<f64>>,
    /// Normalisation std, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub std: Option<Vec<f64>>,
    /// RGB or BGR.
    #[arg(long)]
    pub channel_order: Option<String>,
    /// Post-processing: softmax, argmax, yolo_nms, anomaly_score, argmax_per_pixel.
    #[arg(long)]
    pub postprocessing: Option<String>,
    #[arg(long)]
    pub threshold: Option<f64>,
    #[arg(long)]
    pub confidence_threshold: Option<f64>,
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
    /// Oldest PyTorch the model must load in (default: the server's libtorch, 2.11).
    #[arg(long)]
    pub required_torch: Option<String>,
    /// Output package.
    #[arg(short = 'o', long, default_value = "model.tar.gz")]
    pub output_file: PathBuf,
}

pub fn run(args: Args) -> ExitCode {
    let bytes = match std::fs::read(&args.model) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("byom pack: cannot read {}: {e}", args.model.display());
            return ExitCode::from(2);
        }
    };
    let mut settings = Settings::default();
    if let Some(r) = &args.required_torch {
        settings.required_torch = r.clone();
    }
    let resize = match args.resize.as_deref() {
        None => None,
        Some([w, h]) => Some((*w, *h)),
        Some(_) => {
            eprintln!("byom pack: --resize takes W,H");
            return ExitCode::from(2);
        }
    };
    let opts = PackOptions {
        model_type: args.model_type,
        input_shape: args.input,
        output_shape: args.output,
        class_names: args.classes,
        num_classes: args.num_classes,
        resize,
        mean: args.mean,
        std: args.std,
        channel_order: args.channel_order,
        postprocessing: args.postprocessing,
        threshold: args.threshold,
        confidence_threshold: args.confidence_threshold,
        nms_threshold: args.nms_threshold,
        name: args.name,
        version: args.version,
        architecture: args.architecture,
        settings,
    };
    let name = args
        .model
        .file_name()
        .map_or_else(|| "model.pt".into(), |n| n.to_string_lossy().into_owned());
    match pack_with_details(&bytes, &name, &opts) {
        Ok(p) => {
            if let Err(e) = std::fs::write(&args.output_file, &p.tar_gz) {
                eprintln!(
                    "byom pack: cannot write {}: {e}",
                    args.output_file.display()
                );
                return ExitCode::from(2);
            }
            println!(
                "wrote {} ({} bytes): {} as export_artifacts/{}",
                args.output_file.display(),
                p.tar_gz.len(),
                p.inspection.verdict,
                p.pt_name
            );
            for i in &p.inferred {
                println!("  inferred: {i}");
            }
            for w in &p.warnings {
                println!("warning[{}]: {}\n  hint: {}", w.code, w.message, w.hint);
            }
            ExitCode::SUCCESS
        }
        Err(PackError::Refused { file, issues }) => {
            eprintln!("byom pack: refusing to pack {file}:");
            for i in issues {
                eprintln!("error[{}]: {}\n  hint: {}", i.code, i.message, i.hint);
            }
            ExitCode::from(1)
        }
        Err(e @ PackError::Invalid(_)) => {
            eprintln!("byom pack: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("byom pack: {e}");
            ExitCode::from(2)
        }
    }
}
