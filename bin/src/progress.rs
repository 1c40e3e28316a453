//! Logging (stderr; JSON when stderr is not a terminal) and progress bars (terminal only).

use std::io::IsTerminal;
use std::sync::Mutex;

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,buoyant_kernel=off,deltalake_core=error,perpetual=error,cslake=info,cslake_pipeline=info,cslake_features=info,cslake_models=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Masked);
    if std::io::stderr().is_terminal() {
        builder.with_target(false).compact().init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// stderr that masks every secret the pipeline has registered (credentials, secret URLs, keys,
/// in every encoding they are sent in) before a log line leaves the process: libraries log
/// URLs and servers echo credentials.
pub struct Masked;

impl std::io::Write for Masked {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(cslake_pipeline::mask(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// indicatif bars on a terminal; nothing otherwise (logs carry the counts). Steps nest (a
/// backfill's dates, each date's steps): each `start` adds a line under the ones running, and
/// `finish` removes the newest.
pub struct Bars {
    multi: MultiProgress,
    stack: Mutex<Vec<ProgressBar>>,
    visible: bool,
}

impl Bars {
    pub fn new() -> Self {
        Self {
            multi: MultiProgress::new(),
            stack: Mutex::new(Vec::new()),
            visible: std::io::stderr().is_terminal(),
        }
    }

    fn push(&self, bar: ProgressBar) {
        let bar = self.multi.add(bar);
        bar.enable_steady_tick(Duration::from_millis(150));
        if let Ok(mut s) = self.stack.lock() {
            s.push(bar);
        }
    }

    fn top(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(s) = self.stack.lock()
            && let Some(b) = s.last()
        {
            f(b);
        }
    }
}

impl cslake_pipeline::Progress for Bars {
    fn start(&self, step: &str, total: Option<u64>) {
        if !self.visible {
            return;
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix:>20} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left) {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:>20} {spinner} {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_prefix(step.to_string());
        self.push(bar);
    }
    fn start_bytes(&self, step: &str, total: u64) {
        if !self.visible {
            return;
        }
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{prefix:>20} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(step.to_string());
        self.push(bar);
    }
    fn rows(&self, n: u64) {
        self.top(|b| b.set_message(format!("{n} rows")));
    }
    fn phase(&self, what: &str) {
        self.top(|b| b.set_message(what.to_string()));
    }
    fn advance(&self, n: u64) {
        self.top(|b| b.inc(n));
    }
    fn finish(&self) {
        if let Ok(mut s) = self.stack.lock()
            && let Some(b) = s.pop()
        {
            b.finish_and_clear();
        }
    }
}
