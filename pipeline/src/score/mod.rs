//! `cslake score`: risk, health and opportunities for every customer as of a date. The inputs
//! (`inputs`) are the day's materialised features; each score has its file (`risk`, `health`,
//! `opportunities`); this module runs the models and writes the tables.

pub mod health;
pub mod inputs;
pub mod opportunities;
pub mod report;
pub mod risk;

pub use report::{ScoreReport, TopAccount};

use chrono::NaiveDate;
use cslake_models::{Dataset, ModelArtifact};

use crate::features::{available_registry, health_profiles};
use crate::{Error, Lake, Result, RunContext, Settings};

/// The current churn model and, when one was trained with it, its expansion propensity model.
async fn current_model(
    lake: &Lake,
    ctx: &deltalake::datafusion::prelude::SessionContext,
) -> Result<(ModelArtifact, Option<ModelArtifact>)> {
    let entries = crate::train::registry::load(ctx).await?;
    let current = crate::train::registry::current(&entries).ok_or(Error::NoModel)?;
    let churn = crate::train::registry::load_artifact(lake, current).await?;
    let expansion = match (
        lake.get(&format!("{}/expansion.json", current.path)).await,
        lake.get(&format!("{}/expansion.safetensors", current.path)).await,
    ) {
        (Ok(meta), Ok(weights)) => Some(ModelArtifact::from_bytes(&meta, &weights)?),
        _ => None,
    };
    Ok((churn, expansion))
}

pub async fn score(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    run: &mut RunContext,
) -> Result<ScoreReport> {
    // health profiles first: a mistake in them is found before any work is done
    let profiles = health_profiles(settings)?;
    let ctx = lake.session().await?;
    let registry = available_registry(settings, &ctx).await?;
    let (model, expansion_model) = current_model(lake, &ctx).await?;
    let version = model.meta.version.clone();
    let s = inputs::load(&ctx, &registry, as_of).await?;
    let x = s.matrix();
    let dataset = Dataset::new(s.names.clone(), x.clone(), Vec::new())?;
    let predictions = model.predict(&dataset)?;
    let propensity: Option<Vec<f64>> = match &expansion_model {
        Some(m) => Some(m.predict(&dataset)?.iter().map(|p| p.probability).collect()),
        None => None,
    };
    let n = s.ids.len();
    let pred = format!("as_of_date = '{as_of}'");

    let r = risk::risk(
        &ctx,
        &registry,
        &s,
        &predictions,
        &x,
        &settings.file.scoring,
        &version,
        &run.run_id,
    )
    .await?;
    let stats = lake
        .target("scores", "risk_scores")
        .replace_where(vec![r.scores_batch], &pred, &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("scores.risk_scores", n, stats.version);
    crate::fault_point("score:mid-write");
    // prediction_log: every prediction ever made, with the model and a hash of its inputs
    let stats = lake
        .target("scores", "prediction_log")
        .append(vec![r.log_batch], &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("scores.prediction_log", n, stats.version);

    let (h, health_bands) = health::health(&ctx, &profiles, &s, &run.run_id).await?;
    let stats = lake
        .target("scores", "health_scores")
        .replace_where(vec![h], &pred, &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("scores.health_scores", n, stats.version);

    let (o, expansion_mrr) = opportunities::opportunities(
        &ctx,
        &settings.file.opportunities,
        &s,
        &predictions,
        propensity.as_deref(),
        &version,
        &run.run_id,
    )
    .await?;
    let m = o.num_rows();
    let stats = lake
        .target("scores", "opportunities")
        .replace_where(vec![o], &pred, &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("scores.opportunities", m, stats.version);
    Ok(ScoreReport {
        as_of: as_of.to_string(),
        model_version: version,
        accounts: n,
        risk_bands: r.bands,
        health_bands,
        opportunities: m,
        expansion_mrr,
        expansion_model: expansion_model.is_some(),
        top_at_risk: r.top,
    })
}
