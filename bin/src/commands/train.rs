//! `cslake train`, `cslake evaluate`, `cslake models` and `cslake health suggest-weights`.

use std::path::PathBuf;

use chrono::NaiveDate;
use cslake_pipeline::day as runner;
use cslake_pipeline::lake::ops::audited;
use cslake_pipeline::train::{self as job, health_weights, registry};

use super::Ctx;
use crate::cli::{HealthAction, ModelsAction};
use crate::out;
use crate::output;
use crate::summary::Summary;

/// `cslake train --as-of D`.
pub async fn train(ctx: &Ctx, d: NaiveDate, strict: bool) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let (report, run) = runner::shown(
        ctx,
        "train",
        d,
        audited(&lake, ctx.run("train", Some(d)), async |run| {
            job::train(&lake, &ctx.settings, d, strict, run, ctx).await
        }),
    )
    .await?;
    output::trained(&report);
    Ok(Summary::succeeded("train").run(&run).with("model", &report))
}

/// `cslake evaluate --as-of D`: the trainer against the reference, nothing registered.
pub async fn evaluate(ctx: &Ctx, d: NaiveDate, out: Option<PathBuf>) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let (r, run) = audited(&lake, ctx.run("evaluate", Some(d)), async |run| {
        job::evaluate(&lake, &ctx.settings, d, out.as_deref(), run).await
    })
    .await?;
    output::evaluated(&r);
    Ok(Summary::succeeded("evaluate").run(&run).with("evaluation", &r))
}

/// `cslake models list | show | promote | rollback`.
pub async fn models(ctx: &Ctx, action: ModelsAction) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    match action {
        ModelsAction::List => {
            let rows = output::print_batches(&registry::table(&lake).await?, output::Format::Table)?;
            Ok(Summary::succeeded("models list").with("rows", rows))
        }
        ModelsAction::Show { version } => {
            let entries = registry::load(&lake.session().await?).await?;
            let entry = &entries[registry::position(&entries, &version)?];
            let artifact = registry::load_artifact(&lake, entry).await?;
            out!("{}", serde_json::to_string_pretty(&artifact.meta)?);
            Ok(Summary::succeeded("models show")
                .with("version", &version)
                .with("model_status", &entry.status))
        }
        ModelsAction::Promote { version } => {
            let (entry, run) = audited(&lake, ctx.run("models promote", None), async |run| {
                registry::promote(&lake, &version, run).await
            })
            .await?;
            out!("{} is the current model ({})", entry.version, entry.reason);
            Ok(Summary::succeeded("models promote")
                .run(&run)
                .with("current", &entry.version))
        }
        ModelsAction::Rollback => {
            let (entry, run) = audited(&lake, ctx.run("models rollback", None), async |run| {
                registry::rollback(&lake, run).await
            })
            .await?;
            out!("{} is the current model again", entry.version);
            Ok(Summary::succeeded("models rollback")
                .run(&run)
                .with("current", &entry.version))
        }
    }
}

/// `cslake health suggest-weights --as-of D`.
pub async fn health(ctx: &Ctx, action: HealthAction) -> anyhow::Result<Summary> {
    let HealthAction::SuggestWeights { as_of } = action;
    let lake = ctx.lake().await?;
    let s = health_weights::suggest_weights(&lake, &ctx.settings, as_of.as_of).await?;
    out!("{}", s.diff.trim_end());
    Ok(Summary::succeeded("health suggest-weights")
        .with("as_of", &s.as_of)
        .with("rows", s.rows)
        .with("churned", s.churned)
        .with("measures", &s.measures))
}
