//! The job: prepare the model once, then build, check and bundle each target.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tch::Kind;

use crate::bundle::{self, Deployment};
use crate::detections;
use crate::error::CompileError;
use crate::failure::{Failure, FailureKind};
use crate::isolate;
use crate::options::CompileOptions;
use crate::plan::{self, Plan};
use crate::prepare::{self, Prepared};
use crate::progress;
use crate::report::{CompileReport, HostInfo, TargetResult, TargetStatus, Verification};
use crate::shim::{self, BenchSpec, BenchStep, Cast};
use crate::target::{Precision, Target};
use crate::verify;

/// Relative tolerance of fp32 on a CUDA GPU: cuDNN convolutions use TF32 by default on
/// Ampere and newer, which keeps 10 mantissa bits.
const CUDA_FP32_TOLERANCE: f64 = 1e-3;

/// Name of the first NVIDIA GPU, from the driver's /proc entry (no CUDA call needed).
fn gpu_name() -> Option<String> {
    let dir = fs::read_dir("/proc/driver/nvidia/gpus").ok()?;
    for entry in dir.flatten() {
        if let Ok(text) = fs::read_to_string(entry.path().join("information")) {
            if let Some(line) = text.lines().find(|l| l.starts_with("Model:")) {
                return Some(line.trim_start_matches("Model:").trim().to_string());
            }
        }
    }
    None
}

/// Shared state of one job.
struct Job<'a> {
    prepared: Prepared,
    opts: &'a CompileOptions,
    work: PathBuf,
    out_dir: &'a Path,
    /// The GPU this host can run on, if any (`tch::Cuda::is_available()`).
    gpu: Option<String>,
    /// Artifacts already produced, by plan key.
    artifacts: BTreeMap<&'static str, PathBuf>,
}

impl Job<'_> {
    fn artifact(&mut self, plan: &Plan) -> Result<PathBuf, String> {
        if let Some(p) = self.artifacts.get(plan.artifact_key) {
            return Ok(p.clone());
        }
        let out = self.work.join(format!("{}.pt", plan.artifact_key));
        let source = match (&self.prepared.eager_half_path, plan.half) {
            (Some(half), true) => half,
            _ => &self.prepared.eager_path,
        };
        let cast = match (plan.half, plan.cast_to_fp32) {
            (true, _) => Cast::Fp16,
            (false, true) => Cast::Fp32,
            (false, false) => Cast::Keep,
        };
        progress::step(&format!(
            "building the {} artifact ({}{})",
            plan.artifact_key,
            if plan.freeze { "freezing" } else { "unfrozen" },
            match cast {
                Cast::Fp16 => ", weights to fp16",
                Cast::Fp32 => ", weights to fp32",
                Cast::Keep => "",
            }
        ));
        shim::transform(source, &out, plan.device, cast, plan.freeze)?;
        self.artifacts.insert(plan.artifact_key, out.clone());
        Ok(out)
    }

    /// How outputs are compared: a detector's documented `[B, rows, 6]` rows as detections.
    fn parity(&self) -> verify::Parity {
        let shape = &self.prepared.summary.output_shape;
        match detections::Layout::of(shape) {
            Some(layout) if self.prepared.declared.model_type == "object_detection" => {
                verify::Parity::Detections(layout)
            }
            _ => verify::Parity::Values,
        }
    }

    /// The precision of the model's own weights.
    fn model_precision(&self) -> Precision {
        precision_of(self.prepared.kind)
    }

    /// The plan for `target` and this model.
    fn plan(&self, target: Target) -> Plan {
        plan::for_model(target, self.gpu.is_some(), self.model_precision())
    }

    /// A run of an artifact whose weights (and so its input) are in `weights` precision.
    fn spec<'s>(&'s self, device: &'s str, weights: Precision, step: BenchStep) -> BenchSpec<'s> {
        BenchSpec {
            device,
            step,
            half: weights == Precision::Fp16,
            shape: &self.prepared.declared.input_shape,
            select: &self.prepared.selector,
            warmup: self.opts.warmup_runs,
            iters: self.opts.timed_runs,
        }
    }
}

/// The precision of weights of `kind` (a model's parameters).
fn precision_of(kind: Kind) -> Precision {
    match kind {
        Kind::Half => Precision::Fp16,
        Kind::BFloat16 => Precision::Bf16,
        Kind::Double => Precision::Fp64,
        _ => Precision::Fp32,
    }
}

fn tolerance(target: Target, on_gpu: bool, weights: Kind) -> f64 {
    if target.precision() == Precision::Fp16 || weights == Kind::Half || weights == Kind::BFloat16 {
        Precision::Fp16.tolerance()
    } else if on_gpu {
        CUDA_FP32_TOLERANCE
    } else {
        Precision::Fp32.tolerance()
    }
}

/// How long a load-time candidate may run in its own process: generous against the artifact
/// as saved (`saved`: its load, warm-up and timed runs here), since the child also starts and
/// loads libtorch, and never under two minutes on a loaded host.
fn probe_deadline(saved: Duration) -> Duration {
    (saved * 20).max(Duration::from_secs(120))
}

/// Runs the artifact as the target's plan says and returns the verification record.
fn verify_target(
    job: &Job<'_>,
    target: Target,
    plan: &mut Plan,
    artifact: &Path,
    log: &mut Vec<String>,
) -> Result<Verification, Failure> {
    let reference = &job.prepared.reference;
    let on_gpu = plan.device == "cuda";
    let tol = tolerance(target, on_gpu, job.prepared.kind);
    let (device, label, status) = match (target, &job.gpu) {
        (Target::X86_64Cpu, _) => (
            "cpu",
            "this host's CPU".to_string(),
            "verified on this host's x86_64 CPU".to_string(),
        ),
        (Target::Arm64Cpu, _) => (
            "cpu",
            "this x86_64 host's CPU (not the arm64 device)".to_string(),
            "built here, not run on the device (outputs checked on this x86_64 host)".to_string(),
        ),
        (Target::X86_64Cuda, Some(gpu)) => ("cuda", gpu.clone(), format!("verified on {gpu}")),
        (Target::X86_64Cuda, None) => (
            "cpu",
            "this host's CPU".to_string(),
            "built, not run: no GPU (reloaded and checked on this host's CPU)".to_string(),
        ),
        (Target::JetsonXavier, Some(gpu)) => (
            "cuda",
            gpu.clone(),
            format!("built here, not run on the device (fp16 outputs checked on {gpu})"),
        ),
        (Target::JetsonXavier, None) => (
            "cpu",
            "this host's CPU".to_string(),
            "built here, not run on the device (fp16 outputs checked on this host's CPU)"
                .to_string(),
        ),
    };
    // Time only what runs where it ships: a Jetson's speed is not this host's (its fp16 on an
    // x86 CPU took 90 s for YOLOv8n and said nothing), nor is a GPU artifact's on a CPU. One
    // untimed forward still checks that the artifact reloads and computes the original's
    // outputs.
    let not_measured = match (target, device) {
        (Target::JetsonXavier, _) => Some(
            "not measured: no device (no Jetson Xavier here; no time from this host would say \
             how fast it runs there)",
        ),
        (Target::X86_64Cuda, "cpu") => Some("not measured: no GPU on the build host"),
        _ => None,
    };
    let weights = plan::deployed_precision(plan, job.model_precision());
    let mut spec = job.spec(device, weights, BenchStep::None);
    if not_measured.is_some() {
        (spec.warmup, spec.iters) = (0, 0);
    }
    progress::step(&format!(
        "reloading and running the {target} artifact on {label}"
    ));
    let saved_started = Instant::now();
    let checked = match verify::check(artifact, &spec, reference, job.parity(), tol, &label) {
        Ok(c) => c,
        Err(e) => {
            return Err(Failure::torch(
                FailureKind::Verification,
                "the artifact failed to reload and run",
                &e,
            ))
        }
    };
    log.push(format!(
        "reloaded and ran on {label}: max abs error {:.3e}, max rel error {:.3e} (tolerance {:.0e})",
        checked.max_abs, checked.max_rel, checked.tolerance
    ));
    if let Some(note) = &checked.note {
        log.push(format!("compared as detections: {note}"));
    }
    if !checked.within {
        return Err(Failure::new(
            FailureKind::Verification,
            match &checked.note {
                Some(note) => format!("the artifact's detections differ from the original's: {note}"),
                None => format!(
                    "the artifact's output differs from the original's: max rel error {:.3e} over tolerance {tol:.0e}",
                    checked.max_rel
                ),
            },
        ));
    }
    // Latency of what ships: CPU artifacts, and GPU ones where a GPU ran them.
    let latency = match not_measured {
        Some(why) => {
            log.push(format!("latency {why}"));
            None
        }
        None => checked.latency.clone(),
    };
    // Each load-time candidate on the same artifact, same run; keep the fastest that beats the
    // artifact as saved and computes the same outputs. Each runs in a process of its own
    // (isolate.rs): they take code paths of libtorch the saved artifact never takes, and a
    // crash there must cost the candidate, not the job.
    let saved_p50 = latency.as_ref().map_or(f64::INFINITY, |l| l.p50_ms);
    let (mut best, mut chosen, mut after_steps) = (saved_p50, None, None);
    let deadline = probe_deadline(saved_started.elapsed());
    let operators: Vec<String> = job
        .prepared
        .summary
        .operator_libraries
        .iter()
        .flat_map(|l| l.operators.iter().cloned())
        .collect();
    for (step, load_step) in &plan.load_time_candidates {
        let name = &load_step.name;
        let spec = job.spec(device, weights, *step);
        let run = isolate::bench(artifact, &spec, &operators, &job.work, deadline)
            .map_err(|e| e.to_string())
            .and_then(|run| verify::compare(run, reference, job.parity(), tol, &label));
        match run {
            Ok(run) if run.within => {
                let p50 = run.latency.as_ref().map_or(f64::INFINITY, |l| l.p50_ms);
                log.push(format!(
                    "load-time step {name}: p50 {p50:.3} ms vs {saved_p50:.3} ms as saved (max rel error {:.3e})",
                    run.max_rel
                ));
                if p50 < best {
                    best = p50;
                    chosen = Some(load_step.clone());
                    after_steps = run.latency;
                }
            }
            Ok(run) => log.push(format!(
                "load-time step {name} changes outputs (max rel error {:.3e}): not used",
                run.max_rel
            )),
            Err(e) => log.push(format!("load-time step {name} failed here ({e}): not used")),
        }
    }
    if !plan.load_time_candidates.is_empty() {
        match &chosen {
            Some(step) => log.push(format!("load-time step kept: {} (fastest)", step.name)),
            None => log.push("no load-time step is faster for this model here: none kept".into()),
        }
        plan.load_time_steps.extend(chosen);
    }
    Ok(Verification {
        status,
        reloaded: true,
        ran_on: Some(label),
        max_abs_error: Some(checked.max_abs),
        max_rel_error: Some(checked.max_rel),
        tolerance: checked.tolerance,
        latency,
        latency_after_load_time_steps: after_steps,
        latency_not_measured: not_measured.map(str::to_string),
    })
}

/// Minimum torch to load `artifact`, from the core's version reader.
fn min_torch(artifact: &Path, opts: &CompileOptions) -> Result<Option<String>, String> {
    let bytes = fs::read(artifact).map_err(|e| e.to_string())?;
    let (inspection, _) = byom_core::torch::inspect_bytes(&bytes, &opts.settings, "model.pt");
    Ok(inspection.min_torch)
}

fn build_target(job: &mut Job<'_>, target: Target, identical_to: &[Target]) -> TargetResult {
    let started = Instant::now();
    let mut log = Vec::new();
    let mut plan = job.plan(target);
    let model_precision = job.model_precision();
    let precision = plan::deployed_precision(&plan, model_precision);
    let mut result = TargetResult::failed(target, None);
    result.passes = plan.passes.clone();
    result.precision = precision;
    result
        .warnings
        .extend(job.prepared.warnings.iter().cloned());
    if plan.cast_to_fp32 {
        result.warnings.push(format!(
            "the model's weights are {model}, which a CPU runs 10-30x slower than fp32 in \
             libtorch: this {target} artifact has its weights cast to fp32 and takes a float32 \
             input (outputs checked against the {model} original)",
            model = model_precision.as_str()
        ));
    }
    let outcome = (|| -> Result<(), Failure> {
        let artifact = job
            .artifact(&plan)
            .map_err(|e| Failure::torch(FailureKind::Build, "building the artifact failed", &e))?;
        log.push(format!(
            "{} on {} ({}{}): {}",
            if plan.freeze {
                "froze"
            } else {
                "kept unfrozen"
            },
            plan.device,
            precision.as_str(),
            match (plan.half, plan.cast_to_fp32) {
                (true, _) => ", weights cast to fp16",
                (false, true) => ", weights cast to fp32",
                (false, false) => "",
            },
            plan.passes
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if target == Target::Arm64Cpu {
            let graph = shim::graph_text(&artifact).map_err(|e| {
                Failure::torch(
                    FailureKind::Build,
                    "reading the artifact's graph failed",
                    &e,
                )
            })?;
            let found = plan::x86_only_ops(&graph);
            if !found.is_empty() {
                return Err(Failure::new(
                    FailureKind::TargetRuntime,
                    format!(
                        "the graph contains x86-only ops ({}): it cannot run on arm64",
                        found.join(", ")
                    ),
                ));
            }
            log.push("checked the graph: no x86-only (mkldnn/fbgemm) ops".into());
        }
        let sha = bundle::sha256_file(&artifact).map_err(|e| e.failure())?;
        let min = min_torch(&artifact, job.opts).map_err(|e| Failure::new(FailureKind::Io, e))?;
        let runtime = target.runtime();
        let ships = runtime.torch;
        match min.as_deref() {
            Some(min) => match runtime.ships_at_least(min) {
                Some(true) => log.push(format!("needs torch >= {min}; the target ships {ships}")),
                Some(false) => {
                    return Err(Failure::new(
                        FailureKind::TargetRuntime,
                        format!(
                        "the artifact needs torch >= {min} but {target} ships torch {ships} ({})",
                        runtime.description
                    ),
                    ))
                }
                None => log.push(format!("minimum torch {min:?} not comparable with {ships}")),
            },
            None => log.push("the version reader gave no minimum torch for the artifact".into()),
        }
        result.min_torch_runtime = min.clone();
        let verification = verify_target(job, target, &mut plan, &artifact, &mut log)?;
        let bytes = fs::metadata(&artifact)
            .map_err(|e| CompileError::io(&artifact)(e).failure())?
            .len();
        let deployment = bundle::deployment_json(&Deployment {
            target,
            plan: &plan,
            passes: &plan.passes,
            declared: &job.prepared.declared,
            model: &job.prepared.summary,
            selector: &job.prepared.selector,
            package_sha256: &job.prepared.package.sha256,
            artifact_sha256: &sha,
            artifact_bytes: bytes,
            min_torch: min.as_deref(),
            verification: &verification,
            identical_to,
            precision,
            source_precision: model_precision,
            warnings: &result.warnings,
        });
        let (archive, archive_sha) =
            bundle::write(job.out_dir, target, &artifact, &deployment).map_err(|e| e.failure())?;
        result.artifact_sha256 = Some(sha);
        result.bundle = Some(archive);
        result.bundle_sha256 = Some(archive_sha);
        result.verification = Some(verification);
        Ok(())
    })();
    result.load_time_steps = plan
        .load_time_steps
        .iter()
        .map(|s| s.name.clone())
        .collect();
    match outcome {
        Ok(()) => result.status = TargetStatus::Succeeded,
        Err(failure) => {
            log.extend(failure.log_lines("failed"));
            result.failure_reason = Some(failure.summary.clone());
            result.failure = Some(failure);
        }
    }
    result.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    result.log = log;
    result
}

/// Fills `identical_artifact_to` from the artifacts' actual sha256 and says so in the log.
fn mark_identical(results: &mut [TargetResult], log: &mut Vec<String>) {
    let shas: Vec<(Target, Option<String>)> = results
        .iter()
        .map(|r| (r.target, r.artifact_sha256.clone()))
        .collect();
    for r in results.iter_mut() {
        let Some(sha) = &r.artifact_sha256 else {
            continue;
        };
        r.identical_artifact_to = shas
            .iter()
            .filter(|(t, s)| *t != r.target && s.as_ref() == Some(sha))
            .map(|(t, _)| *t)
            .collect();
    }
    let mut seen: Vec<&str> = Vec::new();
    for r in results.iter() {
        let Some(sha) = r.artifact_sha256.as_deref() else {
            continue;
        };
        if r.identical_artifact_to.is_empty() || seen.contains(&sha) {
            continue;
        }
        seen.push(sha);
        let mut names = vec![r.target.as_str()];
        names.extend(r.identical_artifact_to.iter().map(|t| t.as_str()));
        log.push(format!(
            "{} share one byte-identical model.pt (sha256 {sha}); their bundles differ only in deployment.json",
            names.join(" and ")
        ));
    }
}

/// Writes `report` to `out_dir/report.json` atomically.
pub fn write_report(out_dir: &Path, report: &CompileReport) -> Result<(), CompileError> {
    let path = out_dir.join("report.json");
    crate::atomic_write(
        &path,
        &serde_json::to_vec_pretty(report).unwrap_or_default(),
    )
}

/// See [`crate::compile_package`].
pub fn run(
    package: &Path,
    targets: &[Target],
    out_dir: &Path,
    opts: &CompileOptions,
) -> Result<CompileReport, CompileError> {
    let started = Instant::now();
    let mut wanted: Vec<Target> = Vec::new();
    for &t in targets {
        if !wanted.contains(&t) {
            wanted.push(t);
        }
    }
    if wanted.is_empty() {
        return Err(CompileError::NoTargets);
    }
    fs::create_dir_all(out_dir).map_err(CompileError::io(out_dir))?;
    let work = out_dir.join(".work");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(CompileError::io(&work))?;
    }
    fs::create_dir_all(&work).map_err(CompileError::io(&work))?;
    if opts.threads > 0 {
        tch::set_num_threads(opts.threads);
    }
    let gpu =
        tch::Cuda::is_available().then(|| gpu_name().unwrap_or_else(|| "a CUDA GPU".to_string()));
    let host = HostInfo {
        libtorch: crate::LIBTORCH_VERSION.to_string(),
        threads: tch::get_num_threads(),
        cuda_device: gpu.clone(),
    };
    let mut log = vec![format!(
        "libtorch {}, {} thread(s), GPU: {}",
        host.libtorch,
        host.threads,
        gpu.as_deref().unwrap_or("none")
    )];
    let want_half = wanted.iter().any(|t| t.precision() == Precision::Fp16);
    let prepared = match prepare::prepare(package, &work, opts, want_half, &mut log) {
        Ok(p) => p,
        Err(e) => {
            let failure = e.failure();
            log.extend(failure.log_lines("job failed"));
            let mut report = CompileReport::job_failed(&wanted, failure, log);
            report.host = host;
            report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            write_report(out_dir, &report)?;
            if !opts.keep_work_dir {
                let _ = fs::remove_dir_all(&work);
            }
            return Err(e);
        }
    };
    let mut job = Job {
        prepared,
        opts,
        work: work.clone(),
        out_dir,
        gpu,
        artifacts: BTreeMap::new(),
    };
    progress::step("timing the model as uploaded");
    let eager = job.spec("cpu", job.model_precision(), BenchStep::None);
    match shim::bench(&job.prepared.eager_path, &eager) {
        Ok(run) => {
            job.prepared.summary.eager_latency = verify::latency(&run.times_ms, "this host's CPU")
        }
        Err(e) => log.push(format!("could not time the eager module: {e}")),
    }
    // Targets whose plans share an artifact get the same file: known before building, so each
    // deployment.json can name the others.
    let keys: Vec<(Target, &'static str)> = wanted
        .iter()
        .map(|&t| (t, job.plan(t).artifact_key))
        .collect();
    let mut results = Vec::new();
    for &(t, k) in &keys {
        let same: Vec<Target> = keys
            .iter()
            .filter(|&&(o, ok)| o != t && ok == k)
            .map(|&(o, _)| o)
            .collect();
        results.push(build_target(&mut job, t, &same));
    }
    mark_identical(&mut results, &mut log);
    let report = CompileReport {
        byom_version: crate::VERSION.to_string(),
        package_sha256: Some(job.prepared.package.sha256.clone()),
        failure_reason: None,
        failure: None,
        model: Some(job.prepared.summary.clone()),
        host,
        targets: results,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        log,
    };
    write_report(out_dir, &report)?;
    if !opts.keep_work_dir {
        let _ = fs::remove_dir_all(&work);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::tests::package;
    use sha2::{Digest, Sha256};

    #[test]
    fn a_package_of_typeflag_7_members_compiles() {
        // Issue 10: valid in the browser and on upload, then "mochi.json not found" at compile,
        // because the compile step read the archive with a second tar reader. Now the verdict
        // and the compile come from one reading.
        let dir = std::env::temp_dir().join(format!("byom-compile-seven-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let bytes = package(b'7');
        let pkg = dir.join("seven.tar.gz");
        fs::write(&pkg, &bytes).unwrap();
        let opts = CompileOptions {
            warmup_runs: 1,
            timed_runs: 2,
            ..CompileOptions::default()
        };
        let report = crate::compile_package(&pkg, &[Target::X86_64Cpu], &dir.join("out"), &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(report.succeeded(), "{:#?}", report);
        assert_eq!(
            report.package_sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&bytes)).as_str())
        );
        let model = report.model.as_ref().unwrap();
        assert_eq!(model.kind, "torchscript_traced");
        assert_eq!(model.input_shape, [1, 3, 224, 224]);
        assert_eq!(model.output_shape, [1, 2]);
        let _ = fs::remove_dir_all(&dir);
    }
}
