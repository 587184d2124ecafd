//! The API's view of a job: per-target status, duration, failure reason, log tail, artifact
//! link and sha256, assembled from the job row and the worker's report (`result.json`, a
//! [`CompileReport`], stored in `jobs.result_json`).

use byom_compile::{CompileReport, Latency, TargetResult, TargetStatus, Verification};
use byom_compile::{Failure, Precision};
use serde::Serialize;

use crate::jobs::queue::JobRow;
use crate::jobs::{JobStatus, Target};

/// The stored report of a job, when it has one. A row written by an older server whose report
/// no longer reads as this version's type shows as a job without a report (its status and
/// failure reason still say how it ended).
pub fn report_of(job: &JobRow) -> Option<CompileReport> {
    serde_json::from_str(job.result_json.as_deref()?).ok()
}

/// How far a target's artifact was checked, in the three honest degrees the page shows. The
/// compile report says it in a sentence (`verification.status`); this is the same fact as a
/// closed set, so the page never has to guess from wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationState {
    /// Loaded and run on the target's own kind of device (the report says "verified on …").
    VerifiedOnDevice,
    /// A CPU target built on another CPU (arm64 on this x86_64 host): reloaded and its outputs
    /// compared here, but never run on the device itself.
    CheckedOnBuildHost,
    /// A GPU target with no GPU run (x86_64-cuda without a GPU, Jetson): reloaded and checked
    /// on the host's CPU at most; nothing ran on the device.
    BuiltNotRun,
    /// No verification in the report (the target failed).
    Unverified,
}

impl VerificationState {
    /// Classify a report entry. Only a status that starts with "verified on" counts as a run
    /// on the device; GPU targets otherwise never claim more than "built, not run".
    pub fn of(target: Target, verification: Option<&Verification>) -> VerificationState {
        let Some(v) = verification else {
            return VerificationState::Unverified;
        };
        if v.status.starts_with("verified on") {
            return VerificationState::VerifiedOnDevice;
        }
        if v.max_abs_error.is_some() && !target.is_cuda() {
            VerificationState::CheckedOnBuildHost
        } else {
            VerificationState::BuiltNotRun
        }
    }
}

/// The report's findings for one target, flattened for the page: the verification state and
/// the report's own sentence, the error against the original, latency before/after the
/// load-time step that was kept, and the bundle's sha256.
#[derive(Debug, Serialize)]
pub struct VerificationView {
    pub state: VerificationState,
    pub status: Option<String>,
    pub ran_on: Option<String>,
    pub max_abs_error: Option<f64>,
    pub max_rel_error: Option<f64>,
    pub tolerance: Option<f64>,
    pub original_p50_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p50_after_load_time_steps_ms: Option<f64>,
    pub latency_device: Option<String>,
    pub load_time_steps: Vec<String>,
    pub bundle_sha256: Option<String>,
    pub precision: Precision,
    pub latency_not_measured: Option<String>,
}

impl VerificationView {
    fn of(entry: &TargetResult, report: &CompileReport) -> VerificationView {
        let v = entry.verification.as_ref();
        let p50 = |l: Option<&Latency>| l.map(|l| l.p50_ms);
        VerificationView {
            state: VerificationState::of(entry.target, v),
            status: v.map(|v| v.status.clone()),
            ran_on: v.and_then(|v| v.ran_on.clone()),
            max_abs_error: v.and_then(|v| v.max_abs_error),
            max_rel_error: v.and_then(|v| v.max_rel_error),
            tolerance: v.map(|v| v.tolerance),
            original_p50_ms: p50(report.model.as_ref().and_then(|m| m.eager_latency.as_ref())),
            p50_ms: p50(v.and_then(|v| v.latency.as_ref())),
            p50_after_load_time_steps_ms: p50(
                v.and_then(|v| v.latency_after_load_time_steps.as_ref())
            ),
            latency_device: v.and_then(|v| v.latency.as_ref()).map(|l| l.device.clone()),
            load_time_steps: entry.load_time_steps.clone(),
            bundle_sha256: entry.bundle_sha256.clone(),
            precision: entry.precision,
            latency_not_measured: v.and_then(|v| v.latency_not_measured.clone()),
        }
    }
}

/// A target's state in the job view: the report's verdict once there is one, else the job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<TargetStatus> for TargetState {
    fn from(s: TargetStatus) -> Self {
        match s {
            TargetStatus::Succeeded => TargetState::Succeeded,
            TargetStatus::Failed => TargetState::Failed,
        }
    }
}

/// One target of a job.
#[derive(Debug, Serialize)]
pub struct TargetView {
    pub target: Target,
    pub status: TargetState,
    pub duration_ms: Option<u64>,
    pub failure_reason: Option<String>,
    pub log_tail: Option<String>,
    pub artifact_url: Option<String>,
    pub sha256: Option<String>,
    pub verification: Option<VerificationView>,
    pub failure: Option<Failure>,
    pub warnings: Vec<String>,
}

/// Lines of a target's log kept in its `log_tail`.
const TARGET_LOG_TAIL_LINES: usize = 20;

impl TargetView {
    /// A target the report covers.
    fn reported(job: &JobRow, entry: &TargetResult, report: &CompileReport) -> TargetView {
        let status = TargetState::from(entry.status);
        let start = entry.log.len().saturating_sub(TARGET_LOG_TAIL_LINES);
        TargetView {
            target: entry.target,
            status,
            duration_ms: Some(entry.duration_ms),
            failure_reason: entry.failure_reason.clone(),
            log_tail: Some(entry.log[start..].join("\n")),
            artifact_url: (status == TargetState::Succeeded)
                .then(|| format!("/api/v1/jobs/{}/artifacts/{}", job.id, entry.target)),
            sha256: entry.artifact_sha256.clone(),
            verification: Some(VerificationView::of(entry, report)),
            failure: entry.failure.clone(),
            warnings: entry.warnings.clone(),
        }
    }

    /// A target without a report entry: waiting, running, cancelled, or failed with the job.
    fn unreported(job: &JobRow, target: Target) -> TargetView {
        let status = match job.status {
            JobStatus::Queued => TargetState::Queued,
            JobStatus::Running => TargetState::Running,
            JobStatus::Cancelled => TargetState::Cancelled,
            JobStatus::Succeeded | JobStatus::Failed => TargetState::Failed,
        };
        TargetView {
            target,
            status,
            duration_ms: None,
            failure_reason: (status == TargetState::Failed)
                .then(|| job.failure_reason.clone())
                .flatten(),
            log_tail: None,
            artifact_url: None,
            sha256: None,
            verification: None,
            failure: None,
            warnings: Vec::new(),
        }
    }
}

/// The Job object of the API.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub id: String,
    pub package_id: String,
    pub status: JobStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub failure_reason: Option<String>,
    pub log_tail: Option<String>,
    pub failure: Option<Failure>,
    pub log_url: String,
    pub targets: Vec<TargetView>,
    pub report: Option<CompileReport>,
}

impl JobView {
    pub fn of(job: &JobRow) -> JobView {
        let report = report_of(job);
        let targets = job
            .targets
            .iter()
            .map(|&t| {
                let entry = report
                    .as_ref()
                    .and_then(|r| r.targets.iter().find(|e| e.target == t).map(|e| (e, r)));
                match entry {
                    Some((e, r)) => TargetView::reported(job, e, r),
                    None => TargetView::unreported(job, t),
                }
            })
            .collect();
        JobView {
            id: job.id.clone(),
            package_id: job.package_id.clone(),
            status: job.status,
            created_at: job.created_at.clone(),
            started_at: job.started_at.clone(),
            finished_at: job.finished_at.clone(),
            failure_reason: job.failure_reason.clone(),
            log_tail: job.log_tail.clone(),
            failure: report.as_ref().and_then(|r| r.failure.clone()),
            log_url: format!("/api/v1/jobs/{}/log", job.id),
            targets,
            report,
        }
    }

    /// Whether `target`'s bundle can be downloaded (the target succeeded).
    pub fn succeeded(&self, target: Target) -> bool {
        self.targets
            .iter()
            .any(|t| t.target == target && t.status == TargetState::Succeeded)
    }
}

/// `{"job": Job}`: the answer of compile, show and cancel.
#[derive(Debug, Serialize)]
pub struct JobResponse {
    pub job: JobView,
}

/// `{"jobs": [Job]}`.
#[derive(Debug, Serialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// The job's whole log as text (`GET /api/v1/jobs/{id}/log`): the worker's job log, then each
/// target's lines prefixed `[target]`, as the worker's log.txt has them; the runner's log tail
/// when the worker left no report (it crashed or was killed).
pub fn full_log(job: &JobRow) -> String {
    let mut text = format!("job {} ({})\n", job.id, job.status);
    if let Some(reason) = &job.failure_reason {
        text.push_str(&format!("failure: {reason}\n"));
    }
    match report_of(job) {
        Some(r) => {
            for line in &r.log {
                text.push_str(line);
                text.push('\n');
            }
            for t in &r.targets {
                for line in &t.log {
                    text.push_str(&format!("[{}] {line}\n", t.target));
                }
            }
        }
        None => {
            if let Some(tail) = &job.log_tail {
                text.push_str(tail);
                text.push('\n');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use byom_compile::FailureKind;
    use serde_json::{json, Value};

    fn row(result: Option<&CompileReport>) -> JobRow {
        JobRow {
            id: "job_1".into(),
            tenant_id: "t".into(),
            package_id: "pkg_1".into(),
            status: JobStatus::Failed,
            targets: vec![Target::X86_64Cpu],
            created_at: "now".into(),
            started_at: None,
            finished_at: None,
            failure_reason: Some("failed targets: x86_64-cpu".into()),
            result_json: result.map(|r| serde_json::to_string(r).unwrap()),
            log_tail: Some("the tail".into()),
            attempts: 1,
        }
    }

    fn view(job: &JobRow) -> Value {
        serde_json::to_value(JobView::of(job)).unwrap()
    }

    #[test]
    fn failures_and_the_whole_log_reach_the_api() {
        let mut failure = Failure::new(
            FailureKind::Forward,
            "the model's forward pass failed: boom",
        );
        failure.hint = Some("write [1, 3, 8, 8]".into());
        failure.model_code = Some("code/__torch__.py:9".into());
        failure.detail = "Traceback\nboom".into();
        let mut report = CompileReport::job_failed(
            &[Target::X86_64Cpu],
            failure.clone(),
            vec![
                "job failed: the model's forward pass failed: boom".into(),
                "full error:\nTraceback\nboom".into(),
            ],
        );
        report.targets[0].warnings = vec!["cast".into()];
        report.targets[0].log = vec!["failed: boom".into()];
        let job = row(Some(&report));
        let v = view(&job);
        let failure_json = json!({"kind": "forward", "summary": "the model's forward pass failed: boom",
            "hint": "write [1, 3, 8, 8]", "model_code": "code/__torch__.py:9", "detail": "Traceback\nboom"});
        assert_eq!(v["failure"], failure_json);
        assert_eq!(v["log_url"], "/api/v1/jobs/job_1/log");
        assert_eq!(v["status"], "failed");
        let t = &v["targets"][0];
        assert_eq!(t["target"], "x86_64-cpu");
        assert_eq!(t["status"], "failed");
        assert_eq!(t["failure"]["hint"], "write [1, 3, 8, 8]");
        assert_eq!(t["warnings"], json!(["cast"]));
        assert_eq!(t["log_tail"], "failed: boom");
        assert_eq!(t["artifact_url"], Value::Null);
        assert_eq!(t["verification"]["state"], "unverified");
        assert_eq!(t["verification"]["precision"], "fp32");
        // The stored report comes back as the worker wrote it.
        assert_eq!(v["report"], serde_json::to_value(&report).unwrap());
        let log = full_log(&job);
        assert!(
            log.starts_with("job job_1 (failed)\nfailure: failed targets: x86_64-cpu\n"),
            "{log}"
        );
        assert!(
            log.contains("full error:\nTraceback\nboom\n[x86_64-cpu] failed: boom\n"),
            "{log}"
        );
        // No report (the worker died): the runner's tail, and no failure object.
        let bare = row(None);
        assert!(full_log(&bare).ends_with("the tail\n"));
        let v = view(&bare);
        assert_eq!(v["failure"], Value::Null);
        assert_eq!(v["report"], Value::Null);
        assert_eq!(v["targets"][0]["failure"], Value::Null);
        assert_eq!(v["targets"][0]["status"], "failed");
        assert_eq!(
            v["targets"][0]["failure_reason"],
            "failed targets: x86_64-cpu"
        );
        // A queued job's targets are queued, with no reason.
        let mut queued = row(None);
        queued.status = JobStatus::Queued;
        assert_eq!(view(&queued)["targets"][0]["status"], "queued");
        assert_eq!(view(&queued)["targets"][0]["failure_reason"], Value::Null);
    }

    /// The report's sentences as byom-compile writes them today, and what each must classify as.
    #[test]
    fn verification_states_are_truthful() {
        let v = |status: &str, compared: bool| Verification {
            status: status.into(),
            reloaded: true,
            ran_on: None,
            max_abs_error: compared.then_some(1e-6),
            max_rel_error: None,
            tolerance: 1e-4,
            latency: None,
            latency_after_load_time_steps: None,
            latency_not_measured: None,
        };
        let s = |t, x: Verification| VerificationState::of(t, Some(&x));
        assert_eq!(
            s(
                Target::X86_64Cpu,
                v("verified on this host's x86_64 CPU", true)
            ),
            VerificationState::VerifiedOnDevice
        );
        assert_eq!(
            s(
                Target::Arm64Cpu,
                v(
                    "built here, not run on the device (outputs checked on this x86_64 host)",
                    true
                )
            ),
            VerificationState::CheckedOnBuildHost
        );
        // Checked on the host's CPU, yet never run on a GPU: that is "built, not run".
        assert_eq!(
            s(
                Target::X86_64Cuda,
                v(
                    "built, not run: no GPU (reloaded and checked on this host's CPU)",
                    true
                )
            ),
            VerificationState::BuiltNotRun
        );
        assert_eq!(
            s(
                Target::JetsonXavier,
                v(
                    "built here, not run on the device (fp16 outputs checked on this host's CPU)",
                    true
                )
            ),
            VerificationState::BuiltNotRun
        );
        assert_eq!(
            s(Target::X86_64Cuda, v("verified on NVIDIA H200", true)),
            VerificationState::VerifiedOnDevice
        );
        assert_eq!(
            s(Target::Arm64Cpu, v("built here", false)),
            VerificationState::BuiltNotRun
        );
        assert_eq!(
            VerificationState::of(Target::X86_64Cpu, None),
            VerificationState::Unverified
        );
        assert_eq!(
            serde_json::to_value(VerificationState::CheckedOnBuildHost).unwrap(),
            "checked_on_build_host"
        );
    }
}
