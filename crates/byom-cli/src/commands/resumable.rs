//! `byom push` for large packages: the server's resumable upload (tus 1.0, see docs/api.md).
//! The package goes in PATCHes of `--chunk-size` bytes; when a request fails (a dropped
//! connection, a 5xx, a busy server) push waits (`--retry-backoff-ms`, doubling, at most 30 s),
//! asks the server with HEAD how many bytes it has, and goes on from there, at most
//! `--retries` failures in a row. The verdict after the last byte is the same as a PUT's:
//! `(201, {"package": ...})` or the refusal's status and error body.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::push::{Args, Client, Fail, Progress};

const TUS_VERSION: &str = "1.0.0";
/// The longest wait between retries, however many failed in a row.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What one PATCH (or the HEAD after a failure) told us.
enum Step {
    /// The server has this many bytes.
    At(u64),
    /// The upload is over: the verdict as a PUT would answer it.
    Verdict(u16, Value),
    /// Worth retrying: the connection failed, or the server was busy or erred.
    Retry(String),
}

fn header_u64(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Upload `args.package` (`size` bytes) resumably as `name`; returns the verdict.
pub(super) fn upload(
    client: &Client,
    args: &Args,
    name: &str,
    size: u64,
) -> Result<(u16, Value), Fail> {
    let metadata = format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(name)
    );
    let mut resp = client
        .agent
        .post(format!("{}/api/v1/uploads", client.base))
        .header("Authorization", &client.auth)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", size.to_string())
        .header("Upload-Metadata", metadata)
        .send_empty()?;
    let status = resp.status().as_u16();
    if status != 201 {
        return Ok((status, Client::json(&mut resp)?));
    }
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Fail("the server opened an upload without a Location".into()))?
        .to_string();
    // The upload's path on this server (Location is relative, or absolute on the same base).
    let path = location
        .strip_prefix(&client.base)
        .unwrap_or(&location)
        .to_string();
    let url = format!("{}{path}", client.base);
    let mut reader = Progress::new(File::open(&args.package)?, size, "uploading");
    let mut offset = 0;
    let mut failures = 0u32;
    loop {
        let step = if offset < size {
            patch(client, &url, &mut reader, offset, size, args.chunk_size)
        } else {
            // All bytes are there but the last answer was lost: the server kept the verdict.
            Ok(Step::Verdict(0, Value::Null))
        };
        match step? {
            Step::At(at) => {
                offset = at;
                failures = 0;
            }
            Step::Verdict(0, _) => break,
            Step::Verdict(status, body) => {
                reader.done();
                return Ok((status, body));
            }
            Step::Retry(why) => {
                failures += 1;
                if failures > args.retries {
                    return Err(Fail(format!(
                        "upload failed {failures} times in a row, the last: {why} (the server keeps \
                         the bytes it has until the upload expires)"
                    )));
                }
                let wait = Duration::from_millis(
                    args.retry_backoff_ms
                        .saturating_mul(1 << (failures - 1).min(16)),
                )
                .min(MAX_BACKOFF);
                std::thread::sleep(wait);
                if let Ok(at) = head(client, &url) {
                    offset = at;
                    eprintln!(
                        "\nbyom push: {why}; resuming at byte {offset} of {size} (retry {failures}/{})",
                        args.retries
                    );
                }
            }
        }
    }
    reader.done();
    verdict(client, &path)
}

/// Send the next chunk from `offset`.
fn patch(
    client: &Client,
    url: &str,
    reader: &mut Progress<File>,
    offset: u64,
    size: u64,
    chunk: u64,
) -> Result<Step, Fail> {
    let len = chunk.min(size - offset);
    reader.inner_mut().seek(SeekFrom::Start(offset))?;
    reader.set_sent(offset);
    let mut body = Read::take(&mut *reader, len);
    let sent = client
        .agent
        .patch(url)
        .header("Authorization", &client.auth)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", len.to_string())
        .send(ureq::SendBody::from_reader(&mut body));
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => return Ok(Step::Retry(format!("connection lost ({e})"))),
    };
    let status = resp.status().as_u16();
    match status {
        204 if resp.headers().contains_key("byom-package-id") => Ok(Step::Verdict(0, Value::Null)),
        204 => header_u64(&resp, "upload-offset")
            .map(Step::At)
            .ok_or_else(|| Fail("the server answered 204 without Upload-Offset".into())),
        // An offset mismatch says where to go on; without an offset another request (the one
        // whose connection dropped, still draining on the server) holds the upload: wait.
        409 => Ok(header_u64(&resp, "upload-offset")
            .map_or_else(|| Step::Retry("the upload is busy (409)".into()), Step::At)),
        408 | 423 | 429 | 500..=599 => Ok(Step::Retry(format!("the server answered {status}"))),
        _ => Ok(Step::Verdict(status, Client::json(&mut resp)?)),
    }
}

/// How many bytes the server has.
fn head(client: &Client, url: &str) -> Result<u64, Fail> {
    let resp = client
        .agent
        .head(url)
        .header("Authorization", &client.auth)
        .header("Tus-Resumable", TUS_VERSION)
        .call()?;
    header_u64(&resp, "upload-offset").ok_or_else(|| {
        Fail(format!(
            "HEAD answered {} without Upload-Offset",
            resp.status()
        ))
    })
}

/// The kept verdict of a completed upload, as a PUT would answer it.
fn verdict(client: &Client, path: &str) -> Result<(u16, Value), Fail> {
    let (status, body) = client.get(path)?;
    match (status, body["state"].as_str()) {
        (200, Some("stored")) => Ok((201, json!({ "package": body["package"] }))),
        (200, Some("rejected")) => Ok((
            u16::try_from(body["status"].as_u64().unwrap_or(500)).unwrap_or(500),
            body["error"].clone(),
        )),
        _ => {
            let text: String = body.to_string().chars().take(200).collect();
            Err(Fail(format!(
                "the upload's verdict could not be read ({status}): {text}"
            )))
        }
    }
}
