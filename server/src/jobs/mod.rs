//! Compile jobs: the queue (behind [`queue::JobQueue`], SQLite today), the runner that hands
//! jobs to sandboxed worker processes, and the API view of a job.

#[allow(unsafe_code)] // the Landlock ABI probe is a raw system call
pub mod confine;
pub mod disk;
pub mod queue;
pub mod runner;
#[allow(unsafe_code)] // pre_exec: setrlimit, setpgid, unshare in the forked child
pub mod sandbox;

pub use byom_compile::Target;

/// A job's state, spelled in the API and stored in the `jobs.status` column (TEXT, with a
/// CHECK on exactly these five names) as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Every state, in the order of a job's life (the metrics list them in this order).
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Queued or running: the job has not ended.
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| format!("unknown job status {s:?}"))
    }
}

// Stored as the TEXT the column has always held: no migration, and both engines' CHECK
// constraints keep accepting it.
impl sqlx::Type<sqlx::Any> for JobStatus {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for JobStatus {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str().to_owned(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for JobStatus {
    fn decode(
        value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
        Ok(text.parse()?)
    }
}

/// Check and normalise requested targets (known names, no duplicates, at least one).
pub fn parse_targets(requested: &[String]) -> Result<Vec<Target>, String> {
    if requested.is_empty() {
        return Err("give at least one target".into());
    }
    let mut out: Vec<Target> = Vec::new();
    for name in requested {
        let t: Target = name.parse().map_err(|_| {
            let known: Vec<&str> = Target::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown target {name:?}; known: {}", known.join(", "))
        })?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_keep_their_stored_and_api_names() {
        let names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            ["queued", "running", "succeeded", "failed", "cancelled"]
        );
        for s in JobStatus::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
        }
        assert!("done".parse::<JobStatus>().is_err());
    }

    #[test]
    fn parse_targets_dedups_and_refuses_unknown() {
        let t = |v: &[&str]| parse_targets(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            t(&["x86_64-cpu", "x86_64-cpu"]).unwrap(),
            vec![Target::X86_64Cpu]
        );
        assert!(t(&[]).is_err());
        assert!(t(&["z80"]).unwrap_err().contains("unknown target"));
    }
}
