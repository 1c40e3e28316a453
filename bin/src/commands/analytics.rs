//! `cslake analytics`, `cslake publish`, `cslake report` and `cslake account`.

use std::path::PathBuf;

use chrono::NaiveDate;
use cslake_pipeline::analytics::{self as job, account as workbench, publish as pg, report as exec};
use cslake_pipeline::lake::ops::audited;

use super::Ctx;
use crate::output;
use crate::summary::Summary;

/// `cslake analytics --as-of D`: the tables BI tools read.
pub async fn analytics(ctx: &Ctx, d: NaiveDate) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let (r, run) = audited(&lake, ctx.run("analytics", Some(d)), async |run| {
        job::analytics(&lake, &ctx.settings, d, run).await
    })
    .await?;
    output::analysed(&r);
    Ok(Summary::succeeded("analytics").run(&run).with("analytics", &r))
}

/// `cslake publish --as-of D`: the day's output tables into PostgreSQL.
pub async fn publish(ctx: &Ctx, d: NaiveDate) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let (r, run) = audited(&lake, ctx.run("publish", Some(d)), async |run| {
        pg::publish(&lake, &ctx.settings, d, run).await
    })
    .await?;
    output::published(&r);
    Ok(Summary::succeeded("publish").run(&run).with("publish", &r))
}

/// `cslake report --as-of D [--deliver]`: the executive report as PDF and HTML.
pub async fn report(
    ctx: &Ctx,
    d: NaiveDate,
    formats: &[String],
    out: PathBuf,
    deliver: bool,
) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let built = exec::build(&lake, &ctx.settings, d).await?;
    let r = exec::write(built, formats, &out)?;
    let deliveries = if deliver {
        exec::deliver(&ctx.settings, &r).await?
    } else {
        Vec::new()
    };
    output::reported(&r, &deliveries);
    let failed = deliveries.iter().filter(|d| !d.sent).count();
    let summary = Summary::succeeded("report")
        .with("report", &r)
        .with("deliveries", &deliveries);
    Ok(if failed > 0 {
        summary.unsuccessful(format!(
            "{failed} of {} report deliveries failed",
            deliveries.len()
        ))
    } else {
        summary
    })
}

/// `cslake account ID`: the account workbench.
pub async fn account(ctx: &Ctx, id: &str, as_of: Option<NaiveDate>) -> anyhow::Result<Summary> {
    let a = workbench::account(&ctx.lake().await?, id, as_of).await?;
    output::account(&a);
    Ok(Summary::succeeded("account").with("account", &a))
}
