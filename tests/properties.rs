//! Property tests of time correctness over several seeds of the data generator: whatever the data,
//! (1) landing facts dated after D changes neither the features of D nor the training set as of
//! D, and (2) the training rows at an observation date carry exactly the features the daily run
//! computes for that date (the generated per-event-type metrics and the declared account
//! attributes included).

use std::path::Path;

use chrono::{Duration, NaiveDate};

use cslake_pipeline::demo::{GenOptions, generate};
use cslake_pipeline::lake::query::text_rows;
use cslake_pipeline::{Lake, NoProgress, RunContext, Settings};

/// The event tables of the generator and the column that dates each row.
const DATED: &[(&str, &str)] = &[
    ("usage_events", "event_time"),
    ("interactions", "occurred_at"),
    ("invoices", "issued_date"),
    ("subscriptions", "start_date"),
];

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Moves every row dated after `d` out of `data` into `late` (same file names).
fn split_at(data: &Path, late: &Path, d: NaiveDate) -> usize {
    let mut moved = 0;
    let cut = (d + Duration::days(1)).to_string();
    for file in files_under(data) {
        let name = file.strip_prefix(data).unwrap().to_path_buf();
        let Some(&(_, col)) = DATED.iter().find(|(t, _)| name.to_string_lossy().starts_with(t)) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let headers = rdr.headers().unwrap().clone();
        let at = headers.iter().position(|h| h == col).unwrap();
        let (mut early, mut later) = (csv::Writer::from_writer(vec![]), csv::Writer::from_writer(vec![]));
        early.write_record(&headers).unwrap();
        later.write_record(&headers).unwrap();
        for rec in rdr.records() {
            let rec = rec.unwrap();
            // ISO dates and times compare as text
            if rec[at] >= *cut.as_str() {
                later.write_record(&rec).unwrap();
                moved += 1;
            } else {
                early.write_record(&rec).unwrap();
            }
        }
        std::fs::write(&file, early.into_inner().unwrap()).unwrap();
        let dest = late.join(&name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, later.into_inner().unwrap()).unwrap();
    }
    moved
}

/// Every row of the tables of `zone` as of `d` (or all rows when `d` is None), sorted, without the
/// audit columns (`_run_id`, …).
async fn snapshot(lake: &Lake, zone: &str, d: Option<NaiveDate>) -> Vec<String> {
    let ctx = lake.session().await.unwrap();
    let tables = text_rows(
        &ctx,
        &format!("SELECT table_name FROM information_schema.tables WHERE table_schema = '{zone}' ORDER BY table_name"),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let name = t[0].1.clone().unwrap();
        let cols: Vec<String> = text_rows(
            &ctx,
            &format!("SELECT column_name FROM information_schema.columns WHERE table_schema = '{zone}' AND table_name = '{name}'"),
        )
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r[0].1.clone())
        .collect();
        // dated tables: the rows of d; the daily rollup: the days up to d
        let filter = match d {
            Some(d) if cols.iter().any(|c| c == "as_of_date") => format!(" WHERE as_of_date = DATE '{d}'"),
            Some(d) if cols.iter().any(|c| c == "event_date") => format!(" WHERE event_date <= DATE '{d}'"),
            _ => String::new(),
        };
        for row in text_rows(&ctx, &format!("SELECT * FROM {zone}.{name}{filter}"))
            .await
            .unwrap()
        {
            let cells: Vec<String> = row
                .into_iter()
                .filter(|(c, _)| !c.starts_with('_'))
                .map(|(c, v)| format!("{c}={}", v.unwrap_or_else(|| "∅".into())))
                .collect();
            out.push(format!("{name}: {}", cells.join(", ")));
        }
    }
    out.sort();
    out
}

async fn check(seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let end = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
    let d = end - Duration::days(40);
    let data = tmp.path().join("data");
    let opts = GenOptions {
        accounts: 40,
        days: 330,
        end,
        seed,
        format: cslake_sinks::FileFormat::Csv,
        out: data.clone(),
        events_per_file: 1_000_000,
        churn: Default::default(),
    };
    generate(&opts, &NoProgress).unwrap();
    let moved = split_at(&data, &tmp.path().join("late"), d);
    assert!(moved > 100, "seed {seed}: only {moved} rows after {d}");

    // the CRM's own fields as features, read as of each date from the attribute history
    let config = tmp.path().join("cslake.toml");
    std::fs::write(
        &config,
        "[features.attributes]\nnumeric = [\"employees\"]\ncategorical = [\"acquisition_channel\"]\n\
         levels = { acquisition_channel = [\"partner\", \"webinar\"] }\n",
    )
    .unwrap();
    let settings = Settings::load(
        Some(&config),
        Some(tmp.path().join("lake").display().to_string()),
        Some("t".into()),
        None,
    )
    .unwrap();
    let lake = Lake::from_settings(&settings).unwrap();
    let mut run = RunContext::new("test", "t", vec![], Some(d));
    let source = data.display().to_string();
    cslake_pipeline::ingest::ingest(&lake, &settings, &source, false, &mut run, &NoProgress)
        .await
        .unwrap();
    cslake_pipeline::features::features(&lake, &settings, d, false, &mut run, &cslake_pipeline::NoProgress)
        .await
        .unwrap();
    let target = cslake_features::Target::Churn;
    let ts = cslake_pipeline::train::write_training_set(&lake, &settings, target, d, false, None, &mut run)
        .await
        .unwrap();
    assert!(ts.rows > 0 && ts.observation_dates >= 2, "seed {seed}: {ts:?}");
    let features_before = snapshot(&lake, "features", Some(d)).await;
    let training_before = snapshot(&lake, "training", None).await;
    assert!(!features_before.is_empty());

    // (2) the training rows of the last observation date are the daily features of that date
    let ctx = lake.session().await.unwrap();
    let obs = text_rows(
        &ctx,
        "SELECT CAST(MAX(as_of_date) AS VARCHAR) FROM training.churn",
    )
    .await
    .unwrap()[0][0]
        .1
        .clone()
        .unwrap();
    let obs: NaiveDate = obs.parse().unwrap();
    cslake_pipeline::features::features(
        &lake,
        &settings,
        obs,
        false,
        &mut run,
        &cslake_pipeline::NoProgress,
    )
    .await
    .unwrap();
    // a session sees the table versions of when it was opened
    let ctx = lake.session().await.unwrap();
    let daily: std::collections::BTreeMap<String, Vec<(String, Option<String>)>> = {
        let mut m = std::collections::BTreeMap::new();
        for t in [
            "usage_activity",
            "event_metrics",
            "subscription",
            "support",
            "billing",
            "account_attributes",
        ] {
            for row in text_rows(
                &ctx,
                &format!("SELECT * FROM features.{t} WHERE as_of_date = DATE '{obs}'"),
            )
            .await
            .unwrap()
            {
                let id = row
                    .iter()
                    .find(|(c, _)| c == "account_id")
                    .and_then(|(_, v)| v.clone())
                    .unwrap();
                m.entry(id).or_insert_with(Vec::new).extend(row);
            }
        }
        m
    };
    let training = text_rows(
        &ctx,
        &format!("SELECT * FROM training.churn WHERE as_of_date = DATE '{obs}'"),
    )
    .await
    .unwrap();
    let mut compared = 0;
    let mut per_type = 0;
    let mut attributes = 0;
    for row in &training {
        let id = row
            .iter()
            .find(|(c, _)| c == "account_id")
            .and_then(|(_, v)| v.clone())
            .unwrap();
        let f = &daily[&id];
        for (c, v) in row {
            if c.starts_with('_') || c == "as_of_date" {
                continue;
            }
            if let Some((_, fv)) = f.iter().find(|(fc, _)| fc == c) {
                assert_eq!(
                    v, fv,
                    "seed {seed}: {id} {c} on {obs}: training {v:?}, daily {fv:?}"
                );
                compared += 1;
                per_type += usize::from(c.starts_with("ev_"));
                attributes += usize::from(c.starts_with("attr_"));
            }
        }
    }
    assert!(
        compared > training.len() * 5,
        "seed {seed}: compared only {compared} values"
    );
    assert!(
        per_type > training.len() * 5,
        "seed {seed}: compared only {per_type} per-event-type values"
    );

    assert!(
        attributes > training.len() * 3,
        "seed {seed}: compared only {attributes} attribute values"
    );

    // (1) facts dated after d land: nothing of d changes
    let late = tmp.path().join("late").display().to_string();
    cslake_pipeline::ingest::ingest(&lake, &settings, &late, false, &mut run, &NoProgress)
        .await
        .unwrap();
    // and a later run learns of new CRM values (every account moved to another channel, grown
    // tenfold): known after d, they change nothing of d either
    let accounts = std::fs::read_to_string(data.join("accounts.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(accounts.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let (emp, ch) = (
        headers.iter().position(|h| h == "employees").unwrap(),
        headers.iter().position(|h| h == "acquisition_channel").unwrap(),
    );
    let mut changed = csv::Writer::from_writer(vec![]);
    changed.write_record(&headers).unwrap();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let row: Vec<String> = rec
            .iter()
            .enumerate()
            .map(|(i, v)| match i {
                i if i == emp => (v.parse::<i64>().unwrap() * 10).to_string(),
                i if i == ch => "reseller".to_string(),
                _ => v.to_string(),
            })
            .collect();
        changed.write_record(&row).unwrap();
    }
    let crm = tmp.path().join("crm");
    std::fs::create_dir_all(&crm).unwrap();
    std::fs::write(crm.join("accounts.csv"), changed.into_inner().unwrap()).unwrap();
    let mut later = RunContext::new("test", "t", vec![], Some(d + Duration::days(10)));
    cslake_pipeline::ingest::ingest(
        &lake,
        &settings,
        &crm.display().to_string(),
        false,
        &mut later,
        &NoProgress,
    )
    .await
    .unwrap();
    let ctx = lake.session().await.unwrap();
    let versions = text_rows(
        &ctx,
        &format!(
            "SELECT COUNT(*) AS n FROM core.attribute_history WHERE table_name = 'accounts' \
             AND valid_from = DATE '{}'",
            d + Duration::days(10)
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        versions[0][0].1.as_deref(),
        Some("40"),
        "seed {seed}: every account changed"
    );
    cslake_pipeline::features::features(&lake, &settings, d, false, &mut run, &cslake_pipeline::NoProgress)
        .await
        .unwrap();
    cslake_pipeline::train::write_training_set(&lake, &settings, target, d, false, None, &mut run)
        .await
        .unwrap();
    let features_after = snapshot(&lake, "features", Some(d)).await;
    let training_after = snapshot(&lake, "training", None).await;
    let first_diff = |a: &[String], b: &[String]| {
        a.iter()
            .zip(b)
            .find(|(x, y)| x != y)
            .map(|(x, y)| format!("{x}\n  became\n{y}"))
    };
    assert_eq!(features_before.len(), features_after.len(), "seed {seed}");
    assert!(
        features_before == features_after,
        "seed {seed}: {:?}",
        first_diff(&features_before, &features_after)
    );
    assert_eq!(training_before.len(), training_after.len(), "seed {seed}");
    assert!(
        training_before == training_after,
        "seed {seed}: {:?}",
        first_diff(&training_before, &training_after)
    );
}

#[test]
fn time_correctness_holds_for_every_seed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for seed in [3, 17, 2026] {
        rt.block_on(check(seed));
    }
}
