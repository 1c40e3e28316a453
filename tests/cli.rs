//! Usage and configuration errors: exit code 2 with a message that says what to fix.

use crate::cslake;
use std::path::Path;

#[test]
fn unknown_flag_and_bad_date_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = cslake(dir.path(), &["features", "--as-of", "2026-01-01", "--frobnicate"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("unexpected argument '--frobnicate'"),
        "{}",
        out.stderr
    );

    let out = cslake(dir.path(), &["query", "SELEC 1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("found: SELEC at Line: 1, Column: 1"),
        "{}",
        out.stderr
    );

    // the command analysts are given only reads; the refusal names what was refused
    let out = cslake(
        dir.path(),
        &["query", "INSERT INTO ops.runs SELECT * FROM ops.runs LIMIT 1"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cslake query is read-only: INSERT INTO is refused"),
        "{}",
        out.stderr
    );

    let out = cslake(dir.path(), &["score", "--as-of", "31/01/2026"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("'31/01/2026' is not a date in the form YYYY-MM-DD"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_mistyped_lake_is_refused_not_created() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--lake", "lkae", "query", "SELECT 1"][..],
        &["--lake", "lkae", "score", "--as-of", "2026-01-01"],
        &["--lake", "lkae", "runs", "list"],
        &[
            "--lake",
            "lkae",
            "backfill",
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-02",
        ],
    ] {
        let out = cslake(dir.path(), args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("no lake at 'lkae': the folder does not exist"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!dir.path().join("lkae").exists(), "{args:?} created the lake");
    }
    // an existing folder without tables is no lake either
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = cslake(dir.path(), &["--lake", "empty", "models", "list"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no lake at 'empty': it holds no cslake tables"),
        "{}",
        out.stderr
    );
    // playbooks can be checked before any data lands
    let out = cslake(dir.path(), &["--lake", "lkae", "playbooks", "validate"]).ok();
    assert!(
        out.stdout.contains("trigger and exit SQL could not be checked"),
        "{}",
        out.stdout
    );
}

#[test]
fn config_typos_are_rejected_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cslake.toml"), "[churn]\nhorizon_dayz = 30\n").unwrap();
    let out = cslake(dir.path(), &["features", "--as-of", "2026-01-01"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown field `horizon_dayz`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("cslake.toml"), "{}", out.stderr);
}

#[test]
fn health_measure_on_a_missing_feature_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("health.toml"),
        "[[profile]]\nname = \"mine\"\nbands = { red = 40, yellow = 70 }\n\
         [[profile.measure]]\nname = \"logins\"\nfeature = \"logins_per_seat\"\ngroup = \"usage\"\nweight = 1\npoor = 0\nhealthy = 5\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cslake.toml"),
        "[health]\nprofiles = \"health.toml\"\n",
    )
    .unwrap();
    let out = cslake(dir.path(), &["score", "--as-of", "2026-01-01"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("health profile 'mine': measure 'logins' uses feature 'logins_per_seat', which no feature view produces"),
        "{}",
        out.stderr
    );
    assert_eq!(out.summary()["status"], "failed");
}

#[test]
fn generator_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [&a, &b] {
        cslake(
            d.path(),
            &[
                "generate",
                "--out",
                "g",
                "--accounts",
                "40",
                "--days",
                "60",
                "--format",
                "ndjson",
            ],
        )
        .ok();
    }
    for f in [
        "accounts.ndjson",
        "subscriptions.ndjson",
        "usage_events/part-00001.ndjson",
        "interactions.ndjson",
    ] {
        let x = std::fs::read(a.path().join("g").join(f)).unwrap();
        let y = std::fs::read(b.path().join("g").join(f)).unwrap();
        assert!(!x.is_empty(), "{f} is empty");
        assert!(x == y, "{f} differs between two runs with the same seed");
    }
}

#[test]
fn a_user_feature_view_with_an_unknown_column_names_view_and_column() {
    let (_tmp, dir) = crate::workspace(20, 40, "2026-03-31");
    let out = cslake(&dir, &["features", "--as-of", "2026-03-31"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("no lake at './lake': the folder does not exist (`ingest`, `run`"),
        "{}",
        out.stderr
    );

    cslake(&dir, &["ingest", "--source", "data"]).ok();
    std::fs::create_dir_all(dir.join("views")).unwrap();
    std::fs::write(
        dir.join("views/seats_per_region.sql"),
        "-- name: regions\n-- feature: region_seats | seats in the region\n\
         SELECT s.account_id, s.as_of_date, CAST(a.region_seats AS DOUBLE) AS region_seats\n\
         FROM spine s JOIN accounts a ON a.account_id = s.account_id\n",
    )
    .unwrap();
    std::fs::write(dir.join("cslake.toml"), "[features]\ndir = \"views\"\n").unwrap();
    let out = cslake(&dir, &["features", "--as-of", "2026-03-31"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("feature view 'regions' failed as of 2026-03-31"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("region_seats"), "{}", out.stderr);
}

#[test]
fn feature_drift_and_stale_sources_are_caught_before_features_are_written() {
    let (_tmp, dir) = crate::workspace(60, 200, "2026-03-31");
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    cslake(&dir, &["features", "--as-of", "2026-03-24"]).ok();
    // a burst of events: the usage distribution of 31 March is not the one of the week before
    std::fs::create_dir_all(dir.join("burst/usage_events")).unwrap();
    let mut csv = String::from("event_id,account_id,event_type,event_time\n");
    for a in 1..=60 {
        for i in 0..300 {
            csv.push_str(&format!("B-{a}-{i},ACC-{a:06},login,2026-03-30T10:00:00Z\n"));
        }
    }
    std::fs::write(dir.join("burst/usage_events/burst.csv"), csv).unwrap();
    cslake(&dir, &["ingest", "--source", "burst"]).ok();
    std::fs::write(
        dir.join("cslake.toml"),
        "[features.checks]\n\"usage_activity.events_30d\" = { max_psi = 0.25, action = \"fail\" }\n",
    )
    .unwrap();
    let out = cslake(&dir, &["features", "--as-of", "2026-03-31"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("features of 2026-03-31 not written: usage_activity.events_30d: drift against the previous day: PSI"),
        "{}",
        out.stderr
    );
    assert_eq!(
        crate::query(
            &dir,
            "SELECT COUNT(*) AS n FROM features.usage_activity WHERE as_of_date = DATE '2026-03-31'"
        ),
        ["n", "0"]
    );
    let stats = cslake(&dir, &["features", "stats", "--as-of", "2026-03-31"]).ok();
    assert!(
        stats.stdout.contains("| usage_activity | events_30d"),
        "{}",
        stats.stdout
    );
    assert_eq!(stats.summary()["checks"]["fail"], 1, "{}", stats.stdout);

    // as a warning the day is built and the warning reported
    std::fs::write(
        dir.join("cslake.toml"),
        "[features.checks]\n\"usage_activity.events_30d\" = { max_psi = 0.25 }\n\n\
         [freshness]\ninteractions = { warn_after = \"1d\" }\n",
    )
    .unwrap();
    let s = cslake(&dir, &["features", "--as-of", "2026-03-31"])
        .ok()
        .summary();
    assert!(
        s["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("usage_activity.events_30d: drift"),
        "{s}"
    );

    // a source older than allowed stops the day
    std::fs::write(
        dir.join("cslake.toml"),
        "[freshness]\ninteractions = { error_after = \"30d\" }\n",
    )
    .unwrap();
    let out = cslake(&dir, &["features", "--as-of", "2026-06-30"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("stale sources: core.interactions: newest row 2026-03-"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_training_set_matches_the_daily_features_and_ignores_later_facts() {
    let (_tmp, dir) = crate::workspace(120, 300, "2026-06-30");
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    // a file type cslake cannot write is refused before the training set is built
    let bad = cslake(
        &dir,
        &[
            "features",
            "training-set",
            "--as-of",
            "2026-06-30",
            "--out",
            "ts.xlsx",
        ],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("ts.xlsx: the file type must be .csv, .ndjson or .parquet"),
        "{}",
        bad.stderr
    );
    let s = cslake(
        &dir,
        &[
            "features",
            "training-set",
            "--as-of",
            "2026-06-30",
            "--out",
            "ts.csv",
        ],
    )
    .ok()
    .summary();
    let ts = &s["training_set"];
    assert!(ts["observation_dates"].as_u64().unwrap() >= 3, "{s}");
    assert!(ts["positives"].as_u64().unwrap() > 0, "{s}");
    let lines = std::fs::read_to_string(dir.join("ts.csv"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        lines as u64,
        ts["rows"].as_u64().unwrap() + 1,
        "the file holds the same rows"
    );

    // at an observation date, the training rows carry exactly the features the daily run computes
    let second = crate::query(
        &dir,
        "SELECT CAST(as_of_date AS VARCHAR) AS d FROM training.churn GROUP BY as_of_date ORDER BY as_of_date LIMIT 2",
    )[2]
    .clone();
    cslake(&dir, &["features", "--as-of", &second]).ok();
    let mismatches = crate::query(
        &dir,
        &format!(
            "SELECT COUNT(*) AS n, SUM(CASE WHEN (t.events_30d IS DISTINCT FROM u.events_30d) \
               OR (t.days_to_renewal IS DISTINCT FROM s.days_to_renewal) \
               OR (t.tickets_90d IS DISTINCT FROM p.tickets_90d) THEN 1 ELSE 0 END) AS different \
             FROM training.churn t \
             JOIN features.usage_activity u ON u.account_id = t.account_id AND u.as_of_date = t.as_of_date \
             JOIN features.subscription s ON s.account_id = t.account_id AND s.as_of_date = t.as_of_date \
             JOIN features.support p ON p.account_id = t.account_id AND p.as_of_date = t.as_of_date \
             WHERE t.as_of_date = DATE '{second}'"
        ),
    );
    let counts: Vec<&str> = mismatches[1].split(',').collect();
    assert!(counts[0].parse::<u64>().unwrap() > 50, "{mismatches:?}");
    assert_eq!(counts[1], "0", "{mismatches:?}");

    // facts dated after the training date do not change a single training row
    let before = crate::query(
        &dir,
        "SELECT * EXCLUDE (_run_id) FROM training.churn ORDER BY as_of_date, account_id",
    );
    std::fs::create_dir_all(dir.join("late/usage_events")).unwrap();
    let mut csv = String::from("event_id,account_id,event_type,event_time\n");
    for a in 1..=120 {
        csv.push_str(&format!("LATE-{a},ACC-{a:06},login,2026-07-02T10:00:00Z\n"));
    }
    std::fs::write(dir.join("late/usage_events/late.csv"), csv).unwrap();
    cslake(&dir, &["ingest", "--source", "late"]).ok();
    cslake(&dir, &["features", "training-set", "--as-of", "2026-06-30"]).ok();
    let after = crate::query(
        &dir,
        "SELECT * EXCLUDE (_run_id) FROM training.churn ORDER BY as_of_date, account_id",
    );
    assert_eq!(before.len(), after.len());
    assert!(before == after, "a later fact changed the training set");
}

#[test]
fn an_incremental_day_equals_a_full_rebuild_and_reads_only_new_days() {
    let d = "2026-06-30";
    let (_a, inc) = crate::workspace(60, 200, d);
    let (_b, full) = crate::workspace(60, 200, d);
    // split the usage export: history up to 15 June, then the last two weeks plus late events
    // for early May (a backfilled export)
    let dir = inc.join("data/usage_events");
    let file = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let time_col = header.split(',').position(|c| c == "event_time").unwrap();
    let (mut old, mut new) = (vec![header.to_string()], vec![header.to_string()]);
    for (i, l) in lines.enumerate() {
        let t = l.split(',').nth(time_col).unwrap();
        if t < "2026-06-16" && !(t.starts_with("2026-05-0") && i % 10 == 0) {
            old.push(l.to_string());
        } else {
            new.push(l.to_string());
        }
    }
    std::fs::write(&file, old.join("\n") + "\n").unwrap();
    std::fs::create_dir_all(inc.join("later/usage_events")).unwrap();
    std::fs::write(inc.join("later/usage_events/later.csv"), new.join("\n") + "\n").unwrap();

    cslake(&inc, &["ingest", "--source", "data"]).ok();
    let first = cslake(&inc, &["features", "--as-of", "2026-06-15"])
        .ok()
        .summary();
    assert_eq!(first["rollup"]["mode"], "full", "{first}");
    cslake(&inc, &["ingest", "--source", "later"]).ok();
    let next = cslake(&inc, &["features", "--as-of", d]).ok().summary();
    assert_eq!(next["rollup"]["mode"], "incremental", "{next}");
    let days = next["rollup"]["days"].as_u64().unwrap();
    assert!(
        (15..=24).contains(&days),
        "only the new and the backfilled days are recomputed: {next}"
    );

    cslake(&full, &["ingest", "--source", "data"]).ok();
    cslake(&full, &["features", "--as-of", d]).ok();
    for sql in [
        format!(
            "SELECT * EXCLUDE (_run_id) FROM features.usage_activity WHERE as_of_date = DATE '{d}' ORDER BY account_id"
        ),
        format!(
            "SELECT * EXCLUDE (_run_id) FROM features.subscription WHERE as_of_date = DATE '{d}' ORDER BY account_id"
        ),
        "SELECT account_id, event_date, event_type, quantity, events FROM features.usage_daily \
         ORDER BY account_id, event_date, event_type"
            .to_string(),
        "SELECT account_id, event_date, contact_id, quantity, events FROM features.usage_daily_users \
         ORDER BY account_id, event_date, contact_id"
            .to_string(),
    ] {
        let (a, b) = (crate::query(&inc, &sql), crate::query(&full, &sql));
        assert!(a.len() > 10, "{sql}");
        assert!(a == b, "incremental and full differ: {sql}");
    }
}

#[test]
fn a_daily_run_steps_the_usage_state_and_computes_it_in_full_when_old_days_change() {
    let (_t, dir) = crate::workspace(60, 200, "2026-06-30");
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    let state = |s: &serde_json::Value| {
        let st = &s["states"][0];
        assert_eq!(st["table"], "features.usage_activity_state", "{s}");
        (
            st["mode"].as_str().unwrap().to_string(),
            st["reason"].as_str().unwrap_or("").to_string(),
        )
    };
    let run = |d: &str| cslake(&dir, &["features", "--as-of", d]).ok().summary();
    assert_eq!(
        state(&run("2026-06-20")),
        ("full".to_string(), "no earlier state".to_string())
    );
    assert_eq!(
        state(&run("2026-06-27")),
        ("full".to_string(), "no state as of 2026-06-26".to_string())
    );
    for d in ["2026-06-28", "2026-06-29", "2026-06-30"] {
        assert_eq!(state(&run(d)).0, "step", "{d}");
    }
    // only the last week of dates is kept
    let dates = "SELECT CAST(as_of_date AS VARCHAR) AS d FROM features.usage_activity_state GROUP BY as_of_date ORDER BY d";
    assert_eq!(
        crate::query(&dir, dates),
        ["d", "2026-06-27", "2026-06-28", "2026-06-29", "2026-06-30"]
    );

    // the stepped features equal features computed from scratch
    let features = "SELECT * EXCLUDE (_run_id) FROM features.usage_activity WHERE as_of_date = DATE '2026-06-30' ORDER BY account_id";
    let stepped = crate::query(&dir, features);
    assert!(stepped.len() > 30, "{stepped:?}");
    std::fs::remove_dir_all(dir.join("lake/features/usage_activity_state")).unwrap();
    assert_eq!(
        state(&run("2026-06-30")),
        ("full".to_string(), "no earlier state".to_string())
    );
    assert!(
        crate::query(&dir, features) == stepped,
        "stepped and from scratch differ"
    );

    // a late event for an old day rewrites that day's rollup: the next day is computed in full
    std::fs::create_dir_all(dir.join("late/usage_events")).unwrap();
    std::fs::write(
        dir.join("late/usage_events/late.csv"),
        "event_id,account_id,event_type,event_time\nLATE-1,ACC-000001,login,2026-06-10T10:00:00Z\n",
    )
    .unwrap();
    cslake(&dir, &["ingest", "--source", "late"]).ok();
    let (mode, reason) = state(&run("2026-07-01"));
    assert_eq!(mode, "full");
    assert_eq!(
        reason,
        "features.usage_daily changed for 2026-06-10 after the state of 2026-06-30 was computed"
    );
    assert_eq!(state(&run("2026-07-02")).0, "step");

    // a state whose SQL gives other columns (an upgrade, a user's own) replaces the table
    std::fs::create_dir_all(dir.join("views")).unwrap();
    let builtin = include_str!("../sql/features/usage_activity.state.sql");
    std::fs::write(
        dir.join("views/usage_activity.state.sql"),
        builtin.replace(
            "AS last_event_date\nFROM",
            "AS last_event_date,\n    1 AS extra\nFROM",
        ),
    )
    .unwrap();
    std::fs::write(dir.join("cslake.toml"), "[features]\ndir = \"views\"\n").unwrap();
    let (mode, reason) = state(&run("2026-07-03"));
    assert_eq!(
        (mode.as_str(), reason.as_str()),
        ("full", ""),
        "a state without a step is always computed in full"
    );
    assert_eq!(
        crate::query(
            &dir,
            "SELECT COUNT(*) > 30 AS many, MIN(extra) AS extra, COUNT(DISTINCT as_of_date) AS dates FROM features.usage_activity_state"
        ),
        ["many,extra,dates", "true,1,1"]
    );
}

#[test]
fn an_expansion_training_set_labels_mrr_growth_in_the_window() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("drop")).unwrap();
    std::fs::write(
        dir.join("drop/accounts.csv"),
        "account_id,name\nA1,Grows\nA2,Flat\nA3,Nudged\n",
    )
    .unwrap();
    // A1 upgrades by half on 1 February 2026, A3 by 5% (below the 10% that counts), A2 stays
    std::fs::write(
        dir.join("drop/subscriptions.csv"),
        "subscription_id,account_id,mrr,start_date,end_date\n\
         s1,A1,100,2025-01-01,2026-02-01\ns2,A1,150,2026-02-01,\n\
         s3,A2,100,2025-01-01,\n\
         s4,A3,100,2025-01-01,2026-02-01\ns5,A3,105,2026-02-01,\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("drop/usage_events.csv"),
        "event_id,account_id,event_type,event_time\ne1,A1,login,2025-01-05T10:00:00Z\ne2,A2,login,2025-01-05T10:00:00Z\ne3,A3,login,2025-01-05T10:00:00Z\n",
    )
    .unwrap();
    cslake(dir, &["ingest", "--source", "drop"]).ok();
    let s = cslake(
        dir,
        &[
            "features",
            "training-set",
            "--as-of",
            "2026-06-30",
            "--label",
            "expansion",
        ],
    )
    .ok()
    .summary();
    assert_eq!(s["training_set"]["table"], "training.expansion", "{s}");
    assert!(
        s["training_set"]["label"]
            .as_str()
            .unwrap()
            .starts_with("MRR at least 10% above"),
        "{s}"
    );
    // A1 is labelled exactly at the observation dates whose 90-day window contains its upgrade
    assert_eq!(
        crate::query(
            dir,
            "SELECT account_id, MIN(as_of_date) >= DATE '2025-11-03' AND MAX(as_of_date) < DATE '2026-02-01' AS in_window, \
             COUNT(*) > 0 AS any FROM training.expansion WHERE label = 1.0 GROUP BY account_id"
        ),
        ["account_id,in_window,any", "A1,true,true"]
    );
    assert_eq!(
        crate::query(
            dir,
            "SELECT COUNT(*) AS n FROM training.expansion WHERE account_id = 'A1' AND label = 0.0 \
             AND as_of_date >= DATE '2025-11-03' AND as_of_date < DATE '2026-02-01'"
        ),
        ["n", "0"]
    );

    // observed only in the month before each renewal (the contracts renew every 1 January)
    std::fs::write(
        dir.join("cslake.toml"),
        "[churn]\nobserve_before_renewal_days = 30\n",
    )
    .unwrap();
    cslake(dir, &["features", "training-set", "--as-of", "2026-06-30"]).ok();
    assert_eq!(
        crate::query(
            dir,
            "SELECT COUNT(*) > 0 AS some, SUM(CASE WHEN days_to_renewal BETWEEN 0 AND 30 THEN 0 ELSE 1 END) AS outside, \
             MIN(EXTRACT(MONTH FROM as_of_date)) AS month FROM training.churn"
        ),
        ["some,outside,month", "true,0,12"]
    );
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    // `cslake query ... | head`: once the reader is gone, no panic and no error
    let (_tmp, dir) = crate::workspace(5, 5, "2026-06-30");
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    let mut child = crate::spawn(
        &dir,
        &[
            "query",
            "SELECT * FROM generate_series(1, 500000)",
            "--format",
            "csv",
        ],
        &[],
    );
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // a command that fails still exits with its failure when nobody reads its output
    let empty = tempfile::tempdir().unwrap();
    let mut child = crate::spawn(empty.path(), &["query", "SELECT 1"], &[]);
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no lake at './lake'"), "{stderr}");
}

#[test]
fn a_budget_too_small_to_spill_within_says_which_setting_to_raise() {
    let (_tmp, dir) = crate::workspace(20, 30, "2026-06-30");
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    // a sort reserves its spill buffer before it can spill: 1 MB cannot hold it
    let out = cslake(
        &dir,
        &[
            "--memory-limit",
            "1M",
            "query",
            "SELECT event_id FROM usage_events ORDER BY contact_id, event_time",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("Resources exhausted")
            && out
                .stderr
                .contains("hint: this step needs more memory than its budget allows; raise --memory-limit"),
        "{}",
        out.stderr
    );
    // the same query within a budget that holds it
    let fine = cslake(
        &dir,
        &[
            "--memory-limit",
            "64M",
            "query",
            "SELECT COUNT(*) AS n FROM (SELECT event_id FROM usage_events ORDER BY contact_id, event_time)",
        ],
    );
    assert_eq!(fine.code, 0, "{}", fine.stderr);
    assert!(!fine.stderr.contains("hint:"), "{}", fine.stderr);
}

/// Usage where users are many and spread over accounts (every event a new account-user pair, as
/// in `../shared/perf`): `days` days ending on 30 June 2026, as CSV text.
fn many_users_events(from_day: i64, to_day: i64) -> String {
    let mut csv = String::from("event_id,account_id,user_id,event_type,occurred_at,value\n");
    let end = chrono::NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
    let types = ["login", "export", "share", "api_call", "comment"];
    for day in from_day..to_day {
        let date = end - chrono::Duration::days(119 - day);
        for i in 0..300u64 {
            let n = day as u64 * 1000 + i;
            let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17;
            csv.push_str(&format!(
                "e{n},A{:02},u{},{},{date}T{:02}:{:02}:00Z,{}\n",
                h % 25,
                (h >> 8) % 5000,
                types[((h >> 24) % 5) as usize],
                (h >> 32) % 24,
                (h >> 40) % 60,
                (h >> 48) % 7
            ));
        }
    }
    csv
}

fn many_users_lake(dir: &Path) {
    std::fs::create_dir_all(dir.join("base")).unwrap();
    let accounts: String = (0..25).map(|a| format!("A{a:02},Company {a}\n")).collect();
    std::fs::write(
        dir.join("base/accounts.csv"),
        format!("account_id,name\n{accounts}"),
    )
    .unwrap();
    let subs: String = (0..25)
        .map(|a| format!("s{a},A{a:02},{},500,2025-01-01,\n", 10 + a))
        .collect();
    std::fs::write(
        dir.join("base/subscriptions.csv"),
        format!("subscription_id,account_id,seats,mrr,start_date,end_date\n{subs}"),
    )
    .unwrap();
    let contacts: String = (0..1000)
        .map(|c| format!("u{c},A{:02},u{c}@example.com\n", c % 25))
        .collect();
    std::fs::write(
        dir.join("base/contacts.csv"),
        format!("contact_id,account_id,email\n{contacts}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("cslake.toml"),
        "[ingest.tables.usage_events]\ncolumns = { contact_id = \"user_id\", event_time = \"occurred_at\", quantity = \"value\" }\n",
    )
    .unwrap();
}

#[test]
fn usage_features_built_day_by_day_equal_a_full_rebuild_where_users_are_many() {
    let d = "2026-06-30";
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (inc, full) = (a.path(), b.path());
    for dir in [inc, full] {
        many_users_lake(dir);
    }
    // the incremental lake: 116 days, then the last four one day at a time with features each day
    std::fs::write(inc.join("base/usage_events.csv"), many_users_events(0, 116)).unwrap();
    cslake(
        inc,
        &[
            "run",
            "--as-of",
            "2026-06-26",
            "--source",
            "base",
            "--only",
            "ingest",
        ],
    )
    .ok();
    let first = cslake(inc, &["features", "--as-of", "2026-06-26"]).ok().summary();
    assert_eq!(first["rollup"]["mode"], "full", "{first}");
    for day in 116..120 {
        let drop = inc.join(format!("day{day}"));
        std::fs::create_dir_all(&drop).unwrap();
        std::fs::write(drop.join("usage_events.csv"), many_users_events(day, day + 1)).unwrap();
        let date = (chrono::NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()
            - chrono::Duration::days(119 - day))
        .to_string();
        let source = drop.to_str().unwrap();
        cslake(
            inc,
            &["run", "--as-of", &date, "--source", source, "--only", "ingest"],
        )
        .ok();
        let s = cslake(inc, &["features", "--as-of", &date]).ok().summary();
        assert_eq!(s["rollup"]["mode"], "incremental", "{s}");
        assert_eq!(s["rollup"]["days"], 1, "one new day, one day recomputed: {s}");
        // every state (usage_activity's sums, event_metrics' counts per type, the active users
        // shared by the views) advances a day
        let modes: Vec<(String, String)> = s["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| {
                (
                    st["table"].as_str().unwrap().into(),
                    st["mode"].as_str().unwrap().into(),
                )
            })
            .collect();
        for table in ["usage_activity_state", "event_metrics_state", "active_users"] {
            assert!(
                modes.iter().any(|(t, m)| t.ends_with(table) && m == "step"),
                "{table} not stepped: {s}"
            );
        }
    }
    let activity = |dir: &Path, date: &str| {
        crate::query(
            dir,
            &format!(
                "SELECT * EXCLUDE (_run_id) FROM features.usage_activity WHERE as_of_date = DATE '{date}' ORDER BY account_id"
            ),
        )
    };
    let daily_run = activity(inc, "2026-06-28");

    // late events for 27 and 28 June arrive with the last day: a strict re-run of 28 June
    // reproduces what its daily run knew (from the rollups, the late days recomputed from the
    // events known then), a plain one counts them
    let late = inc.join("late");
    std::fs::create_dir_all(&late).unwrap();
    let late_events: String = (0..40)
        .map(|i| format!("late{i},A03,u{i},login,2026-06-2{}T12:00:00Z,1\n", 7 + i % 2))
        .collect();
    std::fs::write(
        late.join("usage_events.csv"),
        format!("event_id,account_id,user_id,event_type,occurred_at,value\n{late_events}"),
    )
    .unwrap();
    let source = late.to_str().unwrap();
    cslake(
        inc,
        &[
            "run",
            "--as-of",
            "2026-06-30",
            "--source",
            source,
            "--only",
            "ingest",
        ],
    )
    .ok();
    cslake(inc, &["features", "--as-of", "2026-06-28", "--strict"]).ok();
    assert_eq!(
        activity(inc, "2026-06-28"),
        daily_run,
        "strict saw events ingested later"
    );
    cslake(inc, &["features", "--as-of", "2026-06-28"]).ok();
    assert_ne!(
        activity(inc, "2026-06-28"),
        daily_run,
        "late events count without --strict"
    );
    // the full lake gets the same late events, so both lakes hold the same rows again
    std::fs::create_dir_all(full.join("late")).unwrap();
    std::fs::copy(late.join("usage_events.csv"), full.join("late/usage_events.csv")).unwrap();
    // the full lake: everything at once, under a small memory budget (the aggregations spill)
    std::fs::write(full.join("base/usage_events.csv"), many_users_events(0, 120)).unwrap();
    cslake(full, &["ingest", "--source", "base"]).ok();
    cslake(full, &["ingest", "--source", "late"]).ok();
    let s = cslake(full, &["--memory-limit", "12M", "features", "--as-of", d])
        .ok()
        .summary();
    assert_eq!(s["rollup"]["mode"], "full", "{s}");
    // the budget holds a fraction of the events at once: the rebuild went day range by range
    assert!(s["rollup"]["ranges"].as_u64().unwrap() > 1, "{s}");
    // every day of the 120 has events: the days counted from the rebuilt table's partitions
    assert_eq!(s["rollup"]["days"], 120, "{s}");

    let users = crate::query(
        full,
        "SELECT COUNT(DISTINCT contact_id) AS n FROM features.usage_daily_users",
    );
    assert!(users[1].parse::<u32>().unwrap() > 4000, "many users: {users:?}");
    cslake(inc, &["features", "--as-of", d]).ok();
    for sql in [
        format!("SELECT * EXCLUDE (_run_id) FROM features.usage_activity WHERE as_of_date = DATE '{d}' ORDER BY account_id"),
        format!("SELECT * EXCLUDE (_run_id) FROM features.engagement WHERE as_of_date = DATE '{d}' ORDER BY account_id"),
        format!("SELECT * EXCLUDE (_run_id) FROM features.subscription WHERE as_of_date = DATE '{d}' ORDER BY account_id"),
        // the lakes chose the same event types, ranked on different days: columns by name
        format!(
            "SELECT account_id, {} FROM features.event_metrics WHERE as_of_date = DATE '{d}' ORDER BY account_id",
            ["api_call", "comment", "export", "login", "share"]
                .iter()
                .flat_map(|t| ["7d", "30d", "90d", "trend_30d", "per_user_30d", "per_seat_30d"].map(|m| format!("ev_{t}_{m}")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "SELECT account_id, event_date, event_type, quantity, events FROM features.usage_daily ORDER BY 1, 2, 3".into(),
        "SELECT account_id, event_date, contact_id, quantity, events FROM features.usage_daily_users ORDER BY 1, 2, 3".into(),
    ] {
        let (x, y) = (crate::query(inc, &sql), crate::query(full, &sql));
        assert_eq!(x.len(), y.len(), "{sql}");
        assert!(x.len() > 20, "{sql}: {x:?}");
        assert!(x == y, "day by day and full differ: {sql}");
    }
    // and the numbers are the events' own: 30-day active users of one account, from the raw rows
    let expected = crate::query(
        full,
        &format!(
            "SELECT CAST(COUNT(DISTINCT contact_id) AS DOUBLE) AS n FROM core.usage_events WHERE account_id = 'A07' \
             AND CAST(event_time AS DATE) > DATE '{d}' - INTERVAL '30' DAY AND CAST(event_time AS DATE) <= DATE '{d}'"
        ),
    );
    let got = crate::query(
        inc,
        &format!(
            "SELECT active_users_30d AS n FROM features.usage_activity WHERE account_id = 'A07' AND as_of_date = DATE '{d}'"
        ),
    );
    assert_eq!(got, expected);
}

#[test]
fn a_first_model_on_little_history_scores_but_its_bands_wait_for_confirmation() {
    // 240 days: about four observation dates once the warm-up and the label horizon are taken
    let (_tmp, dir) = crate::workspace(80, 240, "2026-06-30");
    let d = "2026-06-30";
    let s = cslake(&dir, &["run", "--as-of", d, "--source", "data"])
        .ok()
        .summary();
    let t = &s["train"];
    assert_eq!(t["status"], "provisional", "{t}");
    let why = t["not_ready"][0].as_str().unwrap();
    assert!(why.contains("observation dates, fewer than 6"), "{t}");
    // it scores every account ...
    assert!(s["scores"]["accounts"].as_u64().unwrap() > 20, "{s}");
    // ... but the playbooks reading its bands wait, and say so; the others run
    let warnings = s["actions"]["warnings"].to_string();
    for p in ["high-risk-save", "expansion-outreach"] {
        assert!(
            warnings.contains(&format!("playbook '{p}' waits: model churn-v1 is provisional")),
            "{warnings}"
        );
    }
    let ran: Vec<&str> = s["actions"]["playbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["playbook"].as_str().unwrap())
        .collect();
    assert!(
        ran.contains(&"health-drop-checkin") && !ran.contains(&"high-risk-save"),
        "{ran:?}"
    );
    let list = crate::query(&dir, "SELECT status, reason FROM models.registry");
    assert!(list[1].starts_with("provisional,"), "{list:?}");

    // confirmed by hand, its bands drive the playbooks again
    cslake(&dir, &["models", "promote", "churn-v1"]).ok();
    let list = crate::query(&dir, "SELECT status, reason FROM models.registry");
    assert!(
        list[1].starts_with("current,") && list[1].contains("confirmed by "),
        "{list:?}"
    );
    let again = cslake(&dir, &["act", "--as-of", d]).ok().summary();
    assert!(
        !again["actions"]["warnings"].to_string().contains("provisional"),
        "{again}"
    );
    let ran = again["actions"]["playbooks"].to_string();
    assert!(ran.contains("high-risk-save"), "{ran}");
}
