//! The daily run end to end: idempotent, point-in-time correct, readable by other Delta readers.

use std::path::Path;

use crate::{cslake, query, snapshot, workspace};

const D: &str = "2026-06-30";

fn duplicates(dir: &Path, table: &str, key: &str) -> usize {
    let r = query(
        dir,
        &format!("SELECT COUNT(*) - COUNT(DISTINCT {key}) AS d FROM {table}"),
    );
    r[1].parse().unwrap()
}

#[test]
fn daily_run_is_idempotent_point_in_time_and_plain_delta() {
    let (_tmp, dir) = workspace(250, 330, D);
    let first = cslake(&dir, &["run", "--as-of", D, "--source", "data"]).ok();
    let s = first.summary();
    assert_eq!(s["status"], "succeeded", "{s}");
    let auc = s["train"]["test"]["roc_auc"].as_f64().unwrap();
    assert!(
        auc > 0.6 && auc < 0.99,
        "held-out ROC AUC {auc} is useless or leaks the label"
    );
    assert!(
        first.stdout.contains("ROC AUC"),
        "the summary prints the model metrics"
    );
    // the backtest: three folds forward in time, each tested after everything it trained on
    let folds = s["train"]["backtest"].as_array().unwrap();
    assert_eq!(folds.len(), 3, "{s}");
    for f in folds {
        assert!(
            f["train"][1].as_str().unwrap() < f["test"][0].as_str().unwrap(),
            "{f}"
        );
        let auc = f["metrics"]["roc_auc"].as_f64().unwrap();
        assert!(auc > 0.5 && auc < 0.99, "{f}");
    }
    assert!(first.stdout.contains("mean ROC AUC"), "{}", first.stdout);
    assert!(first.stdout.contains("Top at-risk accounts"), "{}", first.stdout);
    let accounts = s["scores"]["accounts"].as_u64().unwrap();
    assert!(accounts > 150, "{s}");
    // the model family was chosen on the validation window and says why
    let why = s["train"]["family_choice"].as_str().unwrap();
    assert!(why.contains("validation ROC AUC"), "{s}");
    assert!(["logistic_regression", "gbdt", "mlp"].contains(&s["train"]["family"].as_str().unwrap()));
    // every family's fit time, and where the time of the whole training went
    let fits = s["train"]["fit_seconds"].as_object().unwrap();
    assert_eq!(fits.len(), 3, "{s}");
    assert!(
        s["train"]["seconds"]["training_sets"].as_f64().unwrap() > 0.0,
        "{s}"
    );
    assert!(first.stdout.contains("Time: training sets"), "{}", first.stdout);
    // opportunities: seats where usage fills them, the next tier only from the expansion model,
    // and always a higher tier than the account's plan
    if s["train"]["expansion"].is_object() {
        let x = s["train"]["expansion"]["test"]["roc_auc"].as_f64().unwrap();
        assert!(x > 0.5 && x < 0.99, "expansion model {x}");
    }
    let kinds = query(
        &dir,
        &format!(
            "SELECT DISTINCT o.kind FROM opportunities o JOIN accounts a ON a.account_id = o.account_id \
             WHERE o.as_of_date = DATE '{D}' AND NOT (o.kind = 'seat_expansion' \
             OR (o.kind = 'tier_upgrade' AND o.product_id <> a.plan))"
        ),
    );
    assert!(kinds.len() <= 1, "unexpected opportunities: {kinds:?}");
    // health weights proposed from the training set, as a diff to review
    let w = cslake(&dir, &["health", "suggest-weights", "--as-of", D]).ok();
    assert!(
        w.stdout.starts_with("--- health profiles (current)"),
        "{}",
        w.stdout
    );
    let measures = w.summary()["measures"].as_array().unwrap().clone();
    assert_eq!(measures.len(), 7, "every measure of the default profile");
    let total: f64 = measures.iter().map(|m| m["suggested"].as_f64().unwrap()).sum();
    assert!(
        (total - 100.0).abs() < 5.0,
        "the profile total weight is about kept: {total}"
    );
    assert!(
        measures
            .iter()
            .any(|m| m["auc"].as_f64().is_some_and(|a| a > 0.55)),
        "{measures:?}"
    );

    // lineage: the scores' commit names the run and the versions it was built from
    let scores = cslake(&dir, &["lineage", "scores.risk_scores", "--limit", "1"])
        .ok()
        .summary();
    let features = cslake(&dir, &["lineage", "features.usage_activity", "--limit", "1"])
        .ok()
        .summary();
    let latest = &scores["versions"][0];
    let score_run = query(&dir, "SELECT run_id FROM ops.runs WHERE command = 'score'");
    assert_eq!(latest["run_id"], score_run[1].as_str(), "{scores}");
    assert_eq!(
        latest["inputs"]["features.usage_activity"], features["versions"][0]["version"],
        "{scores}"
    );
    assert!(latest["inputs"]["models.registry"].is_u64(), "{scores}");

    let before = snapshot(&dir, D);
    assert_eq!(
        before
            .iter()
            .filter(|l| l.starts_with("== scores.risk_scores"))
            .count(),
        1
    );

    // The same day again: same tables, no duplicated rows anywhere.
    let second = cslake(&dir, &["run", "--as-of", D, "--source", "data"])
        .ok()
        .summary();
    assert!(second.get("train").is_none(), "an existing model is reused");
    assert_eq!(snapshot(&dir, D), before);
    for (table, key) in [
        ("core.accounts", "account_id"),
        ("core.usage_events", "event_id"),
        ("core.subscriptions", "subscription_id"),
        ("core.interactions", "interaction_id"),
    ] {
        assert_eq!(duplicates(&dir, table, key), 0, "{table}");
    }
    // the prediction log keeps both runs' predictions, with equal inputs hashing equally
    let log = query(
        &dir,
        "SELECT COUNT(*), COUNT(DISTINCT _run_id), COUNT(DISTINCT account_id || inputs_hash) FROM prediction_log",
    );
    assert_eq!(log[1], format!("{},2,{accounts}", 2 * accounts));
    let per_date = query(
        &dir,
        &format!("SELECT COUNT(*) FROM scores.risk_scores WHERE as_of_date = DATE '{D}'"),
    );
    assert_eq!(per_date[1], accounts.to_string());

    // Facts dated after D arrive later: the features and scores of D do not move.
    let late = dir.join("late");
    std::fs::create_dir_all(&late).unwrap();
    let acc = "ACC-000001";
    let mut events = String::from("event_id,account_id,contact_id,event_type,event_time,quantity\n");
    for i in 0..50 {
        events.push_str(&format!(
            "LATE-{i},{acc},{acc}-U001,login,2026-07-0{}T10:00:00Z,3\n",
            1 + i % 9
        ));
    }
    std::fs::write(late.join("usage_events.csv"), events).unwrap();
    std::fs::write(
        late.join("interactions.csv"),
        format!("interaction_id,account_id,kind,occurred_at,priority,score\nLATE-T,{acc},ticket,2026-07-02T09:00:00Z,high,\nLATE-N,{acc},nps,2026-07-03T09:00:00Z,,0\n"),
    )
    .unwrap();
    std::fs::write(
        late.join("invoices.csv"),
        format!("invoice_id,account_id,issued_date,amount,payment_failures\nLATE-I,{acc},2026-07-01,100,3\n"),
    )
    .unwrap();
    cslake(&dir, &["ingest", "--source", "late"]).ok();
    cslake(&dir, &["run", "--as-of", D]).ok();
    assert_eq!(
        snapshot(&dir, D),
        before,
        "data dated after {D} changed the features or scores of {D}"
    );
    assert_eq!(
        query(
            &dir,
            "SELECT COUNT(*) FROM usage_events WHERE event_id LIKE 'LATE-%'"
        )[1],
        "50"
    );

    // Plain Delta: protocol (1, 2) without table features, so Spark, DuckDB and polars read it.
    for table in [
        "core/usage_events",
        "features/usage_activity",
        "scores/risk_scores",
        "scores/health_scores",
        "ops/runs",
    ] {
        let log = std::fs::read_to_string(
            dir.join("lake")
                .join(table)
                .join("_delta_log/00000000000000000000.json"),
        )
        .unwrap();
        let protocol = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find_map(|v| v.get("protocol").cloned())
            .unwrap_or_else(|| panic!("{table}: no protocol action"));
        assert!(
            protocol["minReaderVersion"].as_i64().unwrap() <= 1,
            "{table}: {protocol}"
        );
        assert!(
            protocol["minWriterVersion"].as_i64().unwrap() <= 2,
            "{table}: {protocol}"
        );
        assert!(protocol.get("readerFeatures").is_none(), "{table}: {protocol}");
    }

    // The registry knows what was materialised.
    let list = cslake(&dir, &["features", "list"]).ok();
    assert!(
        list.stdout
            .contains(&format!("billing                   3       yes window      {D}")),
        "{}",
        list.stdout
    );
    let describe = cslake(&dir, &["features", "describe", "support"]).ok();
    assert!(
        describe
            .stdout
            .contains("open_tickets                 Float64    tickets opened and not resolved"),
        "{}",
        describe.stdout
    );
    assert_eq!(describe.summary()["view"]["materialised_dates"], 1);
    let missing = cslake(&dir, &["features", "describe", "nope"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("no feature view 'nope' (views: usage_activity,"),
        "{}",
        missing.stderr
    );

    // Every command left its audit row, and `cslake runs` shows them.
    let listed = cslake(&dir, &["runs", "list", "--limit", "3"]).ok();
    assert_eq!(listed.summary()["rows"], 3);
    let run_id = query(&dir, "SELECT run_id FROM ops.runs WHERE command = 'train'")[1].clone();
    let shown = cslake(&dir, &["runs", "show", &run_id]).ok();
    let row: serde_json::Value = serde_json::from_str(shown.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(row["command"], "train");
    assert!(
        row["tables"].as_str().unwrap().contains("models.registry"),
        "{row}"
    );
    // the jobs; every read (queries, listings) has its row too
    let runs = query(
        &dir,
        "SELECT command, status, COUNT(*) AS n FROM ops.runs WHERE command NOT IN ('query', 'lineage', 'runs list', \
         'runs show', 'features list', 'features describe', 'health suggest-weights') \
         GROUP BY command, status ORDER BY command, status",
    );
    assert!(
        query(&dir, "SELECT COUNT(*) FROM ops.runs WHERE command = 'query'")[1]
            .parse::<usize>()
            .unwrap()
            > 20
    );
    assert_eq!(
        runs[1..],
        [
            "act,succeeded,3",
            "analytics,succeeded,3",
            "features,succeeded,3",
            "ingest,succeeded,3",
            "score,succeeded,3",
            "train,succeeded,1"
        ],
        "{runs:?}"
    );

    // Strict mode: a ticket dated before D that arrives later changes D's features, unless the
    // run reproduces what the daily run of D knew.
    let account = query(
        &dir,
        &format!(
            "SELECT account_id FROM risk_scores WHERE as_of_date = DATE '{D}' ORDER BY account_id LIMIT 1"
        ),
    )[1]
    .clone();
    let open_tickets = |dir: &Path| {
        query(dir, &format!("SELECT open_tickets FROM features.support WHERE as_of_date = DATE '{D}' AND account_id = '{account}'"))[1]
            .parse::<f64>()
            .unwrap()
    };
    let known = open_tickets(&dir);
    let backfill = dir.join("backfill");
    std::fs::create_dir_all(&backfill).unwrap();
    std::fs::write(
        backfill.join("interactions.csv"),
        format!(
            "interaction_id,account_id,kind,occurred_at,priority
BACK-T,{account},ticket,2026-06-25T09:00:00Z,high
"
        ),
    )
    .unwrap();
    cslake(&dir, &["ingest", "--source", "backfill"]).ok();
    cslake(&dir, &["features", "--as-of", D, "--strict"]).ok();
    assert_eq!(
        open_tickets(&dir),
        known,
        "strict mode saw a row ingested after the daily run of {D}"
    );
    cslake(&dir, &["features", "--as-of", D]).ok();
    assert_eq!(
        open_tickets(&dir),
        known + 1.0,
        "without --strict the late ticket counts"
    );

    // The registry: a model retrained on the same data is promoted (the current one was refit on
    // every date, so no test date is new to it and it cannot be judged fairly: the registry
    // says so); the previous one can be put back and forth.
    let retrained = cslake(&dir, &["train", "--as-of", D]).ok();
    let model = &retrained.summary()["model"];
    assert_eq!(model["version"], "churn-v2");
    assert_eq!(model["promoted"], true, "{model}");
    let reason = model["reason"].as_str().unwrap();
    assert!(
        reason.contains("churn-v1 learned from every test date")
            && reason.contains("deployed weights refit on all"),
        "{model}"
    );
    assert_eq!(model["refit"]["last"], model["windows"]["test"][1], "{model}");
    let statuses = |dir: &Path| {
        query(
            dir,
            "SELECT version, status FROM models.registry ORDER BY version",
        )[1..]
            .to_vec()
    };
    assert_eq!(statuses(&dir), ["churn-v1,previous", "churn-v2,current"]);
    cslake(&dir, &["models", "rollback"]).ok();
    assert_eq!(statuses(&dir), ["churn-v1,current", "churn-v2,rolled_back"]);
    cslake(&dir, &["score", "--as-of", D]).ok();
    let used = query(
        &dir,
        &format!("SELECT DISTINCT model_version FROM risk_scores WHERE as_of_date = DATE '{D}'"),
    );
    assert_eq!(used[1..], ["churn-v1"]);
    cslake(&dir, &["models", "promote", "churn-v2"]).ok();
    assert_eq!(statuses(&dir), ["churn-v1,previous", "churn-v2,current"]);
    let nope = cslake(&dir, &["models", "promote", "churn-v9"]);
    assert_eq!(nope.code, 2);
    assert!(
        nope.stderr
            .contains("no model version 'churn-v9' (versions: churn-v1, churn-v2)"),
        "{}",
        nope.stderr
    );
    let shown = cslake(&dir, &["models", "show", "churn-v1"]).ok();
    assert!(shown.stdout.contains("\"test_metrics\""), "{}", shown.stdout);

    // a scheduler runs one step per task, or resumes a day from the step that failed
    let only = cslake(&dir, &["run", "--as-of", "2026-05-15", "--only", "features"])
        .ok()
        .summary();
    assert_eq!(only["steps"], serde_json::json!(["features"]), "{only}");
    assert!(
        only.get("scores").is_none() && only.get("ingest").is_none(),
        "{only}"
    );
    let resumed = cslake(&dir, &["run", "--as-of", "2026-05-15", "--from-step", "score"])
        .ok()
        .summary();
    assert_eq!(
        resumed["steps"],
        serde_json::json!(["score", "act", "analytics"]),
        "{resumed}"
    );
    assert_eq!(
        resumed["analytics"]["total"]["accounts"].as_f64(),
        resumed["scores"]["accounts"].as_f64(),
        "{resumed}"
    );
    assert!(resumed["scores"]["accounts"].as_u64().unwrap() > 100, "{resumed}");
    assert_eq!(
        resumed["actions"]["accounts"], resumed["scores"]["accounts"],
        "{resumed}"
    );

    // a backfill materialises a range; dates already done are replaced, not duplicated
    let range = [
        "backfill",
        "--from",
        "2026-05-01",
        "--to",
        "2026-05-15",
        "--every",
        "7",
    ];
    let b = cslake(&dir, &range).ok().summary();
    assert_eq!(b["dates"], 3, "{b}");
    cslake(&dir, &range).ok();
    let per_day = query(
        &dir,
        "SELECT as_of_date, COUNT(*) = COUNT(DISTINCT account_id) AS unique_accounts FROM scores.risk_scores \
         WHERE as_of_date BETWEEN DATE '2026-05-01' AND DATE '2026-05-15' GROUP BY as_of_date ORDER BY as_of_date",
    );
    assert_eq!(
        per_day,
        [
            "as_of_date,unique_accounts",
            "2026-05-01,true",
            "2026-05-08,true",
            "2026-05-15,true"
        ]
    );
    let bad = cslake(&dir, &["backfill", "--from", "2026-05-15", "--to", "2026-05-01"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);

    // benchmarks compare with the latest day scored in the week up to D - 30: runs skip days
    cslake(&dir, &["backfill", "--from", "2026-06-18", "--to", "2026-06-18"]).ok();
    cslake(&dir, &["analytics", "--as-of", "2026-06-18"]).ok();
    assert_eq!(
        query(
            &dir,
            "SELECT kpi, value_30d_ago IS NOT NULL AS compared FROM analytics.benchmarks \
             WHERE as_of_date = DATE '2026-06-18' AND dimension = 'all' \
             AND kpi IN ('high_risk_share', 'mean_health_score') ORDER BY kpi"
        ),
        ["kpi,compared", "high_risk_share,true", "mean_health_score,true"],
        "2026-05-19 has no scores; 2026-05-15 does"
    );

    readers_agree(&dir);
}

/// Every table of a lake that has run every step reads the same (types and rows) in python
/// deltalake, polars and DuckDB as `cslake tables` says, and is as docs/tables.md documents it.
fn readers_agree(dir: &Path) {
    let listed = cslake(dir, &["tables", "--format", "json"]).ok();
    let tables: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let names: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    // the documented tables exist before their first row (nothing rejected, no alert sent yet)
    for t in [
        "ops.quarantine",
        "ops.erasures",
        "ops.source_cursors",
        "actions.dead_letters",
        "actions.crm_sync",
        "actions.campaign_results",
        "analytics.benchmarks",
    ] {
        assert!(names.contains(&t), "{t} missing: {names:?}");
    }
    assert_eq!(query(dir, "SELECT COUNT(*) AS n FROM ops.quarantine"), ["n", "0"]);
    let one = cslake(dir, &["tables", "core.accounts"]).ok();
    assert!(
        one.stdout
            .contains("    account_id                   string not null"),
        "{}",
        one.stdout
    );
    let typo = cslake(dir, &["tables", "core.acounts"]);
    assert_eq!(typo.code, 2);
    assert!(
        typo.stderr
            .contains("no table or zone 'core.acounts' in the lake (`cslake tables` lists them)"),
        "{}",
        typo.stderr
    );

    let json = dir.join("tables.json");
    std::fs::write(&json, &listed.stdout).unwrap();
    let python = std::env::var_os("CSLAKE_READERS_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/cslake-readers/bin/python")
        });
    assert!(
        python.exists(),
        "the readers are not installed: run .ci/setup (python deltalake, polars, DuckDB into ~/.cache/cslake-readers)"
    );
    let out = std::process::Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/readers.py"))
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["checked"].as_u64(), Some(names.len() as u64));
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");

    // docs/tables.md lists each table with exactly these columns and types
    let doc = include_str!("../docs/tables.md");
    let md = cslake(dir, &["tables", "--format", "markdown"]).ok().stdout;
    let stale: Vec<String> = md
        .split("### ")
        .map(str::trim_end)
        .filter(|s| !s.trim().is_empty() && !doc.contains(s))
        .map(|s| format!("### {s}"))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/tables.md is out of date (cslake tables --format markdown):\n{}",
        stale.join("\n\n")
    );
}

#[test]
fn churn_defined_by_inactivity_works_without_billing_data() {
    let (_tmp, dir) = workspace(200, 300, D);
    // a product company that exports only accounts, users, events and tickets
    for f in ["subscriptions.csv", "invoices.csv", "products.csv"] {
        std::fs::remove_file(dir.join("data").join(f)).unwrap();
    }
    std::fs::write(
        dir.join("cslake.toml"),
        "[churn]\ndefinition = \"inactivity\"\ninactivity_days = 30\nhorizon_days = 60\n",
    )
    .unwrap();
    let out = cslake(&dir, &["run", "--as-of", D, "--source", "data"]).ok();
    let s = out.summary();
    let views = s["features"]["views"].as_u64().unwrap();
    // usage_activity, support, relationship and the per-event-type metrics (without seats)
    assert_eq!(views, 4, "the subscription and billing views are skipped: {s}");
    let per_seat = query(
        &dir,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'event_metrics' AND column_name LIKE '%per_seat%'",
    );
    assert!(
        per_seat.len() <= 1,
        "no seats without subscriptions: {per_seat:?}"
    );
    let auc = s["train"]["test"]["roc_auc"].as_f64().unwrap();
    assert!(auc > 0.6, "held-out ROC AUC {auc}");
    assert!(s["scores"]["accounts"].as_u64().unwrap() > 50, "{s}");
    let label = query(&dir, "SELECT COUNT(*) FROM training.churn WHERE label = 1.0");
    assert!(
        label[1].parse::<u64>().unwrap() > 0,
        "some accounts went inactive"
    );
    // health is computed from the measures that exist, the others' weight redistributed
    let health = query(
        &dir,
        &format!(
            "SELECT COUNT(*) FROM health_scores WHERE as_of_date = DATE '{D}' AND health_score IS NOT NULL"
        ),
    );
    assert_eq!(health[1], s["scores"]["accounts"].to_string());

    // the trainer against a plain logistic regression, same rows, same test window
    let e = cslake(&dir, &["evaluate", "--as-of", D, "--out", "ts.parquet"]).ok();
    let r = &e.summary()["evaluation"];
    assert_eq!(r["test_window"], s["train"]["windows"]["test"], "{r}");
    for m in ["model", "reference", "reference_gbdt"] {
        let auc = r[m]["roc_auc"].as_f64().unwrap();
        assert!(auc > 0.55 && auc < 0.99, "{m}: {r}");
        assert_eq!(
            r[m]["rows"], r["model"]["rows"],
            "both scored on the same rows: {r}"
        );
    }
    assert!(e.stdout.contains("plain logistic regression"), "{}", e.stdout);
    assert!(
        e.stdout.contains("default gradient-boosted trees"),
        "{}",
        e.stdout
    );
    let verdict = r["verdict"].as_str().unwrap();
    assert!(verdict.contains("Hanley-McNeil"), "{verdict}");
    assert!(dir.join("ts.parquet").exists());
    let models = query(&dir, "SELECT COUNT(*) FROM models.registry");
    assert_eq!(models[1], "1", "evaluate registers nothing");
}
