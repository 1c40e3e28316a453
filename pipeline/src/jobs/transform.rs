//! `cslake features`: materialise every feature view as of a date.

use chrono::NaiveDate;
use cslake_features::{Registry, compute_all};

use deltalake::datafusion::prelude::SessionContext;

use super::util::{has_table, require_core, with_run_id};
use crate::{Lake, Result, RunContext, Settings};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FeaturesReport {
    pub as_of: String,
    pub accounts: usize,
    /// (view, rows, table version)
    pub views: Vec<(String, usize, Option<u64>)>,
}

/// The built-in views plus the user's folder, if configured.
pub fn load_registry(settings: &Settings) -> Result<Registry> {
    let reg = Registry::builtin()?;
    Ok(match &settings.file.features.dir {
        Some(dir) => reg.with_dir(&settings.config_path(dir))?,
        None => reg,
    })
}

/// The views this lake can compute: those whose source tables exist.
pub fn available_registry(settings: &Settings, ctx: &SessionContext) -> Result<Registry> {
    let reg = load_registry(settings)?.available(|t| has_table(ctx, t));
    if reg.views.is_empty() {
        return Err(crate::Error::Job(
            "no feature view can be computed: their source tables are missing; run `cslake ingest` first"
                .into(),
        ));
    }
    Ok(reg)
}

/// Computes every view as of `as_of` and replaces that date's partition of `features/<view>`.
pub async fn features(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    run: &mut RunContext,
) -> Result<FeaturesReport> {
    let ctx = lake.session().await?;
    let label = settings.label_spec();
    require_core(&ctx, &label)?;
    let registry = available_registry(settings, &ctx)?;
    let computed = compute_all(&ctx, &registry, as_of, &label).await?;
    let mut report = FeaturesReport {
        as_of: as_of.to_string(),
        ..Default::default()
    };
    for (name, batches) in computed {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        report.accounts = report.accounts.max(rows);
        let batches = batches
            .iter()
            .map(|b| with_run_id(b, &run.run_id))
            .collect::<Result<Vec<_>>>()?;
        let stats = lake
            .target("features", &name)
            .replace_where(
                batches,
                &format!("as_of_date = '{as_of}'"),
                &["as_of_date"],
                &run.run_id,
            )
            .await?;
        run.wrote(&format!("features.{name}"), rows, stats.version);
        tracing::info!(
            view = name.as_str(),
            rows,
            version = stats.version,
            "materialised"
        );
        report.views.push((name, rows, stats.version));
    }
    Ok(report)
}
