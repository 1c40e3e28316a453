//! Feature builds on a real Ballista cluster: a scheduler and two executors (`cslake cluster
//! scheduler|executor`, Ballista's own processes) started on loopback ports for the test and
//! stopped when it ends, and the same commands on the local engine: equal tables row for row.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{cslake, query};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a local port")
        .local_addr()
        .expect("local address")
        .port()
}

fn wait_for(port: u16, what: &str, log: &Path) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port} within 60 s; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scheduler and two executors, each a `cslake cluster ...` process, killed when dropped.
struct Cluster {
    processes: Vec<Child>,
    port: u16,
    _work: tempfile::TempDir,
}

impl Cluster {
    /// The processes get `env` (an S3 lake's credentials) besides a quiet log level.
    fn start(env: &[(&str, &str)]) -> Self {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let port = free_port();
        let mut processes = Vec::new();
        let mut spawn = |name: &str, args: &[String]| {
            let log = dir.join(format!("{name}.log"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut vars = vec![("RUST_LOG", "warn")];
            vars.extend_from_slice(env);
            let child = crate::command(dir, &args, &vars)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("cslake cluster starts");
            processes.push(child);
            log
        };
        let log = spawn(
            "scheduler",
            &[
                "cluster".into(),
                "scheduler".into(),
                "--bind".into(),
                format!("127.0.0.1:{port}"),
            ],
        );
        wait_for(port, "the scheduler", &log);
        for i in 0..2 {
            let (flight, grpc) = (free_port(), free_port());
            let work_dir = dir.join(format!("executor{i}"));
            std::fs::create_dir_all(&work_dir).unwrap();
            let log = spawn(
                &format!("executor{i}"),
                &[
                    "--memory-limit".into(),
                    "1G".into(),
                    "cluster".into(),
                    "executor".into(),
                    "--scheduler".into(),
                    format!("127.0.0.1:{port}"),
                    "--port".into(),
                    flight.to_string(),
                    "--grpc-port".into(),
                    grpc.to_string(),
                    "--work-dir".into(),
                    work_dir.display().to_string(),
                    "--concurrent-tasks".into(),
                    "2".into(),
                ],
            );
            wait_for(flight, &format!("executor {i}"), &log);
            wait_for(grpc, &format!("executor {i}"), &log);
        }
        Self {
            processes,
            port,
            _work: work,
        }
    }

    fn engine(&self) -> String {
        format!("ballista://127.0.0.1:{}", self.port)
    }

    /// What the scheduler and executors logged (for a failure message).
    fn logs(&self) -> String {
        crate::files_under(self._work.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                // the last lines, each cut short (a scheduler's line can hold a whole plan)
                let tail: Vec<String> = text
                    .lines()
                    .rev()
                    .take(20)
                    .map(|l| l.chars().take(400).collect())
                    .collect();
                let tail: Vec<String> = tail.into_iter().rev().collect();
                format!("== {}\n{}", p.display(), tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for f in crate::files_under(from) {
        let target = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&f, &target).unwrap();
    }
}

/// The feature tables of a lake (views, their states, the rollups).
fn feature_tables(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("lake/features"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("_delta_log").is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every row of `features.<table>`, without audit columns and run times, floats rounded (a sum's last bits
/// depend on the order partitions meet), in a stable order.
fn rows(query: &dyn Fn(&str) -> Vec<String>, table: &str) -> Vec<String> {
    let types = query(&format!(
        "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'features' AND table_name = '{table}' ORDER BY ordinal_position"
    ));
    let columns: Vec<String> = types[1..]
        .iter()
        .filter_map(|line| {
            let (name, ty) = line.split_once(',')?;
            // audit columns, and when a choice was made (the wall clock of each run)
            if name.starts_with('_')
                || (name.ends_with("_at") && ty.trim_start_matches('"').starts_with("Timestamp"))
            {
                return None;
            }
            Some(if ty.starts_with("Float") {
                format!("ROUND({name}, 9) AS {name}")
            } else {
                name.to_string()
            })
        })
        .collect();
    assert!(!columns.is_empty(), "features.{table} has no columns: {types:?}");
    let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
    query(&format!(
        "SELECT {} FROM features.{table} ORDER BY {}",
        columns.join(", "),
        order.join(", ")
    ))
}

fn assert_same_features(local: &Path, remote: &Path, cluster: &Cluster) {
    let tables = feature_tables(local);
    assert!(
        tables.iter().any(|t| t == "usage_daily") && tables.iter().any(|t| t == "usage_activity"),
        "{tables:?}"
    );
    assert_eq!(feature_tables(remote), tables);
    for t in &tables {
        let (a, b) = (rows(&|q| query(local, q), t), rows(&|q| query(remote, q), t));
        assert!(a.len() > 1, "features.{t} is empty");
        assert!(
            a == b,
            "features.{t}: {} rows locally, {} on the cluster; first difference: {:?}\n{}",
            a.len() - 1,
            b.len() - 1,
            a.iter().zip(&b).find(|(x, y)| x != y),
            cluster.logs()
        );
    }
}

#[test]
fn features_and_a_backfill_on_a_ballista_cluster_equal_the_local_engine() {
    let (_l, local) = crate::workspace(120, 150, "2026-10-31");
    cslake(&local, &["ingest", "--source", "data"]).ok();
    let remote_dir = tempfile::tempdir().unwrap();
    let remote: PathBuf = remote_dir.path().to_path_buf();
    copy_dir(&local.join("lake"), &remote.join("lake"));
    let cluster = Cluster::start(&[]);
    let engine = cluster.engine();

    cslake(&local, &["features", "--as-of", "2026-10-31"]).ok();
    let out = cslake(
        &remote,
        &["--engine", &engine, "features", "--as-of", "2026-10-31"],
    );
    assert_eq!(out.code, 0, "{}\n{}\n{}", out.stdout, out.stderr, cluster.logs());
    let s = out.summary();
    assert_eq!(s["engine"], engine, "{s}");
    assert_eq!(s["rollup"]["mode"], "full", "{s}");
    // the work went to the cluster: both rollups, the states and every view are jobs there
    let views = s["views"].as_array().unwrap().len() as u64;
    assert!(s["cluster_jobs"].as_u64().unwrap() >= views + 2, "{s}");
    assert_same_features(&local, &remote, &cluster);

    // a short backfill: every date's views (and the daily rollup refresh) on the cluster
    let backfill = [
        "backfill",
        "--from",
        "2026-10-20",
        "--to",
        "2026-10-30",
        "--every",
        "5",
        "--features-only",
    ];
    cslake(&local, &backfill).ok();
    let mut args = vec!["--engine", engine.as_str()];
    args.extend(backfill);
    let out = cslake(&remote, &args);
    assert_eq!(out.code, 0, "{}\n{}\n{}", out.stdout, out.stderr, cluster.logs());
    assert_eq!(out.summary()["dates"], 3, "{}", out.stdout);
    assert_same_features(&local, &remote, &cluster);
    let dates = query(
        &remote,
        "SELECT COUNT(DISTINCT as_of_date) AS n FROM features.usage_activity",
    );
    assert_eq!(dates[1], "4", "{dates:?}");
}

#[test]
fn a_cluster_that_is_down_fails_naming_it_and_writes_nothing() {
    let (_d, dir) = crate::workspace(30, 40, "2026-10-31");
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    let before = crate::files_under(&dir.join("lake"));
    let port = free_port();
    let engine = format!("ballista://127.0.0.1:{port}");
    let out = cslake(&dir, &["--engine", &engine, "features", "--as-of", "2026-10-31"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains(&format!("the Ballista scheduler at {engine} cannot be reached")),
        "{}",
        out.stderr
    );
    // nothing of the features zone, and no other table changed (the audit row and leases aside)
    assert!(!dir.join("lake/features").exists(), "features were written");
    let data = |files: Vec<PathBuf>| -> Vec<PathBuf> {
        files
            .into_iter()
            .filter(|p| {
                !p.starts_with(dir.join("lake/ops")) && !p.starts_with(dir.join("lake/_cslake_leases"))
            })
            .collect()
    };
    assert_eq!(data(crate::files_under(&dir.join("lake"))), data(before));

    let out = cslake(
        &dir,
        &["--engine", "spark://x:1", "features", "--as-of", "2026-10-31"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("`local` or `ballista://HOST:PORT`"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_s3_lake_is_read_by_the_executors_with_their_own_credentials() {
    let s3 = crate::s3::Moto::start();
    assert_eq!(s3.request("PUT", "/lake", b""), 200);
    let (_d, dir) = crate::workspace(20, 45, "2026-03-31");
    for lake in ["s3://lake/local", "s3://lake/cluster"] {
        s3.cslake(&dir, &["--lake", lake, "ingest", "--source", "data"])
            .ok();
    }
    // the executors have the store's credentials in their own environment; the client sends none
    let cluster = Cluster::start(&s3.env());
    let engine = cluster.engine();
    let local = s3
        .cslake(
            &dir,
            &["--lake", "s3://lake/local", "features", "--as-of", "2026-03-31"],
        )
        .ok()
        .summary();
    let out = s3.cslake(
        &dir,
        &[
            "--lake",
            "s3://lake/cluster",
            "--engine",
            &engine,
            "features",
            "--as-of",
            "2026-03-31",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}\n{}", out.stdout, out.stderr, cluster.logs());
    assert_eq!(out.summary()["engine"], engine);
    let query = |lake: &'static str| {
        let s3 = &s3;
        let dir = dir.clone();
        move |sql: &str| -> Vec<String> {
            s3.cslake(&dir, &["--lake", lake, "query", sql, "--format", "csv"])
                .ok()
                .stdout
                .lines()
                .map(str::to_string)
                .collect()
        }
    };
    let (on_local, on_cluster) = (query("s3://lake/local"), query("s3://lake/cluster"));
    let mut tables: Vec<String> = local["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_str().unwrap().to_string())
        .collect();
    tables.extend(["usage_daily".to_string(), "usage_daily_users".to_string()]);
    for t in &tables {
        let (a, b) = (rows(&on_local, t), rows(&on_cluster, t));
        assert!(a.len() > 1, "features.{t} is empty");
        assert!(a == b, "features.{t} differs on the cluster\n{}", cluster.logs());
    }
}
