//! Ingest throughput and peak memory, side by side with DuckDB and polars in the same run.
//!
//! Writes N usage events (the shape of `../shared/perf/gen.py`: ids, accounts, ~1M users, eight
//! event types, a year of timestamps, one event in a hundred delivered twice) as one Parquet file,
//! one CSV file and one NDJSON file, then for each file:
//! - `cslake`: a full ingest (read, map, cast, check, de-duplicate on `event_id`, write the Delta
//!   table) under `--memory-limit` (`CSLAKE_BENCH_MEMORY`, default 1G), in a process of its own;
//! - DuckDB and polars (Python, `benches/ingest_reference.py`): read, de-duplicate on `event_id`,
//!   write Parquet: the least any engine must do with the same file.
//!
//! Each run reports wall time, CPU time, rows per CPU-second (rows/s per core) and peak resident
//! memory; the last column is each engine's wall time over DuckDB's. `CSLAKE_BENCH_EVENTS` (default
//! 5,000,000) sets the size, `CSLAKE_BENCH_FORMATS` which files (default `parquet,csv,ndjson`),
//! `CSLAKE_BENCH_PYTHON` the interpreter that has duckdb and polars
//! (default `python3`; missing engines are reported as skipped). Linux only (peak memory and CPU
//! time come from `/proc`).
//!
//! `cargo bench -p cslake-benches --bench ingest`
#![allow(clippy::print_stderr, clippy::print_stdout)] // a benchmark reports

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cslake_benches::{ACCOUNTS, Usage, env, events, usage_so_far};
use cslake_pipeline::day;
use cslake_pipeline::lake::ops::Audit;
use cslake_pipeline::{Lake, NoProgress, Progress, Settings};
use cslake_sinks::{FileFormat, FileWriter};

/// A drop folder holding the accounts and all the events in one file of `format`.
fn write_drop(root: &Path, format: FileFormat, n: u64) -> PathBuf {
    let ext = match format {
        FileFormat::Parquet => "parquet",
        FileFormat::Csv => "csv",
        FileFormat::Ndjson => "ndjson",
    };
    let dir = root.join(ext);
    std::fs::create_dir_all(&dir).expect("drop folder");
    let mut accounts = String::from("account_id,name,segment\n");
    for i in 0..ACCOUNTS {
        accounts.push_str(&format!(
            "acct-{i:06},Company {i},{}\n",
            ["SMB", "Mid-Market", "Enterprise"][(i % 3) as usize]
        ));
    }
    std::fs::write(dir.join("accounts.csv"), accounts).expect("accounts");
    let file = dir.join(format!("usage_events.{ext}"));
    let mut w = FileWriter::create(&file, format, events(0, 1).schema()).expect("writer");
    let step = 1_000_000;
    let mut lo = 0;
    while lo < n {
        let hi = (lo + step).min(n);
        w.write(&events(lo, hi)).expect("write events");
        lo = hi;
    }
    w.finish().expect("finish events");
    std::fs::write(
        dir.join("cslake.toml"),
        "[ingest.tables.usage_events]\ncolumns = { contact_id = \"user_id\", event_time = \"occurred_at\" }\n",
    )
    .expect("config");
    dir
}

/// The child: one cslake ingest of `drop` into `lake`, in this process.
fn child(drop: &str, lake: &str, memory: &str) {
    if std::env::var("RUST_LOG").is_ok() {
        // the ingest's own log (files read, loads and their seconds), for profiling
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let config = Path::new(drop).join("cslake.toml");
    let settings = Settings::load(
        Some(&config),
        Some(lake.to_string()),
        Some("bench".into()),
        Some(memory.to_string()),
    )
    .expect("settings");
    let lake = Lake::from_settings(&settings).expect("lake");
    let audit = Audit {
        actor: "bench".into(),
        args: vec![],
    };
    struct Quiet;
    impl Progress for Quiet {}
    impl day::Observer for Quiet {}
    let _ = NoProgress;
    let t = Instant::now();
    let r = rt
        .block_on(day::ingest(
            &lake,
            &settings,
            &[drop.to_string()],
            true,
            None,
            &audit,
            &Quiet,
        ))
        .expect("ingest");
    let wall = t.elapsed().as_secs_f64();
    let (cpu, peak) = usage_so_far();
    let events = r
        .sources
        .iter()
        .flat_map(|s| &s.tables)
        .find(|t| t.table == "usage_events")
        .expect("usage_events loaded");
    println!("{} {} {wall} {cpu} {peak}", events.read, events.inserted);
}

/// Runs the child for `drop` and reads what it measured: (events read, events inserted, usage).
fn run_cslake(drop: &Path, lake: &Path, memory: &str) -> (u64, u64, Usage) {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .env("CSLAKE_BENCH_CHILD", "1")
        .args([drop.as_os_str(), lake.as_os_str()])
        .arg(memory)
        .output()
        .expect("run the ingest child");
    assert!(
        out.status.success(),
        "ingest of {} failed: {}",
        drop.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    assert_eq!(v.len(), 5, "child said: {text}");
    (
        v[0] as u64,
        v[1] as u64,
        Usage {
            wall: v[2],
            cpu: v[3],
            peak_mb: v[4],
        },
    )
}

/// Runs the reference script with `engine` on `file`; `None` when the engine is not installed.
fn run_reference(python: &str, engine: &str, file: &Path, out: &Path) -> Option<(u64, Usage)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ingest_reference.py");
    let o = Command::new(python)
        .arg(script)
        .arg(engine)
        .arg(file)
        .arg(out)
        .output()
        .ok()?;
    if !o.status.success() {
        eprintln!(
            "{engine} on {}: {}",
            file.display(),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
        );
        return None;
    }
    let v: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 4).then(|| {
        (
            v[0] as u64,
            Usage {
                wall: v[1],
                cpu: v[2],
                peak_mb: v[3],
            },
        )
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var("CSLAKE_BENCH_CHILD").is_ok() {
        child(&args[1], &args[2], &args[3]);
        return;
    }
    let n = env("CSLAKE_BENCH_EVENTS", 5_000_000) as u64;
    let memory = std::env::var("CSLAKE_BENCH_MEMORY").unwrap_or_else(|_| "1G".into());
    let python = std::env::var("CSLAKE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    // CSLAKE_BENCH_DIR keeps the files there (to profile the child on them); else a temporary folder
    let dir = match std::env::var("CSLAKE_BENCH_DIR") {
        Ok(d) => tempfile::Builder::new()
            .disable_cleanup(true)
            .tempdir_in(d)
            .expect("bench folder"),
        Err(_) => tempfile::tempdir().expect("temp dir"),
    };
    println!(
        "ingest: {n} events (1% delivered twice), one file per format; cslake with --memory-limit {memory}"
    );
    println!(
        "{:<8} {:<8} {:>11} {:>8} {:>8} {:>14} {:>9} {:>10}",
        "format", "engine", "rows", "wall s", "cpu s", "rows/s/core", "peak MB", "vs duckdb"
    );
    let formats = std::env::var("CSLAKE_BENCH_FORMATS").unwrap_or_else(|_| "parquet,csv,ndjson".into());
    for format in [FileFormat::Parquet, FileFormat::Csv, FileFormat::Ndjson] {
        let name = format!("{format:?}").to_lowercase();
        if !formats.split(',').any(|f| f.trim() == name) {
            continue;
        }
        let t = Instant::now();
        let drop = write_drop(dir.path(), format, n);
        let file = std::fs::read_dir(&drop)
            .expect("drop")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_stem().is_some_and(|s| s == "usage_events"))
            .expect("events file");
        let size = std::fs::metadata(&file).map_or(0, |m| m.len());
        eprintln!(
            "{}: {:.0} MB written in {:.0} s",
            file.display(),
            size as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        let mut duck_wall = None;
        let mut lines = Vec::new();
        for engine in ["duckdb", "polars"] {
            let out = dir.path().join(format!("{name}-{engine}.parquet"));
            match run_reference(&python, engine, &file, &out) {
                Some((rows, u)) => {
                    if engine == "duckdb" {
                        duck_wall = Some(u.wall);
                    }
                    lines.push((engine, rows, u));
                }
                None => println!("{name:<8} {engine:<8} skipped (pip install {engine} for {python})"),
            }
            let _ = std::fs::remove_file(&out);
        }
        let lake = dir.path().join(format!("lake-{name}"));
        let (read, inserted, u) = run_cslake(&drop, &lake, &memory);
        assert_eq!(read, n, "every event is read");
        assert_eq!(inserted, n - n / 100, "every event lands once");
        lines.push(("cslake", read, u));
        for (engine, rows, u) in lines {
            let ratio = duck_wall.map_or_else(|| "-".to_string(), |d| format!("{:.2}x", u.wall / d));
            println!(
                "{name:<8} {engine:<8} {rows:>11} {:>8.1} {:>8.1} {:>14.0} {:>9.0} {:>10}",
                u.wall,
                u.cpu,
                rows as f64 / u.cpu.max(1e-9),
                u.peak_mb,
                ratio
            );
        }
        if std::env::var("CSLAKE_BENCH_DIR").is_err() {
            let _ = std::fs::remove_dir_all(&lake);
            let _ = std::fs::remove_dir_all(&drop);
        }
    }
}
