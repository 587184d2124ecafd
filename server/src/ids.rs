//! Random identifiers and secrets, and the clock, in one place.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `prefix_` + 16 random bytes in hex: unguessable, so ids never leak how many objects exist.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_hex(16))
}

/// Hex of `n` bytes from the OS random source.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The OS RNG failing means the system is unusable; there is no safe fallback for secrets.
    getrandom::fill(&mut buf).expect("OS random source failed");
    hex::encode(buf)
}

/// Now, as RFC 3339 UTC (what the API and the database store).
pub fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// This process's name in the job queue's leases: `host-pid-random`, unique per start, so a
/// restarted worker never mistakes its predecessor's claims for its own.
pub fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{}-{}", std::process::id(), random_hex(4))
}
