//! `byom push`: validate a package locally under the server's own settings, upload it only if
//! it is valid (with a progress bar on stderr), optionally start a compile, wait for it and
//! download the artifacts. The upload flow for notebooks and CI pipelines.
//!
//! Exit codes: 0 stored (and, with `--wait`, every target compiled); 1 invalid package, upload
//! refused or a target failed; 2 could not run (file, network, server errors).

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::output::{self, human_bytes, Format};

/// Largest JSON answer read from the server (reports of huge packages list every entry).
const MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;
/// How often `--wait` asks for the job's state.
const POLL: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct Args {
    /// The package (.tar.gz).
    pub package: PathBuf,
    /// Server base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "BYOM_SERVER")]
    pub server: String,
    /// API token (bearer).
    #[arg(long, env = "BYOM_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Start a compile for these targets (comma-separated): x86_64-cpu,x86_64-cuda,arm64-cpu,jetson-xavier.
    #[arg(long, value_delimiter = ',')]
    pub compile: Vec<String>,
    /// Wait for the compile to finish, printing per-target results.
    #[arg(long)]
    pub wait: bool,
    /// Download the bundles of succeeded targets into this directory (implies --wait).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the job's whole log once it has finished (implies --wait): the worker's own
    /// lines and each target's, with full error texts.
    #[arg(long)]
    pub log: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout_s: u64,
    /// Output format: text (a summary per target) or json (one object: the package, the job and every target's numbers, exact).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as --format json (the flag of earlier versions).
    #[arg(long, hide = true)]
    pub json: bool,
    /// Packages of at least this many bytes go through the resumable (tus 1.0) upload, which
    /// survives dropped connections; smaller ones in one PUT.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub resumable_threshold: u64,
    /// Bytes per PATCH of a resumable upload.
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: u64,
    /// Failed requests of a resumable upload retried in a row before giving up.
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
    /// First wait before a retry, in milliseconds; it doubles with each failure in a row (at most 30 s).
    #[arg(long, default_value_t = 1000)]
    pub retry_backoff_ms: u64,
}

/// Why a push could not run (exit 2), as opposed to a verdict (exit 1).
#[derive(Debug)]
pub(super) struct Fail(pub(super) String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

pub fn run(mut args: Args) -> ExitCode {
    if args.json {
        args.format = Format::Json;
    }
    match push(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Fail(msg)) => {
            eprintln!("byom push: {msg}");
            ExitCode::from(2)
        }
    }
}

pub(super) struct Client {
    pub(super) agent: ureq::Agent,
    pub(super) base: String,
    pub(super) auth: String,
}

impl Client {
    fn new(server: &str, token: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build();
        Client {
            agent: config.into(),
            base: server.trim_end_matches('/').to_string(),
            auth: format!("Bearer {token}"),
        }
    }

    pub(super) fn json(resp: &mut ureq::http::Response<ureq::Body>) -> Result<Value, Fail> {
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON_BYTES)
            .read_to_string()?;
        serde_json::from_str(&text)
            .map_err(|e| Fail(format!("server answered non-JSON ({e}): {text:.200}")))
    }

    pub(super) fn get(&self, path: &str) -> Result<(u16, Value), Fail> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .call()?;
        Ok((resp.status().as_u16(), Self::json(&mut resp)?))
    }

    /// A text answer (the job log), at most [`MAX_JSON_BYTES`].
    fn get_text(&self, path: &str) -> Result<String, Fail> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .call()?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON_BYTES)
            .read_to_string()?;
        if status != 200 {
            return Err(Fail(format!("{path}: {status} {text:.200}")));
        }
        Ok(text)
    }

    fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), Fail> {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/json")
            .send(body.to_string())?;
        Ok((resp.status().as_u16(), Self::json(&mut resp)?))
    }
}

/// Print `value` (JSON mode) through the pipe-safe writer; a write error is "could not run".
fn emit_json(value: &Value) -> Result<(), Fail> {
    output::write_json("push", value).map_err(|_| Fail("cannot write the output".into()))
}

fn emit_text(text: &str) -> Result<(), Fail> {
    output::write_out("push", text).map_err(|_| Fail("cannot write the output".into()))
}

fn push(args: &Args) -> Result<bool, Fail> {
    let json_out = args.format == Format::Json;
    let client = Client::new(&args.server, &args.token);
    // 1. The server's settings, so the local verdict is the one the server will reach.
    let mut resp = client
        .agent
        .get(format!("{}/api/v1/format-spec", client.base))
        .call()?;
    if resp.status().as_u16() != 200 {
        return Err(Fail(format!(
            "{} answered {} for format-spec",
            client.base,
            resp.status()
        )));
    }
    let spec = Client::json(&mut resp)?;
    let settings: byom_core::Settings =
        serde_json::from_value(spec["settings"].clone()).map_err(|e| {
            Fail(format!(
                "the server's settings are not understood by this byom ({e}); upgrade byom"
            ))
        })?;

    // 2. Validate locally; never upload an invalid package.
    let file =
        File::open(&args.package).map_err(|e| Fail(format!("{}: {e}", args.package.display())))?;
    let size = file.metadata()?.len();
    let report = byom_core::validate::validate_reader(
        io::BufReader::with_capacity(1 << 20, Progress::new(file, size, "validating")),
        &settings,
    )?;
    if !report.valid {
        eprint!("{}", report.to_text(io::stderr().is_terminal()));
        eprintln!("{}: invalid, not uploaded", args.package.display());
        if json_out {
            emit_json(&json!({ "uploaded": false, "report": report }))?;
        }
        return Ok(false);
    }
    eprintln!(
        "{}: valid ({}); uploading {}",
        args.package.display(),
        output::count(report.warnings.len(), "warning"),
        human_bytes(size)
    );

    // 3. Upload with a progress bar.
    let name = args
        .package
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model.tar.gz");
    let (status, body) = if size >= args.resumable_threshold {
        super::resumable::upload(&client, args, name, size)?
    } else {
        let mut reader = Progress::new(File::open(&args.package)?, size, "uploading");
        let mut resp = client
            .agent
            .put(format!(
                "{}/api/v1/packages?name={}",
                client.base,
                encode(name)
            ))
            .header("Authorization", &client.auth)
            .header("Content-Type", "application/gzip")
            .header("Content-Length", size.to_string())
            .send(ureq::SendBody::from_reader(&mut reader))?;
        reader.done();
        (resp.status().as_u16(), Client::json(&mut resp)?)
    };
    match status {
        201 => {}
        422 => {
            if let Ok(server_report) =
                serde_json::from_value::<byom_core::Report>(body["report"].clone())
            {
                eprint!("{}", server_report.to_text(io::stderr().is_terminal()));
            }
            eprintln!("the server refused the package as invalid (its verdict differs from the local one)");
            if json_out {
                emit_json(&json!({ "uploaded": false, "server": body }))?;
            }
            return Ok(false);
        }
        _ => {
            return Err(Fail(format!(
                "upload refused ({status}): {}",
                body["message"].as_str().unwrap_or("?")
            )))
        }
    }
    let package_id = body["package"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // JSON mode prints one object at the end; text mode says each step as it happens.
    let mut result = json!({ "uploaded": true, "package": body["package"], "bytes": size });
    if !json_out {
        emit_text(&format!("package {package_id}\n"))?;
    }
    if args.compile.is_empty() {
        if json_out {
            emit_json(&result)?;
        }
        return Ok(true);
    }

    // 4. Compile, wait, download.
    let (status, body) = client.post(
        &format!("/api/v1/packages/{package_id}/compile"),
        &serde_json::json!({ "targets": args.compile }),
    )?;
    if status != 202 {
        return Err(Fail(format!(
            "compile refused ({status}): {}",
            body["message"].as_str().unwrap_or("?")
        )));
    }
    let job_id = body["job"]["id"].as_str().unwrap_or_default().to_string();
    result["job"] = body["job"].clone();
    if !json_out {
        emit_text(&format!("job {job_id}\n"))?;
    }
    if !args.wait && args.out.is_none() && !args.log {
        if json_out {
            emit_json(&result)?;
        }
        return Ok(true);
    }
    let job = wait(&client, &job_id, Duration::from_secs(args.timeout_s))?;
    let mut all_ok = job["status"] == "succeeded";
    let mut targets = Vec::new();
    let mut text = String::new();
    for t in job["targets"].as_array().into_iter().flatten() {
        let target = t["target"].as_str().unwrap_or("?");
        let entry = job["report"]["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["target"].as_str() == Some(target));
        let mut summary = TargetSummary::new(t, entry);
        if let (Some(dir), Some(url)) = (&args.out, t["artifact_url"].as_str()) {
            match download(&client, url, &dir.join(format!("{target}.tar.gz"))) {
                Ok((p, bytes)) => summary.downloaded = Some((p, bytes)),
                Err(Fail(e)) => {
                    eprintln!("  could not download {target}: {e}");
                    all_ok = false;
                }
            }
        }
        text.push_str(&summary.text());
        targets.push(summary.json());
    }
    // The whole log is one request away; asked for, it follows the summaries.
    let log = if args.log {
        Some(client.get_text(&format!("/api/v1/jobs/{job_id}/log"))?)
    } else {
        None
    };
    if json_out {
        result["job"] = job.clone();
        result["targets"] = Value::Array(targets);
        if let Some(log) = &log {
            result["log"] = Value::String(log.clone());
        }
        emit_json(&result)?;
    } else {
        if let Some(log) = &log {
            text.push_str("\nlog:\n");
            text.push_str(log);
        }
        emit_text(&text)?;
    }
    if let Some(reason) = job["failure_reason"].as_str() {
        eprintln!("job {}: {reason}", job["status"].as_str().unwrap_or("?"));
        if log.is_none() {
            eprintln!("the whole log: add --log, or GET /api/v1/jobs/{job_id}/log");
        }
    }
    Ok(all_ok)
}

/// What a built target was proven to do, from the compile report's `verification`.
#[derive(Debug, Clone, PartialEq)]
enum Truth {
    /// Reloaded and run on the device it was built for (or one of its kind); outputs match.
    Verified { device: String },
    /// Built and reloaded on the build host, outputs compared there, not on the target device.
    CheckedOnBuildHost { on: String, why: String },
    /// Built; nothing ran it.
    NotRun { why: String },
    Failed {
        reason: String,
        hint: Option<String>,
    },
    /// Queued, running or cancelled.
    Other(String),
}

impl Truth {
    fn from(status: &str, t: &Value, verification: Option<&Value>) -> Truth {
        if status != "succeeded" {
            return match status {
                "failed" => Truth::Failed {
                    reason: t["failure_reason"]
                        .as_str()
                        .unwrap_or("no reason given")
                        .to_string(),
                    hint: t["failure"]["hint"].as_str().map(str::to_string),
                },
                other => Truth::Other(other.to_string()),
            };
        }
        let Some(v) = verification else {
            return Truth::NotRun {
                why: "the server reported no verification".into(),
            };
        };
        let said = v["status"].as_str().unwrap_or_default().to_string();
        let ran_on = v["ran_on"].as_str().map(str::to_string);
        match (said.strip_prefix("verified on "), ran_on) {
            (Some(device), _) => Truth::Verified {
                device: device.to_string(),
            },
            (None, Some(on)) => Truth::CheckedOnBuildHost { on, why: said },
            (None, None) => Truth::NotRun { why: said },
        }
    }

    fn key(&self) -> &str {
        match self {
            Truth::Verified { .. } => "verified",
            Truth::CheckedOnBuildHost { .. } => "checked_on_build_host",
            Truth::NotRun { .. } => "not_run",
            Truth::Failed { .. } => "failed",
            Truth::Other(s) => s,
        }
    }

    fn headline(&self) -> String {
        match self {
            Truth::Verified { device } => format!("verified on {device}"),
            Truth::CheckedOnBuildHost { on, .. } => format!("built and checked on {on}"),
            Truth::NotRun { .. } => "built, not run".into(),
            Truth::Failed { .. } => "FAILED".into(),
            Truth::Other(s) => s.clone(),
        }
    }

    /// One sentence saying what the headline does and does not promise.
    fn explained(&self) -> String {
        match self {
            Truth::Verified { device } => format!(
                "the artifact was reloaded and run on {device}; its outputs match the original model's"
            ),
            Truth::CheckedOnBuildHost { on, why } => format!(
                "reloaded and compared with the original on {on}, not on the target device ({why})"
            ),
            Truth::NotRun { why } => {
                format!("nothing has run this artifact yet; test it on the device ({why})")
            }
            Truth::Failed { reason, hint } => match hint {
                Some(hint) => format!("{reason}\n{}hint: {hint}", " ".repeat(17)),
                None => reason.clone(),
            },
            Truth::Other(_) => String::new(),
        }
    }
}

/// One target of a finished job, with the report's numbers.
struct TargetSummary {
    target: String,
    status: String,
    truth: Truth,
    duration_ms: Option<u64>,
    max_abs_error: Option<f64>,
    max_rel_error: Option<f64>,
    p50_ms: Option<f64>,
    p50_after_ms: Option<f64>,
    latency_device: Option<String>,
    /// Why there is no latency on purpose ("not measured: no device").
    latency_not_measured: Option<String>,
    warnings: Vec<String>,
    load_time_steps: Vec<String>,
    sha256: Option<String>,
    bundle_sha256: Option<String>,
    downloaded: Option<(PathBuf, u64)>,
}

impl TargetSummary {
    fn new(t: &Value, entry: Option<&Value>) -> Self {
        let status = t["status"].as_str().unwrap_or("?").to_string();
        let verification = entry.map(|e| &e["verification"]).filter(|v| v.is_object());
        let f = |v: Option<&Value>, k: &str| v.and_then(|v| v[k].as_f64());
        let lat = verification.map(|v| &v["latency"]);
        let after = verification.map(|v| &v["latency_after_load_time_steps"]);
        TargetSummary {
            target: t["target"].as_str().unwrap_or("?").to_string(),
            truth: Truth::from(&status, t, verification),
            status,
            // A target that never started reports 0 ms: that is "no time", not a time.
            duration_ms: t["duration_ms"].as_u64().filter(|&ms| ms > 0),
            max_abs_error: f(verification, "max_abs_error"),
            max_rel_error: f(verification, "max_rel_error"),
            p50_ms: f(lat, "p50_ms"),
            p50_after_ms: f(after, "p50_ms"),
            latency_device: lat.and_then(|l| l["device"].as_str()).map(str::to_string),
            latency_not_measured: verification
                .and_then(|v| v["latency_not_measured"].as_str())
                .map(str::to_string),
            warnings: t["warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect(),
            load_time_steps: entry
                .and_then(|e| e["load_time_steps"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            sha256: t["sha256"].as_str().map(str::to_string),
            bundle_sha256: entry
                .and_then(|e| e["bundle_sha256"].as_str())
                .map(str::to_string),
            downloaded: None,
        }
    }

    fn text(&self) -> String {
        let took = self.duration_ms.map(duration).unwrap_or_default();
        let mut s = format!(
            "  {:<14} {:<44} {took:>8}\n",
            self.target,
            self.truth.headline()
        );
        let pad = " ".repeat(17);
        let why = self.truth.explained();
        if !why.is_empty() {
            s.push_str(&format!("{pad}{why}\n"));
        }
        let mut numbers = Vec::new();
        if let Some(e) = self.max_abs_error {
            numbers.push(format!("max abs error vs the original {e:.2e}"));
        }
        if let Some(p) = self.p50_ms {
            let on = self
                .latency_device
                .as_deref()
                .map(|d| format!(" on {d}"))
                .unwrap_or_default();
            match (self.p50_after_ms, self.load_time_steps.last()) {
                (Some(a), Some(step)) => numbers.push(format!(
                    "p50 {p:.2} ms as saved, {a:.2} ms with the load-time step {step} kept{on}"
                )),
                _ => numbers.push(format!("p50 {p:.2} ms{on}")),
            }
        } else if let Some(why) = &self.latency_not_measured {
            numbers.push(format!("latency {why}"));
        }
        if !numbers.is_empty() {
            s.push_str(&format!("{pad}{}\n", numbers.join("; ")));
        }
        for w in &self.warnings {
            s.push_str(&format!("{pad}warning: {w}\n"));
        }
        if let Some(sha) = &self.sha256 {
            s.push_str(&format!("{pad}model.pt sha256 {sha}\n"));
        }
        if let Some((p, bytes)) = &self.downloaded {
            s.push_str(&format!(
                "{pad}bundle {} ({})\n",
                p.display(),
                human_bytes(*bytes)
            ));
        }
        s
    }

    fn json(&self) -> Value {
        json!({
            "target": self.target,
            "status": self.status,
            "truth": self.truth.key(),
            "truth_headline": self.truth.headline(),
            "truth_explained": self.truth.explained(),
            "duration_ms": self.duration_ms,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "p50_ms": self.p50_ms,
            "p50_ms_with_load_time_step": self.p50_after_ms,
            "latency_device": self.latency_device,
            "latency_not_measured": self.latency_not_measured,
            "warnings": self.warnings,
            "load_time_steps": self.load_time_steps,
            "sha256": self.sha256,
            "bundle_sha256": self.bundle_sha256,
            "bundle_path": self.downloaded.as_ref().map(|(p, _)| p.display().to_string()),
            "bundle_bytes": self.downloaded.as_ref().map(|(_, b)| b),
        })
    }
}

/// `850 ms`, `12.3 s`, `4 min 05 s`.
fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn wait(client: &Client, job_id: &str, timeout: Duration) -> Result<Value, Fail> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let (status, body) = client.get(&format!("/api/v1/jobs/{job_id}"))?;
        if status != 200 {
            return Err(Fail(format!(
                "job {job_id}: {status} {}",
                body["message"].as_str().unwrap_or("?")
            )));
        }
        let state = body["job"]["status"].as_str().unwrap_or("?").to_string();
        if state != last {
            eprintln!("job {job_id}: {state}");
            last = state.clone();
        }
        if matches!(state.as_str(), "succeeded" | "failed" | "cancelled") {
            return Ok(body["job"].clone());
        }
        if started.elapsed() > timeout {
            return Err(Fail(format!(
                "job {job_id} still {state} after {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Download to `dest` through a temp file + rename, so a failed download leaves nothing.
fn download(client: &Client, url: &str, dest: &Path) -> Result<(PathBuf, u64), Fail> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let resp = client
        .agent
        .get(format!("{}{url}", client.base))
        .header("Authorization", &client.auth)
        .call()?;
    if resp.status().as_u16() != 200 {
        return Err(Fail(format!("{} answered {}", url, resp.status())));
    }
    let tmp = dest.with_extension("part");
    let mut out = File::create(&tmp)?;
    let bytes = io::copy(&mut resp.into_body().into_reader(), &mut out)?;
    out.sync_all()?;
    std::fs::rename(&tmp, dest)?;
    Ok((dest.to_path_buf(), bytes))
}

/// Percent-encode a file name for the query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A reader that draws a progress bar on stderr for the local validation and the upload of
/// large packages (a redrawn bar on a terminal; for the upload only, a line every 10% otherwise,
/// so CI logs stay short).
pub(super) struct Progress<R> {
    inner: R,
    total: u64,
    sent: u64,
    shown: u64,
    tty: bool,
    /// Lines in a log (not a terminal): only for the upload.
    log_lines: bool,
    finished: bool,
    label: &'static str,
    started: Instant,
}

impl<R: Read> Progress<R> {
    pub(super) fn new(inner: R, total: u64, label: &'static str) -> Self {
        Progress {
            inner,
            total,
            sent: 0,
            shown: u64::MAX,
            tty: io::stderr().is_terminal(),
            log_lines: label == "uploading",
            finished: false,
            label,
            started: Instant::now(),
        }
    }

    fn draw(&mut self) {
        if !self.tty && !self.log_lines {
            return;
        }
        let pct = (self.sent.min(self.total) * 100)
            .checked_div(self.total)
            .unwrap_or(100);
        let step = if self.tty { pct } else { pct / 10 * 10 };
        if step == self.shown || self.finished {
            return;
        }
        self.shown = step;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.sent as f64 / secs / (1024.0 * 1024.0);
        let filled = (pct / 4) as usize;
        let bar = format!(
            "{:<10} [{}{}] {pct:>3}% {} {:.1} MiB/s",
            self.label,
            "#".repeat(filled.min(25)),
            " ".repeat(25 - filled.min(25)),
            human_bytes(self.sent),
            rate
        );
        let mut err = io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{bar}");
            if pct == 100 {
                let _ = writeln!(err);
                self.finished = true;
            }
        } else {
            let _ = writeln!(err, "{bar}");
            self.finished = pct == 100;
        }
        let _ = err.flush();
    }

    /// Bytes counted so far (a resumed upload starts from the server's offset).
    pub(super) fn set_sent(&mut self, sent: u64) {
        self.sent = sent;
    }

    pub(super) fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub(super) fn done(&mut self) {
        self.sent = self.total;
        self.draw();
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        self.draw();
        Ok(n)
    }
}
