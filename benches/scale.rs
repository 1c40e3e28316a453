//! The end-to-end scale benchmark: generate N accounts × D days, land them, build the features of
//! the last day, and report rows, seconds and rows per second for each stage.
//!
//! `CSLAKE_BENCH_ACCOUNTS` (default 2000) and `CSLAKE_BENCH_DAYS` (default 365) set the size;
//! `cargo bench -p cslake-benches --bench scale`. 100K accounts × 365 days is the target scale.
#![allow(clippy::print_stderr)] // a benchmark reports on stderr

use std::time::Instant;

use chrono::NaiveDate;
use cslake_pipeline::sources::demo::{GenOptions, generate};
use cslake_pipeline::{Lake, NoProgress, RunContext, Settings, jobs};
use cslake_sinks::FileFormat;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let accounts = env("CSLAKE_BENCH_ACCOUNTS", 2000);
    let days = env("CSLAKE_BENCH_DAYS", 365) as i64;
    let dir = tempfile::tempdir().expect("temp dir");
    let end = NaiveDate::from_ymd_opt(2026, 10, 31).expect("date");
    let opts = GenOptions {
        accounts,
        days,
        end,
        seed: 7,
        format: FileFormat::Parquet,
        out: dir.path().join("data"),
        events_per_file: 1_000_000,
    };
    let t = Instant::now();
    let stats = generate(&opts, &NoProgress).expect("generate");
    let events = stats
        .tables
        .iter()
        .find(|(t, _)| t == "usage_events")
        .map_or(0, |(_, n)| *n);
    report("generate", events, t.elapsed().as_secs_f64());

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let lake_path = dir.path().join("lake").display().to_string();
        let memory = std::env::var("CSLAKE_MEMORY_LIMIT").ok();
        let settings =
            Settings::load(None, Some(lake_path.clone()), Some("bench".into()), memory).expect("settings");
        let lake = Lake::from_settings(&settings).expect("lake");
        let mut run = RunContext::new("bench", "bench", vec![], Some(end));
        let t = Instant::now();
        let source = opts.out.display().to_string();
        let r = jobs::ingest(&lake, &settings, &source, false, &mut run, &NoProgress)
            .await
            .expect("ingest");
        report("ingest", r.read, t.elapsed().as_secs_f64());
        let t = Instant::now();
        let f = jobs::features(&lake, &settings, end, false, &mut run)
            .await
            .expect("features");
        report("features (one day)", events, t.elapsed().as_secs_f64());
        eprintln!("{} accounts with features as of {end}", f.accounts);
    });
}

fn report(stage: &str, rows: usize, secs: f64) {
    eprintln!(
        "{stage:<20} {rows:>12} rows {secs:>8.2} s {:>12.0} rows/s",
        rows as f64 / secs.max(1e-9)
    );
}
