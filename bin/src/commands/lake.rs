//! `cslake query`, `cslake tables`, `cslake runs` and `cslake lineage`: reading the lake and its
//! audit.

use cslake_pipeline::Error;
use cslake_pipeline::lake::describe;
use cslake_pipeline::lake::lineage as versions;
use cslake_pipeline::lake::ops::{self, audited};
use cslake_pipeline::lake::pii::Protector;

use super::Ctx;
use crate::cli::RunsAction;
use crate::out;
use crate::output::{self, Format};
use crate::summary::Summary;

/// `cslake query "SQL" [--format table|csv|json] [--reveal]`.
pub async fn query(ctx: &Ctx, sql: &str, format: Format, reveal: bool) -> anyhow::Result<Summary> {
    // a statement that would write is refused before the lake is looked at
    cslake_pipeline::lake::query::read_only(sql)?;
    let lake = ctx.lake().await?;
    let mut batches = lake.query(sql).await?;
    if reveal {
        let pii = Protector::from_settings(&ctx.settings)?
            .ok_or_else(|| Error::Config("--reveal: [pii] is not configured".into()))?;
        // revealing personal data is audited
        let (revealed, _) = audited(&lake, ctx.run("query --reveal", None), async |run| {
            run.rows_read = batches.iter().map(|b| b.num_rows() as u64).sum();
            batches
                .iter()
                .map(|b| pii.reveal_batch(b))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        batches = revealed;
    }
    let rows = output::print_batches(&batches, format)?;
    let summary = Summary::succeeded("query").with("rows", rows);
    // csv and json output is data: nothing follows it
    Ok(if format == Format::Table {
        summary
    } else {
        summary.silent()
    })
}

/// `cslake runs list | show`: the audit log.
pub async fn runs(ctx: &Ctx, action: RunsAction) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let (command, batches, format) = match &action {
        RunsAction::List { limit } => ("runs list", ops::runs(&lake, *limit).await?, Format::Table),
        RunsAction::Show { run_id } => ("runs show", ops::run(&lake, run_id).await?, Format::Json),
    };
    let rows = output::print_batches(&batches, format)?;
    Ok(Summary::succeeded(command).with("rows", rows))
}

/// `cslake lineage ZONE.TABLE`: each version, the run that wrote it, and what it read.
pub async fn lineage(ctx: &Ctx, table: &str, limit: usize) -> anyhow::Result<Summary> {
    let found = versions::lineage(&ctx.lake().await?, table, limit).await?;
    for v in &found {
        let inputs = v
            .inputs
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(t, n)| format!("{t}@{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        out!(
            "{table}@{} {} {} run {}\n    inputs: {}",
            v.version.map(|v| v.to_string()).unwrap_or_default(),
            v.timestamp.as_deref().unwrap_or("-"),
            v.operation.as_deref().unwrap_or("-"),
            v.run_id.as_deref().unwrap_or("-"),
            if inputs.is_empty() { "-".into() } else { inputs }
        );
    }
    Ok(Summary::succeeded("lineage")
        .with("table", table)
        .with("versions", &found))
}

/// `cslake tables [ZONE.TABLE] [--format table|json|markdown]`: what a reader of the lake finds.
pub async fn tables(ctx: &Ctx, only: Option<&str>, format: &str) -> anyhow::Result<Summary> {
    let found = describe::describe(&ctx.lake().await?, only).await?;
    match format {
        "json" => {
            out!("{}", serde_json::to_string_pretty(&found)?);
            return Ok(Summary::succeeded("tables").silent());
        }
        "markdown" => {
            out!("{}", describe::markdown(&found).trim_end());
            return Ok(Summary::succeeded("tables").silent());
        }
        _ => {}
    }
    let width = found.iter().map(|t| t.table.len()).max().unwrap_or(0);
    for t in &found {
        let rows = t.rows.map(|r| r.to_string()).unwrap_or_else(|| "?".into());
        let parts = if t.partitioned_by.is_empty() {
            String::new()
        } else {
            format!(", by {}", t.partitioned_by.join(", "))
        };
        out!(
            "{:<width$}  v{:<4} {:>11} rows  {:>5} files  {:>9}  {} columns{parts}",
            t.table,
            t.version,
            rows,
            t.files,
            output::bytes(t.bytes),
            t.columns.len(),
        );
        if only.is_some() {
            for c in &t.columns {
                out!(
                    "    {:<28} {}{}",
                    c.name,
                    c.ty,
                    if c.nullable { "" } else { " not null" }
                );
            }
        }
    }
    Ok(Summary::succeeded("tables").with("tables", found.len()))
}
