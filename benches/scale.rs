//! The end-to-end scale benchmark: generate N accounts × D days, land them, build the features of
//! the last day (the full build, rollup included), then land one more day of events and build
//! that day (the incremental run), reporting rows, seconds, rows per second and the peak memory
//! (resident set) of each stage. Each stage runs through the day runner (`cslake_pipeline::day`),
//! the code `cslake run` runs.
//!
//! `CSLAKE_BENCH_ACCOUNTS` (default 2000) and `CSLAKE_BENCH_DAYS` (default 365) set the size;
//! `cargo bench -p cslake-benches --bench scale`. 100K accounts × 365 days is the target scale.
#![allow(clippy::print_stderr)] // a benchmark reports on stderr

use chrono::NaiveDate;
use cslake_pipeline::demo::{GenOptions, generate};
use std::sync::Mutex;
use std::time::Instant;

use cslake_pipeline::day::{self, DayOptions, Observer, Step, StepReport};
use cslake_pipeline::features::rollup::RollupReport;
use cslake_pipeline::lake::ops::Audit;
use cslake_pipeline::{Lake, NoProgress, Progress, Settings, lake};
use cslake_sinks::FileFormat;

/// Keeps what the features step says of the rollup.
#[derive(Default)]
struct Watch {
    rollup: Mutex<Option<RollupReport>>,
}

impl Progress for Watch {}

impl Observer for Watch {
    fn step_done(&self, report: StepReport<'_>) {
        if let (StepReport::Features(f), Ok(mut r)) = (report, self.rollup.lock()) {
            r.clone_from(&f.rollup);
        }
    }
}

/// Only the features step of a day.
fn features_only() -> DayOptions {
    DayOptions {
        sources: vec![],
        steps: vec![Step::Features],
        retrain: false,
        strict: false,
    }
}

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
        churn: Default::default(),
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
        let audit = Audit {
            actor: "bench".into(),
            args: vec![],
        };
        let watch = Watch::default();
        let t = Instant::now();
        let source = opts.out.display().to_string();
        let r = day::ingest(&lake, &settings, &[source], false, Some(end), &audit, &watch)
            .await
            .expect("ingest");
        report("ingest", r.read, t.elapsed().as_secs_f64());
        let t = Instant::now();
        let f = day::run(&lake, &settings, end, &features_only(), &audit, &watch)
            .await
            .expect("features");
        report("features (full)", events, t.elapsed().as_secs_f64());
        eprintln!(
            "{} accounts with features as of {end}",
            f.features.map_or(0, |f| f.accounts)
        );

        // one more day: the last day's events again, a day later and with new ids
        let next = end + chrono::Duration::days(1);
        let ctx = lake.session().await.expect("session");
        let day = lake::query::sql(
            &ctx,
            &format!(
                "SELECT 'N-' || event_id AS event_id, account_id, contact_id, event_type, \
                 event_time + INTERVAL '1' DAY AS event_time, quantity FROM core.usage_events \
                 WHERE CAST(event_time AS DATE) = DATE '{end}'"
            ),
        )
        .await
        .expect("last day");
        let drop = dir.path().join("next/usage_events");
        std::fs::create_dir_all(&drop).expect("folder");
        let mut w =
            cslake_sinks::FileWriter::create(&drop.join("day.parquet"), FileFormat::Parquet, day[0].schema())
                .expect("writer");
        for b in &day {
            w.write(b).expect("write");
        }
        let new_events = w.rows();
        w.finish().expect("finish");
        let t = Instant::now();
        let source = dir.path().join("next").display().to_string();
        day::ingest(&lake, &settings, &[source], false, Some(next), &audit, &watch)
            .await
            .expect("ingest day");
        report("ingest (one day)", new_events, t.elapsed().as_secs_f64());
        let t = Instant::now();
        day::run(&lake, &settings, next, &features_only(), &audit, &watch)
            .await
            .expect("features day");
        report("features (next day)", new_events, t.elapsed().as_secs_f64());
        if let Some(r) = watch.rollup.lock().ok().and_then(|mut r| r.take()) {
            eprintln!("rollup: {} refresh of {} day(s), {} rows", r.mode, r.days, r.rows);
        }
    });
}

/// The peak resident memory since the last call, in MB (Linux; 0 elsewhere).
fn peak_mb() -> f64 {
    let kb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .unwrap_or(0.0);
    // reset the high-water mark so the next stage reports its own peak
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    kb / 1024.0
}

fn report(stage: &str, rows: usize, secs: f64) {
    eprintln!(
        "{stage:<20} {rows:>12} rows {secs:>8.2} s {:>12.0} rows/s {:>8.0} MB peak",
        rows as f64 / secs.max(1e-9),
        peak_mb()
    );
}
