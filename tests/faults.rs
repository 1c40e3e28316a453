//! Crash safety: a day killed at the worst moment of each step (`CSLAKE_FAULT` aborts the process
//! there, like a kill -9 or a lost machine) converges on the next run to exactly what an
//! uninterrupted day produces, with nothing duplicated.

use crate::{cslake, cslake_env, query, snapshot, workspace};

const D: &str = "2026-06-30";

#[test]
fn a_day_killed_at_any_step_converges_on_the_next_run() {
    let (_clean_tmp, clean) = workspace(150, 300, D);
    let (_faulty_tmp, faulty) = workspace(150, 300, D);
    cslake(&clean, &["run", "--as-of", D, "--source", "data"]).ok();

    for point in ["ingest:mid-load", "ingest:before-state"] {
        let out = cslake_env(
            &faulty,
            &["ingest", "--source", "data"],
            &[("CSLAKE_FAULT", point)],
        );
        assert_ne!(out.code, 0, "{point} did not stop the run");
    }
    for point in ["features:mid-write", "train:before-registry", "score:mid-write"] {
        let out = cslake_env(
            &faulty,
            &["run", "--as-of", D, "--source", "data"],
            &[("CSLAKE_FAULT", point)],
        );
        assert_ne!(out.code, 0, "{point} did not stop the run");
    }
    cslake(&faulty, &["run", "--as-of", D, "--source", "data"]).ok();

    assert_eq!(snapshot(&faulty, D), snapshot(&clean, D));
    for (table, key) in [
        ("core.accounts", "account_id"),
        ("core.contacts", "contact_id"),
        ("core.usage_events", "event_id"),
        ("core.invoices", "invoice_id"),
        ("core.interactions", "interaction_id"),
    ] {
        let sql = format!("SELECT COUNT(*) AS n, COUNT(DISTINCT {key}) AS keys FROM {table}");
        let (a, b) = (query(&faulty, &sql), query(&clean, &sql));
        assert_eq!(a, b, "{table}");
        let n: Vec<&str> = a[1].split(',').collect();
        assert_eq!(n[0], n[1], "{table} has duplicates");
    }
    assert_eq!(
        query(
            &faulty,
            "SELECT version, status FROM models.registry ORDER BY version"
        ),
        ["version,status", "churn-v1,current"]
    );
    // the audit log shows the five killed commands as started and never finished
    assert_eq!(
        query(
            &faulty,
            "SELECT command FROM ops.runs WHERE status = 'running' ORDER BY started_at"
        ),
        ["command", "ingest", "ingest", "features", "train", "score"]
    );
}
