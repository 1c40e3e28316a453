//! Feature builds side by side with DuckDB running cslake's own SQL on cslake's own Delta files,
//! in the same run: the full build (both usage rollups from every event, then every view) and the
//! next day (one more day of events landed, rollups refreshed for it, every view), each in a
//! process of its own under `--memory-limit`, with wall time, CPU time and peak resident memory.
//!
//! The data (`CSLAKE_BENCH_DATA`):
//! - `perf` (default): `CSLAKE_BENCH_EVENTS` usage events (default 5,000,000; 50,000,000 is the
//!   `../shared/perf` size) in the shape of `../shared/perf/gen.py`: 100K accounts with one
//!   subscription each, ~1M users spread over every account, eight event types, one year;
//! - `demo`: the project's own generator, `CSLAKE_BENCH_ACCOUNTS` accounts (default 100,000) ×
//!   365 days, every table.
//!
//! The reference (`benches/features_reference.py`, `CSLAKE_BENCH_PYTHON` names a Python with
//! duckdb) reads the Parquet files of the current version of each core table, writes the rollups
//! of `sql/rollups/` to Parquet and then the views cslake computed (their `sql/features/` files),
//! each to Parquet, with 2 threads. `CSLAKE_BENCH_MEMORY` (default 4G) is cslake's budget.
//!
//! `CSLAKE_BENCH_CLUSTER=N` also runs the full build on a Ballista cluster started for it on this
//! machine (a scheduler and N executors, each a process running cslake's own `cluster` code, the
//! budget split between them), from a copy of the same lake: wall time, CPU time of the client and
//! the executors, and the sum of their peak resident memories.
//!
//! `cargo bench -p cslake-benches --bench features`
#![allow(clippy::print_stderr, clippy::print_stdout)] // a benchmark reports

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chrono::NaiveDate;
use cslake_benches::{ACCOUNTS, Usage, env, events_in, usage_so_far};
use cslake_pipeline::day::{self, DayOptions, Step};
use cslake_pipeline::demo::{GenOptions, generate};
use cslake_pipeline::lake::ops::Audit;
use cslake_pipeline::{Lake, NoProgress, Progress, Settings};
use cslake_sinks::{FileFormat, FileWriter};

struct Quiet;
impl Progress for Quiet {}
impl day::Observer for Quiet {}

/// Keeps what the features step reports: the views computed and how the rollups were refreshed.
#[derive(Default)]
struct Watch {
    seen: std::sync::Mutex<Option<(Vec<String>, String)>>,
}
impl Progress for Watch {}
impl day::Observer for Watch {
    fn step_done(&self, report: day::StepReport<'_>) {
        if let (day::StepReport::Features(f), Ok(mut seen)) = (report, self.seen.lock()) {
            let views = f.views.iter().map(|(v, _, _)| v.clone()).collect();
            // the rollups' refresh, then how each view state came to the date: `incremental+step`
            let mut mode = f.rollup.as_ref().map_or("-".to_string(), |r| r.mode.clone());
            for st in &f.states {
                mode.push('+');
                mode.push_str(&st.mode);
            }
            *seen = Some((views, mode));
        }
    }
}

fn open(lake: &str, config: Option<&Path>, memory: &str) -> (Settings, Lake) {
    let settings = Settings::load(
        config,
        Some(lake.to_string()),
        Some("bench".into()),
        Some(memory.to_string()),
    )
    .expect("settings");
    let lake = Lake::from_settings(&settings).expect("lake");
    (settings, lake)
}

/// The child: `ingest DROP LAKE MEMORY AS_OF` or `features LAKE MEMORY AS_OF CONFIG`, in this
/// process; prints what it measured.
fn child(args: &[String]) {
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let audit = Audit {
        actor: "bench".into(),
        args: vec![],
    };
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    let t = Instant::now();
    match args[1].as_str() {
        "ingest" => {
            let (drop, lake, memory, as_of) = (&args[2], &args[3], &args[4], date(&args[5]));
            let config = Path::new(drop).join("cslake.toml");
            let (settings, lake) = open(lake, config.exists().then_some(config.as_path()), memory);
            let r = rt
                .block_on(day::ingest(
                    &lake,
                    &settings,
                    std::slice::from_ref(drop),
                    false,
                    Some(as_of),
                    &audit,
                    &Quiet,
                ))
                .expect("ingest");
            let (cpu, peak) = usage_so_far();
            println!("{} {} {cpu} {peak} -", r.read, t.elapsed().as_secs_f64());
        }
        "scheduler" => {
            let bind = format!("127.0.0.1:{}", args[2]).parse().expect("address");
            rt.block_on(cslake_pipeline::cluster::process::scheduler(
                bind,
                None,
                Default::default(),
            ))
            .expect("scheduler");
        }
        "executor" => {
            let port = |i: usize| args[i].parse::<u16>().expect("port");
            let memory = cslake_pipeline::units::parse_bytes(&args[5]).expect("memory");
            let options = cslake_pipeline::cluster::process::ExecutorOptions {
                scheduler: ("127.0.0.1".into(), port(2)),
                bind_host: "127.0.0.1".into(),
                external_host: None,
                port: port(3),
                grpc_port: port(4),
                work_dir: Some(PathBuf::from(&args[6])),
                concurrent_tasks: Some(1),
                memory_limit: Some(memory),
                storage: Default::default(),
            };
            rt.block_on(cslake_pipeline::cluster::process::executor(options))
                .expect("executor");
        }
        "features" => {
            let (lake, memory, as_of) = (&args[2], &args[3], date(&args[4]));
            let (mut settings, lake) = open(lake, None, memory);
            if let Some(engine) = args.get(5) {
                settings = settings.with_engine(Some(engine)).expect("engine");
            }
            let opts = DayOptions {
                sources: vec![],
                steps: vec![Step::Features],
                retrain: false,
                strict: false,
            };
            let watch = Watch::default();
            let r = rt
                .block_on(day::run(&lake, &settings, as_of, &opts, &audit, &watch))
                .expect("features");
            let (cpu, peak) = usage_so_far();
            let f = r.features.expect("features report");
            let (views, mode) = watch
                .seen
                .lock()
                .ok()
                .and_then(|mut s| s.take())
                .expect("the features step reported");
            println!(
                "{} {} {cpu} {peak} {} {mode}",
                f.accounts,
                t.elapsed().as_secs_f64(),
                views.join(",")
            );
        }
        other => panic!("unknown child step {other}"),
    }
}

/// What a child said: (rows, usage, views, rollup and state modes).
fn run_child(args: &[&str]) -> (u64, Usage, String, String) {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .env("CSLAKE_BENCH_CHILD", "1")
        .args(args)
        .output()
        .expect("run the child");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var("RUST_LOG").is_ok() {
        // the child's log (per-view seconds with RUST_LOG=cslake_features=debug)
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<&str> = text.split_whitespace().collect();
    assert!(v.len() >= 5, "child said: {text}");
    let f = |i: usize| v[i].parse::<f64>().unwrap_or(0.0);
    (
        f(0) as u64,
        Usage {
            wall: f(1),
            cpu: f(2),
            peak_mb: f(3),
        },
        v[4].to_string(),
        v.get(5).map_or("-", |m| m).to_string(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read the lake") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::create_dir_all(to).expect("folder");
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed().as_secs() < 60, "nothing listens on {port}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The full build of `lake` on a scheduler and `executors` executors started here, each with
/// its share of `memory`: (accounts, usage of the client and the executors together).
fn cluster_build(dir: &Path, lake: &Path, executors: usize, memory: &str, as_of: NaiveDate) -> (u64, Usage) {
    let exe = std::env::current_exe().expect("own path");
    let spawn = |args: &[String]| {
        Command::new(&exe)
            .env("CSLAKE_BENCH_CHILD", "1")
            .env("RUST_LOG", "warn")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("a cluster process")
    };
    let port = free_port();
    let mut processes = vec![spawn(&["scheduler".into(), port.to_string()])];
    wait_for(port);
    let budget = cslake_pipeline::units::parse_bytes(memory).expect("memory") / executors;
    for i in 0..executors {
        let (flight, grpc) = (free_port(), free_port());
        let work = dir.join(format!("executor{i}"));
        std::fs::create_dir_all(&work).expect("work folder");
        processes.push(spawn(&[
            "executor".into(),
            port.to_string(),
            flight.to_string(),
            grpc.to_string(),
            budget.to_string(),
            work.display().to_string(),
        ]));
        wait_for(grpc);
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let engine = format!("ballista://127.0.0.1:{port}");
    let lake_s = lake.display().to_string();
    let (accounts, mut usage, _, _) = run_child(&["features", &lake_s, memory, &as_of.to_string(), &engine]);
    for p in &mut processes[1..] {
        let (cpu, peak) = cslake_benches::usage_of(&p.id().to_string());
        usage.cpu += cpu;
        usage.peak_mb += peak;
    }
    for p in &mut processes {
        let _ = p.kill();
        let _ = p.wait();
    }
    (accounts, usage)
}

/// Writes the perf-shaped drop: accounts, one subscription each, `n` events in files of 1M rows.
fn perf_drop(dir: &Path, n: u64) -> PathBuf {
    let drop = dir.join("perf");
    std::fs::create_dir_all(drop.join("usage_events")).expect("drop folder");
    let mut accounts = String::from("account_id,name,segment\n");
    let mut subs = String::from("subscription_id,account_id,plan,seats,mrr,start_date,end_date\n");
    for i in 0..ACCOUNTS {
        accounts.push_str(&format!(
            "acct-{i:06},Company {i},{}\n",
            ["SMB", "Mid-Market", "Enterprise"][(i % 3) as usize]
        ));
        subs.push_str(&format!("sub-{i},acct-{i:06},pro,10,500.0,2025-11-01,\n"));
    }
    std::fs::write(drop.join("accounts.csv"), accounts).expect("accounts");
    std::fs::write(drop.join("subscriptions.csv"), subs).expect("subscriptions");
    let start = micros(NaiveDate::from_ymd_opt(2025, 11, 26).expect("date"));
    let step = 1_000_000;
    let mut lo = 0;
    while lo < n {
        let hi = (lo + step).min(n);
        let file = drop.join(format!("usage_events/part-{:03}.parquet", lo / step));
        let batch = events_in(lo, hi, start, 365);
        let mut w = FileWriter::create(&file, FileFormat::Parquet, batch.schema()).expect("writer");
        w.write(&batch).expect("write events");
        w.finish().expect("finish events");
        lo = hi;
    }
    std::fs::write(drop.join("cslake.toml"), PERF_CONFIG).expect("config");
    drop
}

const PERF_CONFIG: &str =
    "[ingest.tables.usage_events]\ncolumns = { contact_id = \"user_id\", event_time = \"occurred_at\" }\n";

fn micros(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or(0)
}

/// One more day of perf-shaped events (`per_day` of them, new ids) on `day`.
fn perf_next_day(dir: &Path, n: u64, per_day: u64, day: NaiveDate) -> PathBuf {
    let drop = dir.join("next");
    std::fs::create_dir_all(drop.join("usage_events")).expect("drop folder");
    let batch = events_in(n + 1, n + 1 + per_day, micros(day), 1);
    let mut w = FileWriter::create(
        &drop.join("usage_events/day.parquet"),
        FileFormat::Parquet,
        batch.schema(),
    )
    .expect("writer");
    w.write(&batch).expect("write");
    w.finish().expect("finish");
    std::fs::write(drop.join("cslake.toml"), PERF_CONFIG).expect("config");
    drop
}

/// One more day of the demo's events: the last day's again, a day later, with new ids.
fn demo_next_day(dir: &Path, lake: &Path, last: NaiveDate) -> PathBuf {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_, lake) = open(&lake.display().to_string(), None, "2G");
    let day = rt
        .block_on(async {
            let ctx = lake.session().await?;
            cslake_pipeline::lake::query::sql(
                &ctx,
                &format!(
                    "SELECT 'N-' || event_id AS event_id, account_id, contact_id, event_type, \
                     event_time + INTERVAL '1' DAY AS event_time, quantity FROM core.usage_events \
                     WHERE CAST(event_time AS DATE) = DATE '{last}'"
                ),
            )
            .await
        })
        .expect("last day");
    let drop = dir.join("next");
    std::fs::create_dir_all(drop.join("usage_events")).expect("folder");
    let mut w = FileWriter::create(
        &drop.join("usage_events/day.parquet"),
        FileFormat::Parquet,
        day[0].schema(),
    )
    .expect("writer");
    for b in &day {
        w.write(b).expect("write");
    }
    w.finish().expect("finish");
    drop
}

/// The Parquet files of each core table's current version, as a JSON object for the reference.
fn core_files(lake: &Path) -> String {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_, l) = open(&lake.display().to_string(), None, "1G");
    let mut out = serde_json::Map::new();
    // every core table: the views read interactions, invoices, ... where the data has them
    let tables = rt.block_on(l.tables()).expect("tables");
    for t in tables
        .iter()
        .filter(|(zone, _)| zone == "core")
        .map(|(_, t)| t.as_str())
    {
        let Some(table) = rt.block_on(l.open_table("core", t)).expect("open") else {
            continue;
        };
        let files: Vec<serde_json::Value> = table
            .get_file_uris()
            .expect("files")
            .map(|u| serde_json::Value::String(u.trim_start_matches("file://").to_string()))
            .collect();
        // an empty table (attribute_history of a lake without attributes) is no view's source
        if !files.is_empty() {
            out.insert(t.to_string(), serde_json::Value::Array(files));
        }
    }
    serde_json::Value::Object(out).to_string()
}

/// Writes the SQL of the views cslake generates rather than reads from `sql/features/` (the
/// per-event-type `event_metrics`, and its state) into `dir`, for the reference to run the same SQL.
fn generated_views(lake: &Path, dir: &Path) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_, l) = open(&lake.display().to_string(), None, "1G");
    let view = rt.block_on(async {
        let ctx = l.session().await.expect("session");
        let config = cslake_pipeline::settings::EventsConfig::default();
        let metrics = cslake_pipeline::features::event_types::chosen(&ctx, &config)
            .await
            .expect("event types");
        let seats = ctx.table_exist("subscriptions").expect("catalog");
        cslake_features::event_metrics_view(&metrics, seats).expect("view")
    });
    std::fs::create_dir_all(dir).expect("views dir");
    if let Some(v) = view {
        if let Some(state) = &v.state {
            std::fs::write(dir.join(format!("{}.state.sql", v.name)), &state.sql).expect("state sql");
        }
        std::fs::write(dir.join(format!("{}.sql", v.name)), v.sql).expect("view sql");
    }
}

/// Runs the DuckDB reference; `None` when duckdb is not installed for `python`.
fn run_reference(
    python: &str,
    files: &Path,
    as_of: NaiveDate,
    views: &str,
    out: &Path,
    generated: &Path,
) -> Option<Usage> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("features_reference.py");
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new(python)
        .arg(script)
        .arg(files)
        .arg(as_of.to_string())
        .arg(views)
        .arg(&project)
        .arg(out)
        .arg(generated)
        .output()
        .ok()?;
    if !o.status.success() {
        // the whole error: DuckDB's last line is often only the caret under the culprit
        eprintln!("duckdb failed:\n{}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    let v: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 3).then(|| Usage {
        wall: v[0],
        cpu: v[1],
        peak_mb: v[2],
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var("CSLAKE_BENCH_CHILD").is_ok() {
        child(&args);
        return;
    }
    let data = std::env::var("CSLAKE_BENCH_DATA").unwrap_or_else(|_| "perf".into());
    let memory = std::env::var("CSLAKE_BENCH_MEMORY").unwrap_or_else(|_| "4G".into());
    let python = std::env::var("CSLAKE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = match std::env::var("CSLAKE_BENCH_DIR") {
        Ok(d) => tempfile::Builder::new()
            .disable_cleanup(true)
            .tempdir_in(d)
            .expect("bench folder"),
        Err(_) => tempfile::tempdir().expect("temp dir"),
    };
    let lake = dir.path().join("lake");
    let lake_s = lake.display().to_string();
    let t = Instant::now();
    let (drop, as_of, what) = if data == "demo" {
        let accounts = env("CSLAKE_BENCH_ACCOUNTS", 100_000);
        let end = NaiveDate::from_ymd_opt(2026, 10, 31).expect("date");
        let opts = GenOptions {
            accounts,
            days: 365,
            end,
            seed: 7,
            format: FileFormat::Parquet,
            out: dir.path().join("data"),
            events_per_file: 1_000_000,
            churn: Default::default(),
        };
        let stats = generate(&opts, &NoProgress).expect("generate");
        let n = stats
            .tables
            .iter()
            .find(|(t, _)| t == "usage_events")
            .map_or(0, |(_, n)| *n);
        (
            opts.out,
            end,
            format!("the demo generator, {accounts} accounts × 365 days, {n} events"),
        )
    } else {
        let n = env("CSLAKE_BENCH_EVENTS", 5_000_000) as u64;
        (
            perf_drop(dir.path(), n),
            NaiveDate::from_ymd_opt(2026, 11, 25).expect("date"),
            format!("perf-shaped: {n} events, 100,000 accounts, ~1M users"),
        )
    };
    eprintln!("generated in {:.0} s", t.elapsed().as_secs_f64());
    let drop_s = drop.display().to_string();
    let (rows, ingest, _, _) = run_child(&["ingest", &drop_s, &lake_s, "4G", &as_of.to_string()]);
    eprintln!("ingested {rows} rows in {:.0} s", ingest.wall);

    println!("features: {what}; cslake with --memory-limit {memory}, DuckDB 2 threads");
    println!(
        "{:<10} {:<7} {:>9} {:>8} {:>8} {:>9} {:>10}",
        "build", "engine", "accounts", "wall s", "cpu s", "peak MB", "vs duckdb"
    );
    let line = |build: &str, engine: &str, accounts: &str, u: &Usage, ratio: String| {
        println!(
            "{build:<10} {engine:<7} {accounts:>9} {:>8.1} {:>8.1} {:>9.0} {ratio:>10}",
            u.wall, u.cpu, u.peak_mb
        );
    };
    let executors = env("CSLAKE_BENCH_CLUSTER", 0);
    let cluster_lake = dir.path().join("lake_cluster");
    if executors > 0 {
        // the same lake before any feature, for the cluster's full build
        copy_dir(&lake, &cluster_lake);
    }
    let (accounts, full, views, mode) = run_child(&["features", &lake_s, &memory, &as_of.to_string()]);
    assert!(
        mode.split('+').all(|m| m == "full"),
        "the first build is a full one, every state from scratch: {mode}"
    );
    let files = dir.path().join("core_files.json");
    std::fs::write(&files, core_files(&lake)).expect("file list");
    let generated = dir.path().join("generated_views");
    generated_views(&lake, &generated);
    let duck = run_reference(
        &python,
        &files,
        as_of,
        &views,
        &dir.path().join("duck_out"),
        &generated,
    );
    let ratio = |u: &Usage| duck.map_or_else(|| "-".into(), |d| format!("{:.2}x", u.wall / d.wall));
    match &duck {
        Some(d) => line("full", "duckdb", "-", d, "1.00x".into()),
        None => println!("full       duckdb  failed or skipped (pip install duckdb for {python}; see above)"),
    }
    line("full", "cslake", &accounts.to_string(), &full, ratio(&full));
    if executors > 0 {
        let (accounts, u) = cluster_build(dir.path(), &cluster_lake, executors, &memory, as_of);
        line(
            &format!("full, {executors} exec"),
            "ballista",
            &accounts.to_string(),
            &u,
            ratio(&u),
        );
    }

    let next = as_of + chrono::Duration::days(1);
    let next_drop = if data == "demo" {
        demo_next_day(dir.path(), &lake, as_of)
    } else {
        let n = env("CSLAKE_BENCH_EVENTS", 5_000_000) as u64;
        perf_next_day(dir.path(), n, n / 365, next)
    };
    let next_s = next_drop.display().to_string();
    let (new_rows, _, _, _) = run_child(&["ingest", &next_s, &lake_s, "4G", &next.to_string()]);
    let (accounts, day, _, mode) = run_child(&["features", &lake_s, &memory, &next.to_string()]);
    let (rollup, states) = mode.split_once('+').unwrap_or((mode.as_str(), ""));
    assert!(
        rollup == "incremental" && !states.is_empty() && states.split('+').all(|m| m == "step"),
        "the next day is incremental and steps every state: {mode}"
    );
    line(
        "next day",
        "cslake",
        &accounts.to_string(),
        &day,
        format!("{:.1}% of full", 100.0 * day.wall / full.wall.max(1e-9)),
    );
    eprintln!("next day: {new_rows} new events");
}
