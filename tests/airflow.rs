//! The Airflow DAGs in docs/airflow, deployed as shipped: the folder copied as a DAGs folder loads
//! without import errors, `airflow dags test` runs two consecutive days and the weekly report from
//! a working folder unrelated to the configuration (as a worker's temporary folder is), and a
//! configuration mistake fails the task at once instead of being retried.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{query, workspace};

fn airflow_python() -> PathBuf {
    let python = std::env::var_os("CSLAKE_AIRFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/cslake-airflow/bin/python")
        });
    assert!(
        python.exists(),
        "Airflow is not installed: run .ci/setup (it puts Airflow into ~/.cache/cslake-airflow)"
    );
    python
}

/// Airflow's own CLI (`python -m airflow ...`) with a private home, the copied DAGs folder and
/// only absolute cslake locations, run from `cwd`.
fn airflow(dir: &Path, config: &Path, cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("600")
        .arg(airflow_python())
        .args(["-m", "airflow"])
        .args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CSLAKE_") || k.to_string_lossy().starts_with("AIRFLOW") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(cwd)
        .env("AIRFLOW_HOME", dir.join("airflow"))
        .env("AIRFLOW__CORE__DAGS_FOLDER", dir.join("dags"))
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("CSLAKE_BIN", env!("CARGO_BIN_EXE_cslake"))
        .env("CSLAKE_LAKE", dir.join("lake"))
        .env("CSLAKE_CONFIG", config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_airflow_dags_run_two_days_and_the_report_as_shipped() {
    let (_tmp, dir) = workspace(150, 300, "2026-06-30");
    // the configuration in its own folder, naming the exports relative to itself
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let config = conf.join("cslake.toml");
    std::fs::write(&config, "[ingest]\nsource = \"../data\"\n").unwrap();
    let cwd = dir.join("worker-tmp");
    std::fs::create_dir_all(&cwd).unwrap();

    // docs/airflow copied as it is into a DAGs folder loads without import errors
    let dags = dir.join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/airflow"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), dags.join(e.file_name())).unwrap();
    }
    let migrate = airflow(&dir, &config, &cwd, &["db", "migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate));
    let load = Command::new(airflow_python())
        .arg("-c")
        .arg(
            "import sys\nfrom airflow.dag_processing.dagbag import DagBag\n\
             b = DagBag(dag_folder=sys.argv[1])\nprint(sorted(b.import_errors), sorted(b.dag_ids))",
        )
        .arg(&dags)
        .env("AIRFLOW_HOME", dir.join("airflow"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&load.stdout)
            .lines()
            .last()
            .unwrap_or_default(),
        "[] ['cslake_daily', 'cslake_weekly_report', 'cslake_weekly_train']",
        "{}",
        text(&load)
    );

    // the commands a deployment will run, printed by the DAG file itself
    let printed = Command::new(airflow_python())
        .arg(dags.join("cslake_dags.py"))
        .arg("2026-07-01")
        .env("CSLAKE_BIN", "cslake")
        .env("CSLAKE_CONFIG", &config)
        .env("CSLAKE_LAKE", dir.join("lake"))
        .env("AIRFLOW_HOME", dir.join("airflow"))
        .output()
        .unwrap();
    let printed = text(&printed);
    let lake = dir.join("lake");
    assert!(
        printed.contains(&format!(
            "cslake_weekly_report.report: cslake --lake {} --config {} --actor airflow:cslake_weekly_report:manual report --as-of 2026-07-01 --format pdf,html --out {}/reports/2026-07-01\n",
            lake.display(),
            config.display(),
            lake.display()
        )),
        "no [report] deliver channels, so no --deliver:\n{printed}"
    );
    assert!(printed.contains("cslake_weekly_train.train: cslake"), "{printed}");
    assert!(
        printed.contains("run --as-of 2026-07-01 --only train --retrain\n"),
        "{printed}"
    );

    // two nights: a run at the start of a day works on the day that has ended
    for night in ["2026-07-01", "2026-07-02"] {
        let out = airflow(&dir, &config, &cwd, &["dags", "test", "cslake_daily", night]);
        let log = text(&out);
        assert!(
            out.status.success() && log.contains("state=success"),
            "{night}:\n{log}"
        );
    }
    let out = airflow(
        &dir,
        &config,
        &cwd,
        &["dags", "test", "cslake_weekly_report", "2026-07-02"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let pdf = lake.join("reports/2026-07-01/cslake-report-2026-07-01.pdf");
    assert!(
        std::fs::metadata(&pdf).map(|m| m.len() > 10_000).unwrap_or(false),
        "{} was not written",
        pdf.display()
    );

    assert_eq!(
        query(
            &dir,
            "SELECT as_of_date, COUNT(*) > 100 AS scored FROM scores.risk_scores GROUP BY 1 ORDER BY 1"
        ),
        ["as_of_date,scored", "2026-06-30,true", "2026-07-01,true"]
    );
    // the first night trained a model (there was none); the second used it
    assert_eq!(
        query(
            &dir,
            "SELECT command, CAST(as_of_date AS VARCHAR) AS d, COUNT(DISTINCT run_id) AS n FROM ops.runs \
             WHERE command IN ('train', 'score') AND actor LIKE 'airflow:cslake_daily:%' GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        [
            "command,d,n",
            "score,2026-06-30,1",
            "score,2026-07-01,1",
            "train,2026-06-30,1"
        ]
    );

    // a configuration mistake (exit 2) fails the task once, with the reason, and no retry
    let broken = conf.join("broken.toml");
    std::fs::write(
        &broken,
        "[ingest]\nsource = \"../data\"\nreject_threshhold = 0.1\n",
    )
    .unwrap();
    let out = airflow(
        &dir,
        &broken,
        &cwd,
        &["dags", "test", "cslake_daily", "2026-07-03"],
    );
    let log = text(&out);
    assert!(log.contains("state=failed"), "{log}");
    assert!(log.contains("unknown field `reject_threshhold`"), "{log}");
    assert!(log.contains("cslake exited 2: configuration"), "{log}");
    assert!(!log.contains("up_for_retry"), "retried:\n{log}");
}
