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
        "targets": targets,
        "report": report,
    })
}
