//! The Airflow DAGs in docs/airflow: Airflow loads them without import errors, and the commands
//! their tasks render for a logical date run a real day, in the DAGs' order.

use std::path::PathBuf;
use std::process::Command;

use crate::{query, workspace};

#[test]
fn the_airflow_dags_load_and_their_commands_run_a_day() {
    let python = std::env::var_os("CSLAKE_AIRFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/cslake-airflow/bin/python")
        });
    assert!(
        python.exists(),
        "Airflow is not installed: run .ci/setup (it puts Airflow into ~/.cache/cslake-airflow)"
    );
    let (_tmp, dir) = workspace(150, 300, "2026-06-30");
    std::fs::write(dir.join("cslake.toml"), "[ingest]\nsource = \"data\"\n").unwrap();
    let render = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/airflow/render.py"))
        .arg("2026-06-30")
        .env("AIRFLOW_HOME", dir.join("airflow"))
        .env("CSLAKE_BIN", env!("CARGO_BIN_EXE_cslake"))
        .env("CSLAKE_LAKE", dir.join("lake"))
        .env("CSLAKE_CONFIG", dir.join("cslake.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&render.stdout);
    assert!(
        render.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&render.stderr)
    );
    let dags: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    // docs/airflow copied as it is into a DAGs folder loads without import errors
    let folder = dir.join("dags");
    std::fs::create_dir_all(&folder).unwrap();
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/airflow");
    for e in std::fs::read_dir(docs).unwrap().flatten() {
        std::fs::copy(e.path(), folder.join(e.file_name())).unwrap();
    }
    let load = Command::new(&python)
        .arg("-c")
        .arg(
            "import sys\nfrom airflow.dag_processing.dagbag import DagBag\n\
             b = DagBag(dag_folder=sys.argv[1])\nprint(sorted(b.import_errors), sorted(b.dag_ids))",
        )
        .arg(&folder)
        .env("AIRFLOW_HOME", dir.join("airflow"))
        .output()
        .unwrap();
    let loaded = String::from_utf8_lossy(&load.stdout);
    assert_eq!(
        loaded.lines().last().unwrap_or_default(),
        "[] ['cslake_daily', 'cslake_weekly_report', 'cslake_weekly_train']",
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let tasks = |dag: &str| -> Vec<(String, String, u64)> {
        dags[dag]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t[0].as_str().unwrap().into(),
                    t[1].as_str().unwrap().into(),
                    t[2].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let daily = tasks("cslake_daily");
    let weekly = tasks("cslake_weekly_train");
    assert_eq!(
        daily.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        ["ingest", "features", "score", "act", "analytics", "publish"]
    );
    let report = tasks("cslake_weekly_report");
    assert!(
        report[0]
            .1
            .ends_with("report --as-of 2026-06-29 --format pdf,html --out ./reports/2026-06-29 --deliver"),
        "{}",
        report[0].1
    );
    assert!(daily.iter().all(|t| t.2 == 2), "tasks retry: {daily:?}");
    assert!(
        daily[0].1.ends_with("run --as-of 2026-06-30 --only ingest"),
        "{}",
        daily[0].1
    );

    // the first day: land, train (the weekly DAG), then features, scores, actions and analytics
    for (task, command, _) in [
        &daily[0], &weekly[0], &daily[1], &daily[2], &daily[3], &daily[4], &daily[5],
    ] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&dir)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{task}: {command}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // BashOperator pushes the last line to XCom: it is the JSON summary
        let xcom: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(xcom["status"], "succeeded", "{task}: {xcom}");
    }
    assert_eq!(
        query(
            &dir,
            "SELECT DISTINCT actor FROM ops.runs WHERE command = 'score'"
        ),
        ["actor", "airflow:cslake_daily:scheduled__2026-06-30"]
    );
    let scored = query(
        &dir,
        "SELECT COUNT(*) > 100 AS ok FROM scores.risk_scores WHERE as_of_date = DATE '2026-06-30'",
    );
    assert_eq!(scored, ["ok", "true"]);
}
