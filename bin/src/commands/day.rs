//! `cslake run`, `cslake backfill` and `cslake demo`: the day runner of the pipeline, with the
//! terminal as its observer.

use std::path::PathBuf;

use chrono::NaiveDate;
use cslake_pipeline::day::{self as runner, DayOptions, Step};
use cslake_pipeline::demo::generate;

use super::Ctx;
use super::ingest::gen_options;
use crate::cli::{GenArgs, StepArg};
use crate::output;
use crate::summary::Summary;

/// `cslake run --as-of D`: the whole day, or `--only` one step, or `--from-step` on.
pub async fn run(
    ctx: &Ctx,
    d: NaiveDate,
    source: Option<String>,
    retrain: bool,
    strict: bool,
    only: Option<StepArg>,
    from_step: Option<StepArg>,
) -> anyhow::Result<Summary> {
    let (only, from_step) = (only.map(Step::from), from_step.map(Step::from));
    let opts = DayOptions {
        sources: runner::sources(&ctx.settings, source),
        steps: Step::selected(only, from_step),
        // the train step trains when the lake has no model yet, or with --retrain: a daily
        // scheduler task can run it every night and the weekly one pass --retrain
        retrain,
        strict,
    };
    let summary = runner::run(&ctx.new_lake()?, &ctx.settings, d, &opts, &ctx.audit, ctx).await?;
    Ok(Summary::succeeded("run").merge(summary))
}

/// `cslake backfill --from D1 --to D2`: features (and scores) for every date of a range.
pub async fn backfill(
    ctx: &Ctx,
    from: NaiveDate,
    to: NaiveDate,
    every: u32,
    features_only: bool,
    strict: bool,
) -> anyhow::Result<Summary> {
    runner::backfill_dates(from, to, every)?;
    let lake = ctx.lake().await?;
    let summary = runner::backfill(
        &lake,
        &ctx.settings,
        from,
        to,
        every,
        features_only,
        strict,
        &ctx.audit,
        ctx,
    )
    .await?;
    Ok(Summary::succeeded("backfill").merge(summary))
}

/// `cslake demo`: generate the demo data and run the whole day on it (training always, so the
/// summary shows the model's quality).
pub async fn demo(ctx: &Ctx, g: &GenArgs, data: PathBuf, history_weeks: u32) -> anyhow::Result<Summary> {
    let lake = ctx.new_lake()?;
    let t = std::time::Instant::now();
    let stats = generate(&gen_options(g, data.clone()), &ctx.progress)?;
    output::generated(&stats, &data);
    tracing::info!(seconds = t.elapsed().as_secs_f64(), "generated");
    let opts = DayOptions {
        sources: vec![data.display().to_string()],
        steps: Step::ALL.to_vec(),
        retrain: true,
        strict: false,
    };
    let summary = runner::run(&lake, &ctx.settings, g.end, &opts, &ctx.audit, ctx).await?;
    // the weeks before: features, scores and analytics once a week with the day's model, so health
    // and revenue-at-risk trends, benchmarks and the report's charts show lines, not one point
    let weeks = history_weeks.min(u32::try_from(g.days / 7).unwrap_or(0).saturating_sub(1));
    if weeks > 0 {
        let history = DayOptions {
            sources: vec![],
            steps: vec![Step::Features, Step::Score, Step::Analytics],
            retrain: false,
            strict: false,
        };
        // every second week from `weeks` before: enough points for a line at half the cost of
        // every week (13 weeks reach the benchmarks' 90-day comparison)
        let from = g.end - chrono::Duration::weeks(i64::from(weeks));
        let to = g.end - chrono::Duration::days(1);
        for d in runner::backfill_dates(from, to, 14)? {
            runner::run(&lake, &ctx.settings, d, &history, &ctx.audit, &runner::Quiet).await?;
            tracing::info!(as_of = %d, "history");
        }
        crate::out!(
            "History: features, scores and analytics every two weeks over the {weeks} weeks before {}, for the trends.",
            g.end
        );
    }
    Ok(Summary::succeeded("run").merge(summary))
}
