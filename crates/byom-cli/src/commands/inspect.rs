//! `byom inspect`: what a `.pt` is (kind, tensors, safety, minimum torch, architecture).
//!
//! Accepts a bare `.pt` (streamed through `PtInspector`, never loaded whole) or a package
//! (`.tar.gz`, validated in full; the model part of the report is shown).

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use byom_core::report::{Issue, Severity};
use byom_core::torch::{PtInspection, PtInspector};
use byom_core::Settings;
use serde::Serialize;

use super::output::{self, human_bytes, Format};

#[derive(clap::Args)]
pub struct Args {
    /// A .pt file, or a model package (.tar.gz).
    pub file: PathBuf,
    /// List every tensor (default: the largest --top) and every operator (default: those outside aten and prim).
    #[arg(long)]
    pub all: bool,
    /// How many of the largest tensors to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Output format: text for people (sizes in KiB/MiB), json for machines (exact byte counts).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Oldest PyTorch the file must load in, "major.minor" (default: the server's libtorch, 2.11).
    #[arg(long, value_name = "X.Y")]
    pub required_torch: Option<byom_core::TorchVersion>,
}

#[derive(Serialize)]
struct Output<'a> {
    file: String,
    valid: bool,
    model: Option<&'a PtInspection>,
    errors: Vec<&'a Issue>,
    warnings: Vec<&'a Issue>,
}

const CHUNK: usize = 1 << 20;

pub fn run(args: Args) -> ExitCode {
    let mut settings = Settings::default();
    if let Some(r) = args.required_torch {
        settings.required_torch = r;
    }
    let mut f = match File::open(&args.file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("byom inspect: cannot open {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let mut head = [0u8; 2];
    let n = f.read(&mut head).unwrap_or(0);
    let is_package = n == 2 && head == [0x1f, 0x8b];
    let name = args.file.file_name().map_or_else(
        || "model.pt".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );

    let (inspection, issues) = if is_package {
        let mut v = byom_core::Validator::new(&settings);
        v.feed(&head[..n]);
        if let Err(e) = pump(&mut f, |c| v.feed(c)) {
            eprintln!("byom inspect: cannot read {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
        let report = v.finish();
        let issues: Vec<Issue> = report
            .errors
            .iter()
            .chain(report.warnings.iter())
            .cloned()
            .collect();
        (report.model, issues)
    } else {
        let mut insp = PtInspector::new(&settings, &name);
        insp.feed(&head[..n]);
        if let Err(e) = pump(&mut f, |c| insp.feed(c)) {
            eprintln!("byom inspect: cannot read {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
        let (i, issues) = insp.finish();
        (Some(i), issues)
    };
    let errors: Vec<&Issue> = issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .collect();
    let warnings: Vec<&Issue> = issues
        .iter()
        .filter(|i| i.severity == Severity::Warning)
        .collect();
    let valid = errors.is_empty() && inspection.is_some();
    let written = match args.format {
        Format::Json => output::write_json(
            "inspect",
            &Output {
                file: args.file.display().to_string(),
                valid,
                model: inspection.as_ref(),
                errors,
                warnings,
            },
        ),
        Format::Text => output::write_out(
            "inspect",
            &text(&args, inspection.as_ref(), &errors, &warnings),
        ),
    };
    if let Err(code) = written {
        return code;
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn pump(f: &mut File, mut sink: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        sink(&buf[..n]);
    }
}

fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1} K", n as f64 / 1e3),
        _ => format!("{:.1} M", n as f64 / 1e6),
    }
}

/// "93 (aten 80, prim 12, torchvision 1): torchvision::nms": the count per namespace, then
/// every operator outside `aten` and `prim` (all of them with `--all`).
fn operators_line(m: &PtInspection, all: bool) -> String {
    use byom_core::torch::ops::namespace;
    let mut per: Vec<(&str, usize)> = Vec::new();
    for op in &m.operators {
        match per.iter_mut().find(|(n, _)| *n == namespace(op)) {
            Some((_, c)) => *c += 1,
            None => per.push((namespace(op), 1)),
        }
    }
    per.sort_by_key(|(n, c)| (std::cmp::Reverse(*c), *n));
    let counts: Vec<String> = per.iter().map(|(n, c)| format!("{n} {c}")).collect();
    let named: Vec<&str> = m
        .operators
        .iter()
        .filter(|op| all || !matches!(namespace(op), "aten" | "prim"))
        .map(String::as_str)
        .collect();
    let mut line = format!("{} ({})", m.operators.len(), counts.join(", "));
    if !named.is_empty() {
        line.push_str(": ");
        line.push_str(&named.join(", "));
    }
    line
}

fn text(args: &Args, m: Option<&PtInspection>, errors: &[&Issue], warnings: &[&Issue]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{}", args.file.display());
    if let Some(m) = m {
        let _ = writeln!(s, "  kind:          {}", m.kind.describe());
        let _ = writeln!(s, "  verdict:       {}", m.verdict);
        let _ = writeln!(s, "  size:          {}", human_bytes(m.file_bytes));
        let _ = writeln!(
            s,
            "  safety:        {}",
            match m.safety {
                byom_core::torch::Safety::Safe =>
                    "safe (only allowlisted globals; nothing executed)",
                byom_core::torch::Safety::NeedsSource =>
                    "needs the model's Python source (whole pickled module)",
                byom_core::torch::Safety::Unsafe =>
                    "UNSAFE: refers to globals outside the allowlist",
                byom_core::torch::Safety::Unknown => "unknown (not read)",
            }
        );
        let _ = writeln!(
            s,
            "  tensors:       {} ({} parameters, {})",
            m.tensor_count,
            human_count(m.parameter_count),
            human_bytes(m.tensor_bytes)
        );
        if !m.dtypes.is_empty() {
            let d: Vec<String> = m.dtypes.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
            let _ = writeln!(s, "  dtypes:        {}", d.join(", "));
        }
        if let Some(v) = &m.min_torch {
            let _ = writeln!(s, "  min PyTorch:   {v}");
            for r in m.min_torch_reasons.iter().take(5) {
                let _ = writeln!(s, "                 - {r}");
            }
        }
        if let Some(v) = m.archive_version {
            let _ = writeln!(
                s,
                "  archive:       version {v}, top folder {:?}",
                m.archive_prefix.clone().unwrap_or_default()
            );
        }
        if let Some(p) = &m.key_prefix {
            let _ = writeln!(
                s,
                "  key prefix:    {p:?} on every key (stripped to recognise it)"
            );
        }
        match &m.arch {
            Some(a) => {
                let _ = writeln!(
                    s,
                    "  architecture:  {} ({} classes, {} input channels); compilable on the server: {}",
                    a.qualified(),
                    a.num_classes,
                    a.in_channels,
                    if m.server_compilable { format!("yes ({})", a.qualified()) } else { "no".into() }
                );
                if !m.arch_alternatives.is_empty() {
                    let _ = writeln!(
                        s,
                        "  same shapes:   {} (the weights cannot tell them apart)",
                        m.arch_alternatives.join(", ")
                    );
                }
                if !a.builder_kwargs.is_empty() {
                    let kw = serde_json::to_string(&a.builder_kwargs).unwrap_or_default();
                    let _ = writeln!(s, "  builder args:  {kw}");
                }
            }
            None => {
                if let Some(c) = &m.script_class {
                    let _ = writeln!(
                        s,
                        "  architecture:  {} (TorchScript root class {})",
                        c.display(),
                        c.qualified
                    );
                }
                let _ = writeln!(
                    s,
                    "  compilable on the server: {}",
                    if m.server_compilable { "yes" } else { "no" }
                );
            }
        }
        for (what, layer) in [
            ("input enters", &m.input_layer),
            ("output leaves", &m.output_layer),
        ] {
            if let Some(l) = layer {
                let _ = writeln!(
                    s,
                    "  {what}: {}.weight {:?} (proven by the TorchScript code)",
                    l.path, l.weight
                );
            }
        }
        if let Some(f) = &m.forward {
            let _ = writeln!(s, "  forward:       {}", f.display());
        }
        if !m.operators.is_empty() {
            let _ = writeln!(s, "  operators:     {}", operators_line(m, args.all));
        }
        if !m.custom_classes.is_empty() {
            let _ = writeln!(s, "  classes:       {}", m.custom_classes.join(", "));
        }
        if let Some(k) = &m.checkpoint_key {
            let _ = writeln!(s, "  checkpoint:    state dict under key {k:?}");
        }
        if !m.tensors.is_empty() {
            let mut ts: Vec<_> = m.tensors.iter().collect();
            if !args.all {
                ts.sort_by_key(|t| std::cmp::Reverse(t.bytes));
                ts.truncate(args.top);
            }
            let title = if args.all {
                "all tensors".to_string()
            } else {
                format!("largest {} tensors", ts.len())
            };
            let _ = writeln!(s, "  {title}:");
            let w = ts.iter().map(|t| t.name.len()).max().unwrap_or(0).min(60);
            for t in ts {
                let _ = writeln!(
                    s,
                    "    {:<w$}  {:<9} {:<20} {}",
                    t.name,
                    t.dtype,
                    format!("{:?}", t.shape),
                    human_bytes(t.bytes)
                );
            }
        }
        if !m.globals.is_empty() && m.safety != byom_core::torch::Safety::Safe {
            let _ = writeln!(s, "  globals:       {}", m.globals.join(", "));
        }
    } else {
        let _ = writeln!(s, "  no .pt file was inspected");
    }
    for i in errors {
        let _ = writeln!(s, "error[{}]: {}\n  hint: {}", i.code, i.message, i.hint);
    }
    for i in warnings {
        let _ = writeln!(s, "warning[{}]: {}\n  hint: {}", i.code, i.message, i.hint);
    }
    s
}
