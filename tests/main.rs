//! End-to-end tests: they run the built `cslake` binary in a temporary folder, as a user would.
//! One test binary for the whole suite (linking is the slow part on small machines).

mod actions;
mod airflow;
mod cli;
mod cluster;
mod concurrency;
mod conformance;
mod connectors;
mod content;
mod e2e;
mod faults;
mod fixture;
mod foreign;
mod governance;
mod input;
mod layout;
mod properties;
mod report;
mod s3;
mod secrets;

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a command did.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The JSON summary: the last line of stdout.
    pub fn summary(&self) -> serde_json::Value {
        let last = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| {
            panic!(
                "last stdout line is not JSON ({e}): {last}\nstderr: {}",
                self.stderr
            )
        })
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `cslake` in `dir` with a clean environment for its own variables.
pub fn cslake(dir: &Path, args: &[&str]) -> Out {
    cslake_env(dir, args, &[])
}

/// The `cslake` command in `dir`, with `env` and none of the caller's own `CSLAKE_*` variables.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cslake"));
    cmd.current_dir(dir).args(args).env("RUST_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("CSLAKE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// `cslake` started in the background with its output captured (concurrency and outage tests).
pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    command(dir, args, env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cslake starts")
}

/// Like [`cslake`], with extra environment variables (credentials of API sources).
pub fn cslake_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = command(dir, args, env).output().expect("cslake runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file below `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// `cslake query ... --format csv`, as rows of text.
pub fn query(dir: &Path, sql: &str) -> Vec<String> {
    let out = cslake(dir, &["query", sql, "--format", "csv"]).ok();
    out.stdout.lines().map(str::to_string).collect()
}

/// A fresh temporary folder with a small generated data set in `data/`.
pub fn workspace(accounts: usize, days: usize, end: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    cslake(
        dir.path(),
        &[
            "generate",
            "--out",
            "data",
            "--accounts",
            &accounts.to_string(),
            "--days",
            &days.to_string(),
            "--end",
            end,
        ],
    )
    .ok();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// Every feature and score of `date`, in a stable order, without audit columns.
pub fn snapshot(dir: &Path, date: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (table, key) in [
        ("features.usage_activity", "account_id"),
        ("features.subscription", "account_id"),
        ("features.support", "account_id"),
        ("features.billing", "account_id"),
        ("features.relationship", "account_id"),
        ("scores.risk_scores", "account_id"),
        ("scores.health_scores", "account_id"),
        ("scores.opportunities", "opportunity_id"),
    ] {
        let cols = query(dir, &format!("SELECT * FROM {table} LIMIT 1"))[0].clone();
        let keep: Vec<&str> = cols
            .split(',')
            .filter(|c| !c.starts_with('_') && *c != "top_factors")
            .collect();
        let rows = query(
            dir,
            &format!(
                "SELECT {} FROM {table} WHERE as_of_date = DATE '{date}' ORDER BY {key}",
                keep.join(", ")
            ),
        );
        out.push(format!("== {table}: {} rows", rows.len() - 1));
        out.extend(rows);
    }
    out
}
