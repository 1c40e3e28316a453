//! `cslake maintain`: what keeps a lake healthy and lawful night after night. Per table: delete
//! rows past their retention (`[retention]`), compact small files, write a checkpoint, vacuum
//! files no version within `keep_history_days` needs, and drop log entries older than that.

use std::num::NonZeroU64;

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::datatypes::DataType;
use deltalake::checkpoints::{cleanup_expired_logs_for, create_checkpoint};

use crate::lake::query::{floats, sql};
use crate::lake::retention::{retention_days, time_column};
use crate::{Lake, Result, RunContext, Settings};

/// The SQL condition that selects a table's expired rows.
fn expired(column: &str, ty: &DataType, cutoff: NaiveDate) -> String {
    // arrow_cast literals: the forms deltalake can write back into the commit's predicate
    match ty {
        DataType::Date32 | DataType::Date64 => format!("{column} < arrow_cast('{cutoff}', 'Date32')"),
        _ => format!(
            "{column} < arrow_cast('{cutoff}T00:00:00.000000', 'Timestamp(Microsecond, Some(\"UTC\"))')"
        ),
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableMaintenance {
    pub table: String,
    pub retention_days: Option<i64>,
    pub expired_rows: usize,
    pub files_compacted: u64,
    pub files_written: u64,
    pub files_vacuumed: usize,
    pub log_entries_removed: usize,
    pub version: Option<u64>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MaintainReport {
    pub as_of: String,
    pub dry_run: bool,
    pub keep_history_days: i64,
    pub tables: Vec<TableMaintenance>,
}

pub async fn maintain(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    dry_run: bool,
    run: &mut RunContext,
) -> Result<MaintainReport> {
    let cfg = &settings.file.maintain;
    let keep_days = cfg.keep_history_days.unwrap_or(7);
    let target_size = cfg.target_file_mb.unwrap_or(128) * 1024 * 1024;
    let ctx = lake.session().await?;
    let mut report = MaintainReport {
        as_of: as_of.to_string(),
        dry_run,
        keep_history_days: keep_days,
        tables: Vec::new(),
    };
    for (zone, name) in lake.tables().await? {
        let table = format!("{zone}.{name}");
        let schema = ctx.table(table.as_str()).await?.schema().as_arrow().clone();
        let mut entry = TableMaintenance {
            table: table.clone(),
            retention_days: retention_days(&settings.file.retention, &table)?,
            ..Default::default()
        };
        let condition = match (entry.retention_days, time_column(&table, &schema)) {
            (Some(days), Some(col)) => {
                let ty = schema.field_with_name(&col).map(|f| f.data_type().clone())?;
                Some(expired(&col, &ty, as_of - chrono::Duration::days(days)))
            }
            _ => None,
        };
        if let Some(cond) = &condition {
            let b = sql(&ctx, &format!("SELECT COUNT(*) AS n FROM {table} WHERE {cond}")).await?;
            entry.expired_rows = b
                .first()
                .map(|b| floats(b, "n"))
                .transpose()?
                .and_then(|v| v.first().copied())
                .unwrap_or(0.0) as usize;
        }
        let Some(mut dt) = lake.open_table(&zone, &name).await? else {
            continue;
        };
        if dry_run {
            let (_, vac) = dt
                .clone()
                .vacuum()
                .with_retention_period(chrono::Duration::days(keep_days))
                .with_enforce_retention_duration(false)
                .with_dry_run(true)
                .await?;
            entry.files_vacuumed = vac.files_deleted.len();
            report.tables.push(entry);
            continue;
        }
        if let Some(cond) = condition.filter(|_| entry.expired_rows > 0) {
            let (t, _) = dt
                .delete()
                .with_predicate(cond)
                .with_commit_properties(commit(&run.run_id))
                .await?;
            dt = t;
            run.wrote(&table, entry.expired_rows, dt.version());
        }
        let (t, metrics) = dt
            .optimize()
            .with_target_size(NonZeroU64::new(target_size.max(1)).unwrap_or(NonZeroU64::MIN))
            .with_commit_properties(commit(&run.run_id))
            .await?;
        dt = t;
        entry.files_compacted = metrics.num_files_removed;
        entry.files_written = metrics.num_files_added;
        let (t, vac) = dt
            .vacuum()
            .with_retention_period(chrono::Duration::days(keep_days))
            .with_enforce_retention_duration(false)
            .await?;
        dt = t;
        dt.load().await?;
        entry.files_vacuumed = vac.files_deleted.len();
        create_checkpoint(&dt, None).await?;
        let cutoff: DateTime<Utc> = Utc::now() - chrono::Duration::days(keep_days);
        entry.log_entries_removed = cleanup_expired_logs_for(
            dt.version().unwrap_or_default(),
            dt.log_store().as_ref(),
            cutoff.timestamp_millis(),
            None,
        )
        .await?;
        entry.version = dt.version();
        tracing::info!(
            table = table.as_str(),
            expired = entry.expired_rows,
            compacted = entry.files_compacted,
            vacuumed = entry.files_vacuumed,
            "maintained"
        );
        report.tables.push(entry);
    }
    Ok(report)
}

fn commit(run_id: &str) -> deltalake::kernel::transaction::CommitProperties {
    deltalake::kernel::transaction::CommitProperties::default()
        .with_metadata([("cslake_run_id".to_string(), serde_json::json!(run_id))])
}
