//! How a running job is watched: progress callbacks the CLI draws, the crash-test fault points,
//! and the secrets in play, which whatever prints (logs, the summary line) masks.

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
    /// A step measured in bytes (files being read).
    fn start_bytes(&self, step: &str, total: u64) {
        self.start(step, Some(total))
    }
    fn advance(&self, _n: u64) {}
    /// What the current step is doing now (`building the training set: 14 dates`).
    fn phase(&self, _what: &str) {}
    /// Rows the step has done so far, shown beside its bar.
    fn rows(&self, _n: u64) {}
    fn finish(&self) {}
}

/// No progress display.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Secrets this process holds (credentials, secret URLs, keys), in every form they travel in.
fn secrets() -> &'static std::sync::RwLock<Vec<String>> {
    static SECRETS: std::sync::OnceLock<std::sync::RwLock<Vec<String>>> = std::sync::OnceLock::new();
    SECRETS.get_or_init(Default::default)
}

/// Registers values that must never be printed or stored in clear.
pub fn add_secrets(values: impl IntoIterator<Item = String>) {
    if let Ok(mut s) = secrets().write() {
        s.extend(values.into_iter().filter(|v| v.len() >= 4));
        // longest first, so a longer form is masked before a shorter one inside it
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
        s.dedup();
    }
}

/// `text` with every registered secret replaced by `***`.
pub fn mask(text: &str) -> std::borrow::Cow<'_, str> {
    let Ok(s) = secrets().read() else {
        return text.into();
    };
    if !s.iter().any(|v| text.contains(v.as_str())) {
        return text.into();
    }
    let mut out = text.to_string();
    for v in s.iter() {
        out = out.replace(v.as_str(), "***");
    }
    out.into()
}
