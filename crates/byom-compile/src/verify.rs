//! Step 5: reload an artifact, re-run it on the fixed input, compare with the original, time it.

use std::path::Path;

use crate::detections;
use crate::forward;
use crate::report::Latency;
use crate::shim::{self, BenchRun, BenchSpec};

/// Nearest-rank percentile of `times` (`q` in 0..=100).
pub fn percentile(times: &[f64], q: f64) -> f64 {
    if times.is_empty() {
        return 0.0;
    }
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency summary of a run.
pub fn latency(times: &[f64], device: &str) -> Option<Latency> {
    if times.is_empty() {
        return None;
    }
    Some(Latency {
        p50_ms: round3(percentile(times, 50.0)),
        p95_ms: round3(percentile(times, 95.0)),
        runs: u32::try_from(times.len()).unwrap_or(u32::MAX),
        device: device.to_string(),
    })
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// How an artifact's output is compared with the original's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// Value by value, in order.
    Values,
    /// A detector's `[B, rows, 6]` detections, as sets (detections.rs).
    Detections(detections::Layout),
}

/// Result of running one artifact.
#[derive(Debug, Clone)]
pub struct Checked {
    pub max_abs: f64,
    pub max_rel: f64,
    /// The relative tolerance `max_rel` is held to (a detector's boxes: see detections.rs).
    pub tolerance: f64,
    /// Whether the outputs agree within it.
    pub within: bool,
    pub latency: Option<Latency>,
    /// For a detector: how its detections compared, for the log.
    pub note: Option<String>,
}

/// Loads `artifact` on `device` through libtorch, runs it (`spec`), compares with `reference`.
pub fn check(
    artifact: &Path,
    spec: &BenchSpec<'_>,
    reference: &[f32],
    parity: Parity,
    tolerance: f64,
    device_label: &str,
) -> Result<Checked, String> {
    compare(
        shim::bench(artifact, spec)?,
        reference,
        parity,
        tolerance,
        device_label,
    )
}

/// Compares a run's output with `reference` (`tolerance`: the target's relative one) and
/// summarises its times.
pub fn compare(
    run: BenchRun,
    reference: &[f32],
    parity: Parity,
    tolerance: f64,
    device_label: &str,
) -> Result<Checked, String> {
    let (max_abs, max_rel) = forward::compare(reference, &run.output).ok_or_else(|| {
        format!(
            "the artifact returned {} values, the original {}",
            run.output.len(),
            reference.len()
        )
    })?;
    let latency = latency(&run.times_ms, device_label);
    if let Parity::Detections(layout) = parity {
        if let Some(sets) = detections::compare(reference, &run.output, layout, tolerance) {
            return Ok(Checked {
                max_abs: sets.box_abs.max(sets.score_abs),
                max_rel: sets.box_rel,
                tolerance: tolerance * detections::BOX_DECODE_GAIN,
                within: sets.agrees(),
                latency,
                note: Some(sets.describe(tolerance)),
            });
        }
    }
    Ok(Checked {
        max_abs,
        max_rel,
        tolerance,
        within: max_rel <= tolerance,
        latency,
        note: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let t: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&t, 50.0), 10.0);
        assert_eq!(percentile(&t, 95.0), 19.0);
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert!(latency(&[], "cpu").is_none());
    }
}
