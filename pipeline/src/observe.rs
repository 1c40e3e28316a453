//! How a running job is watched: progress callbacks the CLI draws, and the crash-test fault points.

/// A crash test hook: with `CSLAKE_FAULT=<name>` the process aborts at the point of that name,
/// as a kill or a lost machine would stop it. The fault tests use it to prove that every step
/// can die at its worst moment and the next run still converges to the right result.
pub fn fault_point(name: &str) {
    if std::env::var("CSLAKE_FAULT").is_ok_and(|v| v == name) {
        tracing::error!(point = name, "CSLAKE_FAULT: aborting here");
        std::process::abort();
    }
}

/// Progress of long steps, drawn by the CLI (a bar on a terminal, nothing otherwise).
pub trait Progress: Send + Sync {
    fn start(&self, _step: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

/// No progress display.
pub struct NoProgress;
impl Progress for NoProgress {}
