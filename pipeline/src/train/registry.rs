//! `models.registry`: every trained model version with its metrics and status. The current model
//! scores; a challenger is promoted only when its out-of-time ROC AUC is not worse than the
//! current model's on the same test window (within a tolerance). The current model and the three
//! most recent others keep their artifacts (PRD 6.2.1); older ones are archived.

use std::sync::Arc;

use chrono::Utc;
use cslake_models::ModelArtifact;
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{floats, has_table, sql, strings};
use crate::lake::schema::ColType;
use crate::{Error, Lake, Result, RunContext};

/// How many versions besides the current one keep their artifacts.
pub const KEEP_OTHERS: usize = 3;

/// One model version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    pub model_name: String,
    pub version: String,
    pub family: String,
    /// µs since the epoch
    pub created_at: i64,
    /// days since the epoch
    pub as_of_date: i32,
    /// current, previous, rejected, rolled_back or archived
    pub status: String,
    pub path: String,
    pub training_rows: i64,
    pub test_rows: i64,
    pub base_rate: f64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub brier: f64,
    pub top_decile_lift: f64,
    pub accuracy: f64,
    pub metrics: String,
    /// Why it has its status, in words.
    pub reason: String,
    pub run_id: String,
}

fn schema() -> Arc<Schema> {
    let f = |n: &str, t: DataType| Field::new(n, t, false);
    Arc::new(Schema::new(vec![
        f("model_name", DataType::Utf8),
        f("version", DataType::Utf8),
        f("family", DataType::Utf8),
        f("created_at", ColType::Timestamp.arrow()),
        f("as_of_date", DataType::Date32),
        f("status", DataType::Utf8),
        f("path", DataType::Utf8),
        f("training_rows", DataType::Int64),
        f("test_rows", DataType::Int64),
        f("base_rate", DataType::Float64),
        f("roc_auc", DataType::Float64),
        f("pr_auc", DataType::Float64),
        f("brier", DataType::Float64),
        f("top_decile_lift", DataType::Float64),
        f("accuracy", DataType::Float64),
        f("metrics", DataType::Utf8),
        f("reason", DataType::Utf8),
        f("_run_id", DataType::Utf8),
    ]))
}

fn to_batch(entries: &[Entry]) -> Result<RecordBatch> {
    let s =
        |g: fn(&Entry) -> &str| Arc::new(StringArray::from_iter_values(entries.iter().map(g))) as ArrayRef;
    let fl =
        |g: fn(&Entry) -> f64| Arc::new(Float64Array::from_iter_values(entries.iter().map(g))) as ArrayRef;
    let int =
        |g: fn(&Entry) -> i64| Arc::new(Int64Array::from_iter_values(entries.iter().map(g))) as ArrayRef;
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            s(|e| &e.model_name),
            s(|e| &e.version),
            s(|e| &e.family),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(entries.iter().map(|e| e.created_at))
                    .with_timezone("UTC"),
            ),
            Arc::new(Date32Array::from_iter_values(
                entries.iter().map(|e| e.as_of_date),
            )),
            s(|e| &e.status),
            s(|e| &e.path),
            int(|e| e.training_rows),
            int(|e| e.test_rows),
            fl(|e| e.base_rate),
            fl(|e| e.roc_auc),
            fl(|e| e.pr_auc),
            fl(|e| e.brier),
            fl(|e| e.top_decile_lift),
            fl(|e| e.accuracy),
            s(|e| &e.metrics),
            s(|e| &e.reason),
            s(|e| &e.run_id),
        ],
    )?)
}

/// Every version, oldest first.
pub async fn load(ctx: &SessionContext) -> Result<Vec<Entry>> {
    if !has_table(ctx, "models.registry") {
        return Ok(Vec::new());
    }
    let q = "SELECT *, CAST(created_at AS BIGINT) AS created_us, CAST(as_of_date AS INT) AS as_of_days \
             FROM models.registry ORDER BY created_at";
    let mut out = Vec::new();
    for b in sql(ctx, q).await? {
        let text = |c: &str| strings(&b, c);
        let num = |c: &str| floats(&b, c);
        let (name, version, family, status, path, metrics, reason, run) = (
            text("model_name")?,
            text("version")?,
            text("family")?,
            text("status")?,
            text("path")?,
            text("metrics")?,
            text("reason")?,
            text("_run_id")?,
        );
        let (created, as_of, train_rows, test_rows) = (
            num("created_us")?,
            num("as_of_days")?,
            num("training_rows")?,
            num("test_rows")?,
        );
        let (base, auc, pr, brier, lift, acc) = (
            num("base_rate")?,
            num("roc_auc")?,
            num("pr_auc")?,
            num("brier")?,
            num("top_decile_lift")?,
            num("accuracy")?,
        );
        let get = |v: &[Option<String>], i: usize| v[i].clone().unwrap_or_default();
        for i in 0..b.num_rows() {
            out.push(Entry {
                model_name: get(&name, i),
                version: get(&version, i),
                family: get(&family, i),
                created_at: created[i] as i64,
                as_of_date: as_of[i] as i32,
                status: get(&status, i),
                path: get(&path, i),
                training_rows: train_rows[i] as i64,
                test_rows: test_rows[i] as i64,
                base_rate: base[i],
                roc_auc: auc[i],
                pr_auc: pr[i],
                brier: brier[i],
                top_decile_lift: lift[i],
                accuracy: acc[i],
                metrics: get(&metrics, i),
                reason: get(&reason, i),
                run_id: get(&run, i),
            });
        }
    }
    Ok(out)
}

/// The model that scores: `current`, or `provisional` (scores, but its bands drive no playbook
/// until confirmed).
pub fn current(entries: &[Entry]) -> Option<&Entry> {
    entries.iter().rev().find(|e| scores(&e.status))
}

/// Whether a version with this status is the one that scores.
pub fn scores(status: &str) -> bool {
    status == "current" || status == "provisional"
}

pub async fn load_artifact(lake: &Lake, entry: &Entry) -> Result<ModelArtifact> {
    if entry.status == "archived" {
        return Err(Error::Job(format!(
            "model {} is archived: its artifacts were removed",
            entry.version
        )));
    }
    let meta = lake.get(&format!("{}/model.json", entry.path)).await?;
    let weights = lake.get(&format!("{}/model.safetensors", entry.path)).await?;
    Ok(ModelArtifact::from_bytes(&meta, &weights)?)
}

/// Archives all but the current version and the [`KEEP_OTHERS`] newest others; returns the
/// artifact folders of the versions it archived.
pub fn retain(entries: &mut [Entry]) -> Vec<String> {
    entries.sort_by_key(|e| e.created_at);
    let mut kept = 0;
    let mut removed = Vec::new();
    for e in entries.iter_mut().rev() {
        if scores(&e.status) || e.status == "archived" {
            continue;
        }
        kept += 1;
        if kept > KEEP_OTHERS {
            e.reason = format!(
                "{} (archived: only the current model and {KEEP_OTHERS} others are kept)",
                e.reason
            );
            e.status = "archived".into();
            removed.push(e.path.clone());
        }
    }
    removed
}

/// Applies [`retain`], removes the archived versions' artifacts, and writes the registry (one
/// commit).
pub async fn save(lake: &Lake, mut entries: Vec<Entry>, run: &mut RunContext) -> Result<()> {
    for path in retain(&mut entries) {
        for file in ["model.json", "model.safetensors"] {
            lake.delete(&format!("{path}/{file}")).await?;
        }
    }
    let stats = lake
        .target("models", "registry")
        .overwrite(vec![to_batch(&entries)?], &run.run_id)
        .await?;
    run.wrote("models.registry", entries.len(), stats.version);
    Ok(())
}

/// Where `version` is in `entries`, or an error listing the versions there are.
pub fn position(entries: &[Entry], version: &str) -> Result<usize> {
    entries.iter().position(|e| e.version == version).ok_or_else(|| {
        Error::Config(format!(
            "no model version '{version}' (versions: {})",
            entries
                .iter()
                .map(|e| e.version.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Makes `version` the current model (the current one becomes `previous`).
pub async fn promote(lake: &Lake, version: &str, run: &mut RunContext) -> Result<Entry> {
    let ctx = lake.session().await?;
    let mut entries = load(&ctx).await?;
    let target = position(&entries, version)?;
    load_artifact(lake, &entries[target]).await?;
    for e in &mut entries {
        if scores(&e.status) && e.version != version {
            e.status = "previous".into();
            e.reason = format!("replaced by {version} by hand");
        }
    }
    let when = Utc::now().format("%Y-%m-%d %H:%M UTC");
    entries[target].reason =
        if entries[target].status == "provisional" || entries[target].status == "unconfirmed" {
            format!(
                "confirmed by {} on {when} (was {}: {})",
                run.actor, entries[target].status, entries[target].reason
            )
        } else {
            format!("promoted by {} on {when}", run.actor)
        };
    entries[target].status = "current".into();
    let promoted = entries[target].clone();
    save(lake, entries, run).await?;
    Ok(promoted)
}

/// Puts the most recent previous model back in place of the current one.
pub async fn rollback(lake: &Lake, run: &mut RunContext) -> Result<Entry> {
    let ctx = lake.session().await?;
    let mut entries = load(&ctx).await?;
    let current = current(&entries).ok_or(Error::NoModel)?.version.clone();
    let Some(back) = entries.iter().rposition(|e| e.status == "previous") else {
        return Err(Error::Job(format!(
            "{current} is the only model with artifacts: nothing to roll back to"
        )));
    };
    load_artifact(lake, &entries[back]).await?;
    let back_version = entries[back].version.clone();
    for e in &mut entries {
        if e.version == current {
            e.status = "rolled_back".into();
            e.reason = format!("rolled back by {} in favour of {back_version}", run.actor);
        }
    }
    entries[back].status = "current".into();
    entries[back].reason = format!("current again: rollback by {}", run.actor);
    let entry = entries[back].clone();
    save(lake, entries, run).await?;
    Ok(entry)
}

/// `cslake models list`: every version with its status and out-of-time metrics, newest first.
pub async fn table(lake: &Lake) -> Result<Vec<RecordBatch>> {
    let ctx = lake.session().await?;
    if !has_table(&ctx, "models.registry") {
        return Err(Error::NoModel);
    }
    sql(
        &ctx,
        "SELECT version, status, as_of_date, training_rows, test_rows, \
         ROUND(roc_auc, 3) AS roc_auc, ROUND(pr_auc, 3) AS pr_auc, ROUND(brier, 4) AS brier, \
         ROUND(top_decile_lift, 2) AS lift, reason FROM models.registry ORDER BY created_at DESC",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, created_at: i64, status: &str) -> Entry {
        Entry {
            model_name: "churn".into(),
            version: version.into(),
            family: "logistic_regression".into(),
            created_at,
            as_of_date: 0,
            status: status.into(),
            path: format!("models/churn/{version}"),
            training_rows: 0,
            test_rows: 0,
            base_rate: 0.0,
            roc_auc: 0.0,
            pr_auc: 0.0,
            brier: 0.0,
            top_decile_lift: 0.0,
            accuracy: 0.0,
            metrics: String::new(),
            reason: "r".into(),
            run_id: String::new(),
        }
    }

    #[test]
    fn keeps_the_current_model_and_three_others() {
        let mut e = vec![
            entry("v1", 1, "previous"),
            entry("v2", 2, "rejected"),
            entry("v3", 3, "previous"),
            entry("v4", 4, "current"),
            entry("v5", 5, "rejected"),
            entry("v6", 6, "previous"),
        ];
        assert_eq!(retain(&mut e), ["models/churn/v2", "models/churn/v1"]);
        let status: Vec<&str> = e.iter().map(|e| e.status.as_str()).collect();
        assert_eq!(
            status,
            [
                "archived", "archived", "previous", "current", "rejected", "previous"
            ]
        );
        assert!(
            e[0].reason
                .ends_with("(archived: only the current model and 3 others are kept)")
        );
        // nothing more to archive the second time
        assert!(retain(&mut e).is_empty());
    }
}
