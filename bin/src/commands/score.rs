//! `cslake score`.

use chrono::NaiveDate;
use cslake_pipeline::lake::ops::audited;
use cslake_pipeline::score as job;

use super::Ctx;
use crate::output;
use crate::summary::Summary;

/// `cslake score --as-of D`: risk, health and opportunities for every customer.
pub async fn score(ctx: &Ctx, d: NaiveDate) -> anyhow::Result<Summary> {
    // the configuration's own mistakes first: they do not depend on the lake
    cslake_pipeline::features::health_profiles(&ctx.settings)?;
    let lake = ctx.lake().await?;
    let (report, run) = audited(&lake, ctx.run("score", Some(d)), async |run| {
        job::score(&lake, &ctx.settings, d, run).await
    })
    .await?;
    output::scored(&report);
    Ok(Summary::succeeded("score").run(&run).with("scores", &report))
}
