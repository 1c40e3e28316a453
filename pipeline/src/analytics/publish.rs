//! `cslake publish --as-of D`: the day's partitions of the output tables, upserted into
//! PostgreSQL for BI tools that read a database (`[publish.postgres]`). The tables are created
//! and migrated by the sink; re-publishing a day replaces exactly that day's rows.

use chrono::NaiveDate;
use cslake_sinks::postgres::{Partition, PgSink, SyncStats};

use crate::lake::query::has_table;
use crate::{Error, Lake, Result, RunContext, Settings};

/// The tables that can be published, with their keys within a day.
pub const PUBLISHABLE: &[(&str, &[&str])] = &[
    (
        "analytics.financial_impact",
        &["as_of_date", "dimension", "value"],
    ),
    (
        "analytics.benchmarks",
        &["as_of_date", "dimension", "value", "kpi"],
    ),
    ("analytics.team_performance", &["as_of_date", "csm_id"]),
    ("analytics.team_summary", &["as_of_date", "team"]),
    ("analytics.team_goals", &["as_of_date", "csm_id", "metric"]),
    ("scores.risk_scores", &["as_of_date", "account_id"]),
    ("scores.health_scores", &["as_of_date", "account_id"]),
    ("scores.opportunities", &["as_of_date", "opportunity_id"]),
];

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PublishReport {
    pub as_of: String,
    pub target: String,
    pub tables: Vec<SyncStats>,
    /// Configured tables the lake does not have (yet).
    pub missing: Vec<String>,
}

pub async fn publish(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    run: &mut RunContext,
) -> Result<PublishReport> {
    let Some(pg) = &settings.file.publish.postgres else {
        return Err(Error::Config(
            "cslake publish: nothing to publish to: add [publish.postgres] (url_env, schema, tables) to cslake.toml".into(),
        ));
    };
    let url = std::env::var(&pg.url_env)
        .ok()
        .filter(|v| !v.is_empty())
        .inspect(|u| {
            // the URL carries the password
            let password = url::Url::parse(u)
                .ok()
                .and_then(|p| p.password().map(str::to_string));
            crate::add_secrets(password.into_iter().chain([u.clone()]));
        })
        .ok_or_else(|| Error::MissingEnv {
            var: pg.url_env.clone(),
            what: "[publish.postgres]".into(),
            why: "the connection URL is read from the environment only".into(),
        })?;
    let tables: Vec<String> = pg.tables.clone().unwrap_or_else(|| {
        PUBLISHABLE
            .iter()
            .filter(|(t, _)| t.starts_with("analytics."))
            .map(|(t, _)| t.to_string())
            .collect()
    });
    let mut plan = Vec::new();
    for t in &tables {
        let Some((_, keys)) = PUBLISHABLE.iter().find(|(n, _)| n == t) else {
            return Err(Error::Config(format!(
                "[publish.postgres] tables: `{t}` cannot be published; these can: {}",
                PUBLISHABLE.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )));
        };
        plan.push((t.clone(), *keys));
    }
    let schema = pg.schema.clone().unwrap_or_else(|| "cslake".into());
    let ctx = lake.session().await?;
    let ca_pem = pg
        .ca_file
        .as_ref()
        .map(|p| {
            let p = settings.config_path(p);
            std::fs::read(&p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })
        })
        .transpose()?;
    let mut sink = PgSink::connect(&url, &schema, ca_pem.as_deref())
        .await
        .map_err(|e| Error::Job(e.to_string()))?;
    let mut report = PublishReport {
        as_of: as_of.to_string(),
        target: format!("{} schema {schema}", cslake_sinks::postgres::location(&url)),
        ..Default::default()
    };
    for (table, keys) in plan {
        if !has_table(&ctx, &table) {
            report.missing.push(table);
            continue;
        }
        let df = ctx
            .sql(&format!(
                "SELECT * FROM {table} WHERE as_of_date = DATE '{as_of}'"
            ))
            .await?;
        let arrow_schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        let name = table.replace('.', "_");
        let stats = sink
            .sync_partition(&Partition {
                table: &name,
                schema: &arrow_schema,
                batches: &batches,
                keys,
                column: "as_of_date",
                value: &as_of.to_string(),
                run_id: &run.run_id,
            })
            .await
            .map_err(|e| Error::Job(e.to_string()))?;
        tracing::info!(table = %stats.table, rows = stats.rows, deleted = stats.deleted, "published");
        report.tables.push(stats);
    }
    Ok(report)
}
