//! Logging (stderr; JSON when stderr is not a terminal) and progress bars (terminal only).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,buoyant_kernel=off,deltalake_core=error,cslake=info,cslake_pipeline=info,cslake_features=info,cslake_models=info"));
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

/// indicatif bars on a terminal; nothing otherwise (logs carry the counts).
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
}

impl Bars {
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
            visible: std::io::stderr().is_terminal(),
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
                ProgressStyle::with_template("{msg:>20} [{bar:30}] {pos}/{len} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(step.to_string());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
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
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }
    fn rows(&self, n: u64) {
        if let Ok(b) = self.bar.lock()
            && let Some(b) = b.as_ref()
        {
            b.set_message(format!("{n} rows"));
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(b) = self.bar.lock()
            && let Some(b) = b.as_ref()
        {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock()
            && let Some(b) = b.take()
        {
            b.finish_and_clear();
        }
    }
}
