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

use serde_json::Value;

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
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout_s: u64,
    /// Print the server's JSON answers instead of summaries.
    #[arg(long)]
    pub json: bool,
}

/// Why a push could not run (exit 2), as opposed to a verdict (exit 1).
#[derive(Debug)]
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

pub fn run(args: Args) -> ExitCode {
    match push(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Fail(msg)) => {
            eprintln!("byom push: {msg}");
            ExitCode::from(2)
        }
    }
}

struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
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

    fn json(resp: &mut ureq::http::Response<ureq::Body>) -> Result<Value, Fail> {
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON_BYTES)
            .read_to_string()?;
        serde_json::from_str(&text)
            .map_err(|e| Fail(format!("server answered non-JSON ({e}): {text:.200}")))
    }

    fn get(&self, path: &str) -> Result<(u16, Value), Fail> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .call()?;
        Ok((resp.status().as_u16(), Self::json(&mut resp)?))
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

fn push(args: &Args) -> Result<bool, Fail> {
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
        io::BufReader::with_capacity(1 << 20, file),
        &settings,
    )?;
    if !report.valid {
        eprint!("{}", report.to_text(io::stderr().is_terminal()));
        eprintln!("{}: invalid, not uploaded", args.package.display());
        return Ok(false);
    }
    eprintln!(
        "{}: valid ({} warning(s)); uploading {} bytes",
        args.package.display(),
        report.warnings.len(),
        size
    );

    // 3. Upload with a progress bar.
    let name = args
        .package
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model.tar.gz");
    let mut reader = Progress::new(File::open(&args.package)?, size);
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
    let status = resp.status().as_u16();
    let body = Client::json(&mut resp)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    match status {
        201 => {}
        422 => {
            if let Ok(server_report) =
                serde_json::from_value::<byom_core::Report>(body["report"].clone())
            {
                eprint!("{}", server_report.to_text(io::stderr().is_terminal()));
            }
            eprintln!("the server refused the package as invalid (its verdict differs from the local one)");
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
    if !args.json {
        println!("package {package_id}");
    }
    if args.compile.is_empty() {
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
    if !args.json {
        println!("job {job_id}");
    }
    if !args.wait && args.out.is_none() {
        return Ok(true);
    }
    let job = wait(&client, &job_id, Duration::from_secs(args.timeout_s))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    }
    let mut all_ok = job["status"] == "succeeded";
    for t in job["targets"].as_array().into_iter().flatten() {
        let target = t["target"].as_str().unwrap_or("?");
        let st = t["status"].as_str().unwrap_or("?");
        let ms = t["duration_ms"]
            .as_u64()
            .map(|m| format!("{m} ms"))
            .unwrap_or_default();
        eprintln!(
            "  {target:<14} {st:<10} {ms:>9}  {}",
            t["failure_reason"].as_str().unwrap_or("")
        );
        if let (Some(dir), Some(url)) = (&args.out, t["artifact_url"].as_str()) {
            match download(&client, url, &dir.join(format!("{target}.tar.gz"))) {
                Ok(p) => println!("{}", p.display()),
                Err(Fail(e)) => {
                    eprintln!("  could not download {target}: {e}");
                    all_ok = false;
                }
            }
        }
    }
    if let Some(reason) = job["failure_reason"].as_str() {
        eprintln!("job {}: {reason}", job["status"].as_str().unwrap_or("?"));
    }
    Ok(all_ok)
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
fn download(client: &Client, url: &str, dest: &Path) -> Result<PathBuf, Fail> {
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
    io::copy(&mut resp.into_body().into_reader(), &mut out)?;
    out.sync_all()?;
    std::fs::rename(&tmp, dest)?;
    Ok(dest.to_path_buf())
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

/// A reader that draws an upload progress bar on stderr (only when stderr is a terminal; a
/// line every 10% otherwise, so CI logs stay short).
struct Progress<R> {
    inner: R,
    total: u64,
    sent: u64,
    shown: u64,
    tty: bool,
    started: Instant,
}

impl<R: Read> Progress<R> {
    fn new(inner: R, total: u64) -> Self {
        Progress {
            inner,
            total,
            sent: 0,
            shown: u64::MAX,
            tty: io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    fn draw(&mut self) {
        let pct = (self.sent * 100).checked_div(self.total).unwrap_or(100);
        let step = if self.tty { pct } else { pct / 10 * 10 };
        if step == self.shown {
            return;
        }
        self.shown = step;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mbs = self.sent as f64 / secs / 1e6;
        let filled = (pct / 4) as usize;
        let bar = format!(
            "[{}{}] {pct:>3}% {:.1} MB/s",
            "#".repeat(filled),
            " ".repeat(25 - filled.min(25)),
            mbs
        );
        let mut err = io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{bar}");
        } else {
            let _ = writeln!(err, "{bar}");
        }
        let _ = err.flush();
    }

    fn done(&mut self) {
        self.sent = self.total;
        self.draw();
        if self.tty {
            eprintln!();
        }
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
