//! The API's view of a job: per-target status, duration, failure reason, log tail, artifact
//! link and sha256, assembled from the job row and the worker's `result.json`.

use serde_json::{json, Value};

use super::queue::JobRow;

/// The entry for `target` in a CompileReport (`{"targets": [{"target": …}, …]}`).
pub fn target_result<'a>(report: &'a Value, target: &str) -> Option<&'a Value> {
    report
        .get("targets")?
        .as_array()?
        .iter()
        .find(|t| t.get("target").and_then(Value::as_str) == Some(target))
}

fn log_tail(entry: &Value) -> Option<String> {
    let lines = entry.get("log")?.as_array()?;
    let start = lines.len().saturating_sub(20);
    Some(
        lines[start..]
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// How far a target's artifact was checked, in the three honest degrees the page shows. The
/// compile report says it in a sentence (`verification.status`); this is the same fact as a
/// closed set, so the page never has to guess from wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationState {
    /// Loaded and run on the target's own kind of device (the report says "verified on …").
    VerifiedOnDevice,
    /// A CPU target built on another CPU (arm64 on this x86_64 host): reloaded and its outputs
    /// compared here, but never run on the device itself.
    CheckedOnBuildHost,
    /// A GPU target with no GPU run (x86_64-cuda without a GPU, Jetson): reloaded and checked
    /// on the host's CPU at most; nothing ran on the device.
    BuiltNotRun,
    /// No verification in the report (the target failed, or an older report).
    Unverified,
}

impl VerificationState {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationState::VerifiedOnDevice => "verified_on_device",
            VerificationState::CheckedOnBuildHost => "checked_on_build_host",
            VerificationState::BuiltNotRun => "built_not_run",
            VerificationState::Unverified => "unverified",
        }
    }

    /// Classify a report entry. Only a status that starts with "verified on" counts as a run
    /// on the device; GPU targets otherwise never claim more than "built, not run".
    pub fn of(target: &str, verification: Option<&Value>) -> VerificationState {
        let Some(v) = verification.filter(|v| v.is_object()) else {
            return VerificationState::Unverified;
        };
        let status = v.get("status").and_then(Value::as_str).unwrap_or("");
        if status.starts_with("verified on") {
            return VerificationState::VerifiedOnDevice;
        }
        let compared = v.get("max_abs_error").is_some_and(|e| !e.is_null());
        let gpu_target = matches!(target, "x86_64-cuda" | "jetson-xavier");
        if compared && !gpu_target {
            VerificationState::CheckedOnBuildHost
        } else {
            VerificationState::BuiltNotRun
        }
    }
}

fn p50(latency: Option<&Value>) -> Option<f64> {
    latency?.get("p50_ms")?.as_f64()
}

/// The report's findings for one target, flattened for the page: the verification state and
/// the report's own sentence, the error against the original, latency before/after the
/// load-time step that was kept, and the bundle's sha256.
fn verification_json(target: &str, entry: &Value, report: Option<&Value>) -> Value {
    let v = entry.get("verification");
    let state = VerificationState::of(target, v);
    let v = v.filter(|v| v.is_object());
    let get = |k: &str| v.and_then(|v| v.get(k)).cloned().unwrap_or(Value::Null);
    let eager = report
        .and_then(|r| r.get("model"))
        .and_then(|m| m.get("eager_latency"));
    json!({
        "state": state.as_str(),
        "status": get("status"),
        "ran_on": get("ran_on"),
        "max_abs_error": get("max_abs_error"),
        "max_rel_error": get("max_rel_error"),
        "tolerance": get("tolerance"),
        "original_p50_ms": p50(eager),
        "p50_ms": p50(v.and_then(|v| v.get("latency"))),
        "p50_after_load_time_steps_ms": p50(v.and_then(|v| v.get("latency_after_load_time_steps"))),
        "latency_device": v.and_then(|v| v.get("latency")).and_then(|l| l.get("device")).cloned().unwrap_or(Value::Null),
        "load_time_steps": entry.get("load_time_steps").cloned().unwrap_or(json!([])),
        "bundle_sha256": entry.get("bundle_sha256").cloned().unwrap_or(Value::Null),
        "precision": entry.get("precision").cloned().unwrap_or(Value::Null),
        "latency_not_measured": get("latency_not_measured"),
    })
}

/// A report's structured failure (`{kind, summary, hint, model_code, detail}`), or null.
fn failure_json(failure: Option<&Value>) -> Value {
    match failure {
        Some(f) if f.is_object() => json!({
            "kind": f.get("kind").cloned().unwrap_or(Value::Null),
            "summary": f.get("summary").cloned().unwrap_or(Value::Null),
            "hint": f.get("hint").cloned().unwrap_or(Value::Null),
            "model_code": f.get("model_code").cloned().unwrap_or(Value::Null),
            "detail": f.get("detail").cloned().unwrap_or(Value::Null),
        }),
        _ => Value::Null,
    }
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The job's whole log as text (`GET /api/v1/jobs/{id}/log`): the worker's job log, then each
/// target's lines prefixed `[target]`, as the worker's log.txt has them; the runner's log tail
/// when the worker left no report (it crashed or was killed).
pub fn full_log(job: &JobRow) -> String {
    let report: Option<Value> = job
        .result_json
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    let mut text = format!("job {} ({})\n", job.id, job.status);
    if let Some(reason) = &job.failure_reason {
        text.push_str(&format!("failure: {reason}\n"));
    }
    match &report {
        Some(r) => {
            for line in strings(r.get("log")) {
                text.push_str(line);
                text.push('\n');
            }
            for t in r
                .get("targets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = t.get("target").and_then(Value::as_str).unwrap_or("?");
                for line in strings(t.get("log")) {
                    text.push_str(&format!("[{name}] {line}\n"));
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

/// The Job object of the API.
pub fn job_json(job: &JobRow) -> Value {
    let report: Option<Value> = job
        .result_json
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    let targets: Vec<Value> = job
        .targets
        .iter()
        .map(|t| {
            let entry = report.as_ref().and_then(|r| target_result(r, t));
            match entry {
                Some(e) => {
                    let status = match e.get("status").and_then(Value::as_str) {
                        Some("succeeded") => "succeeded",
                        _ => "failed",
                    };
                    json!({
                        "target": t,
                        "status": status,
                        "duration_ms": e.get("duration_ms").and_then(Value::as_u64),
                        "failure_reason": e.get("failure_reason").and_then(Value::as_str),
                        "log_tail": log_tail(e),
                        "artifact_url": (status == "succeeded").then(|| format!("/api/v1/jobs/{}/artifacts/{t}", job.id)),
                        "sha256": e.get("artifact_sha256").and_then(Value::as_str),
                        "verification": verification_json(t, e, report.as_ref()),
                        "failure": failure_json(e.get("failure")),
                        "warnings": strings(e.get("warnings")),
                    })
                }
                None => {
                    let status = match job.status.as_str() {
                        "queued" | "running" | "cancelled" => job.status.as_str(),
                        _ => "failed",
                    };
                    json!({
                        "target": t,
                        "status": status,
                        "duration_ms": null,
                        "failure_reason": if status == "failed" { job.failure_reason.clone() } else { None },
                        "log_tail": null,
                        "artifact_url": null,
                        "sha256": null,
                        "verification": null,
                        "failure": null,
                        "warnings": [],
                    })
                }
            }
        })
        .collect();
    json!({
        "id": job.id,
        "package_id": job.package_id,
        "status": job.status,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "failure_reason": job.failure_reason,
        "log_tail": job.log_tail,
        "failure": failure_json(report.as_ref().and_then(|r| r.get("failure"))),
        "log_url": format!("/api/v1/jobs/{}/log", job.id),
        "targets": targets,
        "report": report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(result: Option<Value>) -> JobRow {
        JobRow {
            id: "job_1".into(),
            tenant_id: "t".into(),
            package_id: "pkg_1".into(),
            status: "failed".into(),
            targets: vec!["x86_64-cpu".into()],
            created_at: "now".into(),
            started_at: None,
            finished_at: None,
            failure_reason: Some("failed targets: x86_64-cpu".into()),
            result_json: result.map(|r| r.to_string()),
            log_tail: Some("the tail".into()),
            attempts: 1,
        }
    }

    #[test]
    fn failures_and_the_whole_log_reach_the_api() {
        let failure = json!({"kind": "forward", "summary": "the model's forward pass failed: boom",
            "hint": "write [1, 3, 8, 8]", "model_code": "code/__torch__.py:9", "detail": "Traceback\nboom"});
        let report = json!({
            "failure": failure,
            "log": ["job failed: the model's forward pass failed: boom", "full error:\nTraceback\nboom"],
            "targets": [{"target": "x86_64-cpu", "status": "failed", "failure_reason": "the model's forward pass failed: boom",
                         "failure": failure, "warnings": ["cast"], "log": ["failed: boom"]}],
        });
        let job = row(Some(report));
        let view = job_json(&job);
        assert_eq!(view["failure"], failure);
        assert_eq!(view["log_url"], "/api/v1/jobs/job_1/log");
        assert_eq!(view["targets"][0]["failure"]["hint"], "write [1, 3, 8, 8]");
        assert_eq!(view["targets"][0]["warnings"], json!(["cast"]));
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
        assert_eq!(job_json(&bare)["failure"], Value::Null);
        assert_eq!(job_json(&bare)["targets"][0]["failure"], Value::Null);
    }

    /// The report's sentences as byom-compile writes them today, and what each must classify as.
    #[test]
    fn verification_states_are_truthful() {
        let v = |status: &str, compared: bool| json!({"status": status, "max_abs_error": if compared { json!(1e-6) } else { Value::Null }});
        let s = |t, x: Value| VerificationState::of(t, Some(&x));
        assert_eq!(
            s("x86_64-cpu", v("verified on this host's x86_64 CPU", true)),
            VerificationState::VerifiedOnDevice
        );
        assert_eq!(
            s(
                "arm64-cpu",
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
                "x86_64-cuda",
                v(
                    "built, not run: no GPU (reloaded and checked on this host's CPU)",
                    true
                )
            ),
            VerificationState::BuiltNotRun
        );
        assert_eq!(
            s(
                "jetson-xavier",
                v(
                    "built here, not run on the device (fp16 outputs checked on this host's CPU)",
                    true
                )
            ),
            VerificationState::BuiltNotRun
        );
        assert_eq!(
            s("x86_64-cuda", v("verified on NVIDIA H200", true)),
            VerificationState::VerifiedOnDevice
        );
        assert_eq!(
            s("arm64-cpu", v("built here", false)),
            VerificationState::BuiltNotRun
        );
        assert_eq!(
            VerificationState::of("x86_64-cpu", None),
            VerificationState::Unverified
        );
        assert_eq!(
            VerificationState::of("x86_64-cpu", Some(&Value::Null)),
            VerificationState::Unverified
        );
    }
}
