//! `cslake features` and its subcommands: the registry, training sets, data quality.

use chrono::NaiveDate;
use cslake_features::Target;
use cslake_pipeline::day as runner;
use cslake_pipeline::lake::ops::audited;
use cslake_pipeline::{Error, features as job, train as training};

use super::Ctx;
use crate::cli::{FeaturesAction, LabelArg};
use crate::output;
use crate::summary::Summary;

/// `cslake features --as-of D`: every view materialised as of D.
pub async fn features(ctx: &Ctx, as_of: Option<NaiveDate>, strict: bool) -> anyhow::Result<Summary> {
    let d = as_of.ok_or_else(|| {
        Error::Usage("cslake features needs --as-of YYYY-MM-DD (or a subcommand: list, describe NAME)".into())
    })?;
    let lake = ctx.lake().await?;
    let (report, run) = runner::shown(
        ctx,
        "features",
        d,
        audited(&lake, ctx.run("features", Some(d)), async |run| {
            job::features(&lake, &ctx.settings, d, strict, run, ctx).await
        }),
    )
    .await?;
    Ok(Summary::succeeded("features").run(&run).merge(report))
}

/// `cslake features list | describe | training-set | stats`.
pub async fn action(ctx: &Ctx, action: FeaturesAction) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    match action {
        FeaturesAction::List => {
            let views = job::describe_views(&lake, &ctx.settings).await?;
            output::views(&views);
            Ok(Summary::succeeded("features list").with("views", views.len()))
        }
        FeaturesAction::Describe { name } => {
            let views = job::describe_views(&lake, &ctx.settings).await?;
            let view = views
                .iter()
                .find(|v| v.name == name)
                .ok_or_else(|| Error::NotFound {
                    what: "feature view",
                    name: name.clone(),
                    hint: format!(
                        " (views: {})",
                        views
                            .iter()
                            .map(|v| v.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })?;
            output::view(view);
            Ok(Summary::succeeded("features describe").with("view", view))
        }
        FeaturesAction::TrainingSet {
            as_of,
            strict,
            out,
            label,
        } => {
            let target = match label {
                LabelArg::Churn => Target::Churn,
                LabelArg::Expansion => Target::Expansion,
            };
            let (report, run) = audited(
                &lake,
                ctx.run("features training-set", Some(as_of)),
                async |run| {
                    training::write_training_set(
                        &lake,
                        &ctx.settings,
                        target,
                        as_of,
                        strict,
                        out.as_deref(),
                        run,
                    )
                    .await
                },
            )
            .await?;
            output::training_set(&report);
            Ok(Summary::succeeded("features training-set")
                .run(&run)
                .with("training_set", &report))
        }
        FeaturesAction::EventTypes { choose } => {
            let mut chosen = None;
            if choose {
                let (report, run) = audited(&lake, ctx.run("features event-types", None), async |run| {
                    job::event_types::ensure(&lake, &ctx.settings.file.features.events, true, run).await
                })
                .await?;
                chosen = Some((report, run));
            }
            let batches = job::event_types::table(&lake).await?;
            if batches.is_empty() {
                println!(
                    "no event types chosen yet: the first `cslake features` or `cslake train` with events chooses them"
                );
            }
            let rows = output::print_batches(&batches, output::Format::Table)?;
            let summary = Summary::succeeded("features event-types").with("event_types", rows);
            Ok(match chosen {
                Some((report, run)) => summary.run(&run).with("choice", report),
                None => summary,
            })
        }
        FeaturesAction::Stats { as_of } => {
            let (batches, checks) = job::quality::stats_table(&lake, as_of).await?;
            let rows = output::print_batches(&batches, output::Format::Table)?;
            Ok(Summary::succeeded("features stats")
                .with("features", rows)
                .with("checks", checks))
        }
    }
}
