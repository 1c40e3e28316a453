//! `cslake generate` and `cslake ingest`.

use std::path::PathBuf;

use cslake_pipeline::day;
use cslake_pipeline::demo::{GenOptions, generate as gen_data};

use super::Ctx;
use crate::cli::GenArgs;
use crate::output;
use crate::summary::Summary;

/// The generator's options from the command line.
pub fn gen_options(g: &GenArgs, out: PathBuf) -> GenOptions {
    GenOptions {
        accounts: g.accounts,
        days: g.days,
        end: g.end,
        seed: g.seed,
        format: g.format,
        out,
        events_per_file: g.events_per_file,
        churn: g.churn,
    }
}

/// `cslake generate`: the demo data set alone.
pub fn generate(ctx: &Ctx, g: &GenArgs, out: PathBuf) -> anyhow::Result<Summary> {
    let stats = gen_data(&gen_options(g, out.clone()), &ctx.progress)?;
    output::generated(&stats, &out);
    Ok(Summary::succeeded("generate")
        .with("out", &out)
        .with("tables", &stats.tables)
        .with("files", stats.files))
}

/// `cslake ingest`: every configured source (or the one named), each its own audited run.
pub async fn ingest(ctx: &Ctx, source: Option<String>, full: bool) -> anyhow::Result<Summary> {
    let lake = ctx.new_lake()?;
    let sources = day::sources(&ctx.settings, source);
    let r = day::ingest(&lake, &ctx.settings, &sources, full, None, &ctx.audit, ctx).await?;
    Ok(Summary::succeeded("ingest").merge(r))
}
