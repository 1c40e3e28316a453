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
        let r = pg::publish(&lake, &ctx.settings, d, run).await?;
        // what went where, in the audit row
        let tables: Vec<String> = r
            .tables
            .iter()
            .map(|t| format!("{} ({} rows)", t.table, t.rows))
            .collect();
        run.note = Some(format!("published to {}: {}", r.target, tables.join(", ")));
        Ok(r)
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
        // what was sent where is in the audit row
        let run = ctx.run("report --deliver", Some(d));
        audited(&lake, run, async |run| {
            let sent = exec::deliver(&ctx.settings, &r).await?;
            let lines: Vec<String> = sent
                .iter()
                .map(|s| {
                    format!(
                        "{} {}: {}",
                        s.channel,
                        if s.sent { "sent" } else { "failed" },
                        s.detail
                    )
                })
                .collect();
            run.note = Some(format!("executive report of {d} delivered: {}", lines.join("; ")));
            Ok(sent)
        })
        .await?
        .0
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
