//! Prometheus counters and gauges, hand-rolled: a few atomics and a text renderer are all the
//! exposition format needs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::jobs::JobStatus;

#[derive(Default)]
pub struct Metrics {
    pub uploads_accepted: AtomicU64,
    pub uploads_rejected: AtomicU64,
    pub uploads_failed: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub jobs_enqueued: AtomicU64,
    pub jobs_refused: AtomicU64,
    /// (method, status) → count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn request(&self, method: &str, status: u16) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((method.to_string(), status)).or_default() += 1;
        }
    }

    /// Render everything; `jobs` are the current counts per job state from the database.
    pub fn render(&self, jobs: &[(JobStatus, i64)]) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, labels: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (label, v) in labels {
                let _ = writeln!(out, "{name}{label} {v}");
            }
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "byom_uploads_total",
            "Uploads by outcome.",
            &[
                ("{result=\"accepted\"}", get(&self.uploads_accepted)),
                ("{result=\"rejected\"}", get(&self.uploads_rejected)),
                ("{result=\"failed\"}", get(&self.uploads_failed)),
            ],
        );
        counter(
            &mut out,
            "byom_upload_bytes_total",
            "Bytes received in uploads.",
            &[("", get(&self.upload_bytes))],
        );
        counter(
            &mut out,
            "byom_validation_rejects_total",
            "Uploads refused because the package is invalid.",
            &[("", get(&self.uploads_rejected))],
        );
        counter(
            &mut out,
            "byom_jobs_enqueued_total",
            "Compile jobs accepted.",
            &[("", get(&self.jobs_enqueued))],
        );
        counter(
            &mut out,
            "byom_jobs_refused_total",
            "Compile jobs refused because the queue was full.",
            &[("", get(&self.jobs_refused))],
        );
        let _ = writeln!(
            out,
            "# HELP byom_jobs Jobs by state.\n# TYPE byom_jobs gauge"
        );
        let count = |state: JobStatus| {
            jobs.iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n)
        };
        for state in JobStatus::ALL {
            let _ = writeln!(out, "byom_jobs{{state=\"{state}\"}} {}", count(state));
        }
        let queued = count(JobStatus::Queued);
        let _ = writeln!(out, "# HELP byom_queue_depth Jobs waiting for a worker.\n# TYPE byom_queue_depth gauge\nbyom_queue_depth {queued}");
        let _ = writeln!(out, "# HELP byom_http_requests_total HTTP requests by method and status.\n# TYPE byom_http_requests_total counter");
        if let Ok(map) = self.requests.lock() {
            for ((method, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "byom_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out
    }
}
