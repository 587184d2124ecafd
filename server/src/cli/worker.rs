//! `byom-server worker`: two things by the same name.
//!
//! - `byom-server worker --database postgres://… --data-dir SHARED`: a cluster node that only
//!   runs compile jobs (claims them from the shared queue with a lease; see `jobs::queue`).
//! - `byom-server worker --job-dir DIR` (hidden; spawned by the runner): one compile job in a
//!   sandboxed process (see `jobs::sandbox` for what the server sets up, `jobs::confine` for
//!   what the worker then gives up itself). It sees only its job directory and exits; the
//!   runner reads `result.json`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The job directory (holds job.json and the package; result.json is written here). Given
    /// by the runner to its sandboxed child; not for humans.
    #[arg(long, hide = true)]
    pub job_dir: Option<PathBuf>,
    #[command(flatten)]
    pub node: Box<crate::config::ServeArgs>,
}

pub fn run(args: Args) -> ExitCode {
    match args.job_dir {
        Some(dir) => run_job(&dir),
        None => crate::cli::serve::run_worker(*args.node),
    }
}

fn run_job(job_dir: &std::path::Path) -> ExitCode {
    // job.json is the server's, written before this process started; it names the Python
    // (and its directories) that rebuilds state dicts, which the sandbox leaves readable.
    let job = match crate::backend::read_job(job_dir) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(u8::try_from(crate::backend::NO_RESULT).unwrap_or(3));
        }
    };
    // The directories of operator libraries a model may need are found now (no loading, file
    // checks only) and stay readable: torchvision is loaded later, only for models calling it.
    let mut read_roots = crate::backend::operator_library_dirs();
    read_roots.extend(crate::backend::python_read_roots(&job));
    // First, before libtorch exists in this process: give up everything but the job directory.
    // A sandbox that cannot be set up fails the job rather than running it unconfined.
    match crate::jobs::confine::confine_to(job_dir, &read_roots) {
        Ok(c) => eprintln!("{}", c.describe()),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    // TEST ONLY: a delay set by the server's --test-worker-delay-ms, so tests can kill or
    // queue behind a running worker.
    if let Some(ms) = std::env::var("BYOM_WORKER_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let code = crate::backend::run_job(job_dir, &job);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
