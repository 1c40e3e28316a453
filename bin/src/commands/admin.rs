//! `cslake maintain`, `backup`, `restore`, `gdpr` and `pii rotate`.

use chrono::NaiveDate;
use cslake_pipeline::admin::{backup as copies, gdpr as subject_requests, maintain as housekeeping};
use cslake_pipeline::lake::ops::{audited, finish};
use cslake_pipeline::lake::pii::Protector;
use cslake_pipeline::{Error, RunContext};

use super::Ctx;
use crate::cli::{GdprAction, PiiAction};
use crate::out;
use crate::output;
use crate::summary::Summary;

/// `cslake backup --to URL [--verify]`.
pub async fn backup(ctx: &Ctx, to: &str, verify: bool) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let storage = &ctx.settings.file.storage;
    if verify {
        let report = copies::verify(to, storage).await?;
        output::verified(&report, to);
        let summary = Summary::succeeded("backup verify").with("verify", &report);
        return Ok(if report.bad.is_empty() {
            summary
        } else {
            summary.unsuccessful(format!(
                "{} object(s) of the backup at {to} do not match the manifest",
                report.bad.len()
            ))
        });
    }
    let retention = copies::Retention::from_settings(&ctx.settings);
    let (report, run) = audited(&lake, ctx.run("backup", None), async |run| {
        copies::backup(&lake, to, storage, retention, run).await
    })
    .await?;
    out!(
        "Backed up to {} as generation {}: {} objects copied ({}), {} already there",
        report.to,
        report.generation,
        report.copied,
        output::bytes(report.bytes),
        report.unchanged
    );
    out!(
        "  {} generation(s) kept (the {} newest, {} daily, {} monthly, {} yearly); {} pruned with {} object(s) only they held",
        report.generations,
        retention.last,
        retention.daily,
        retention.monthly,
        retention.yearly,
        report.pruned.len(),
        report.objects_removed
    );
    Ok(Summary::succeeded("backup").run(&run).with("backup", &report))
}

/// `cslake restore --from URL [--table T]` or `--table T --version V`.
pub async fn restore(
    ctx: &Ctx,
    from: Option<String>,
    table: Option<String>,
    version: Option<u64>,
    generation: Option<String>,
    list: bool,
) -> anyhow::Result<Summary> {
    if let (Some(from), true) = (&from, list) {
        let gens = copies::generations(from, &ctx.settings.file.storage).await?;
        out!("{} generation(s) at {from}, oldest first:", gens.len());
        for (id, at, n) in &gens {
            let at = at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            out!("  {id:<24} {at:<24} {n:>7} objects");
        }
        let ids: Vec<&String> = gens.iter().map(|(id, _, _)| id).collect();
        return Ok(Summary::succeeded("restore --list").with("generations", ids));
    }
    // a lake restored from a backup may not exist yet; restoring a version needs the lake
    let lake = if from.is_some() {
        ctx.new_lake()?
    } else {
        ctx.lake().await?
    };
    match (from, table, version) {
        (_, Some(table), Some(version)) => {
            let (v, run) = audited(&lake, ctx.run("restore", None), async |run| {
                copies::restore_version(&lake, &table, version, run).await
            })
            .await?;
            out!(
                "Restored {table} to its version {version} (as its new version {})",
                v.unwrap_or_default()
            );
            Ok(Summary::succeeded("restore")
                .run(&run)
                .with("table", &table)
                .with("restored_version", version)
                .with("new_version", v))
        }
        (Some(from), table, None) => {
            // the audit table itself may come back from the backup: no `running` row first
            let (report, run) = finish(&lake, ctx.run("restore", None), async |run| {
                copies::restore_from(
                    &lake,
                    &from,
                    generation.as_deref(),
                    table.as_deref(),
                    &ctx.settings,
                    run,
                )
                .await
            })
            .await?;
            out!(
                "Restored {} table(s) from {}, generation {} ({} objects, checksums verified)",
                report.tables.len(),
                report.from,
                report.generation,
                report.objects
            );
            if report.erasures_recorded > 0 {
                out!(
                    "  {} erasure(s) recorded in the backup applied again: {} subject(s) found in the restored tables and erased",
                    report.erasures_recorded,
                    report.subjects_erased
                );
            }
            Ok(Summary::succeeded("restore").run(&run).with("restore", &report))
        }
        _ => Err(Error::Usage("restore: pass --from BACKUP, or --table T --version V".into()).into()),
    }
}

/// `cslake maintain [--as-of D] [--dry-run]`.
pub async fn maintain(ctx: &Ctx, as_of: Option<NaiveDate>, dry_run: bool) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let d = as_of.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let (report, run) = audited(&lake, ctx.run("maintain", Some(d)), async |run| {
        housekeeping::maintain(&lake, &ctx.settings, d, dry_run, run).await
    })
    .await?;
    output::maintained(&report);
    Ok(Summary::succeeded("maintain")
        .run(&run)
        .with("maintenance", &report))
}

/// `cslake gdpr erase | export`: the audit row names the subject only by its hash.
pub async fn gdpr(ctx: &Ctx, action: GdprAction) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let (command, subject) = match &action {
        GdprAction::Erase { subject, .. } => ("gdpr erase", subject.subject()),
        GdprAction::Export { subject, .. } => ("gdpr export", subject.subject()),
    };
    let raw = match &subject {
        subject_requests::Subject::Contact(c) | subject_requests::Subject::Account(c) => c.clone(),
    };
    let scrubbed: Vec<String> = ctx
        .audit
        .args
        .iter()
        .map(|a| a.replace(&raw, &subject.hashed()))
        .collect();
    let run = RunContext::new(command, &ctx.settings.actor, scrubbed, None);
    let pii = Protector::from_settings(&ctx.settings)?;
    match action {
        GdprAction::Erase { dry_run, .. } => {
            let (report, run) = audited(&lake, run, async |run| {
                let mut report = subject_requests::erase(&lake, &subject, pii.as_ref(), dry_run, run).await?;
                if !dry_run {
                    // every backup of the lake learns of it, so that no restore brings the subject back
                    let note = copies::ErasureNote {
                        run_id: run.run_id.clone(),
                        erased_at: chrono::Utc::now(),
                        identifiers: report.identifiers.clone(),
                    };
                    report.backups = copies::record_erasure(&lake, &note, &ctx.settings.file.storage).await?;
                }
                Ok(report)
            })
            .await?;
            output::erased(&report);
            Ok(Summary::succeeded("gdpr erase")
                .run(&run)
                .with("erasure", &report))
        }
        GdprAction::Export { out, .. } => {
            let (data, run) = audited(&lake, run, async |_| {
                subject_requests::export(&lake, &subject, pii.as_ref()).await
            })
            .await?;
            std::fs::write(&out, serde_json::to_string_pretty(&data)?).map_err(|source| Error::Io {
                path: out.display().to_string(),
                source,
            })?;
            let rows: serde_json::Map<String, serde_json::Value> = data["tables"]
                .as_object()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.clone(), v.as_array().map_or(0, Vec::len).into()))
                        .collect()
                })
                .unwrap_or_default();
            out!(
                "Wrote {} ({} tables with data on the subject)",
                out.display(),
                rows.len()
            );
            Ok(Summary::succeeded("gdpr export")
                .run(&run)
                .with("out", &out)
                .with("rows", rows))
        }
    }
}

/// `cslake pii rotate`.
pub async fn pii(ctx: &Ctx, action: PiiAction) -> anyhow::Result<Summary> {
    let PiiAction::Rotate = action;
    let lake = ctx.lake().await?;
    let pii = Protector::from_settings(&ctx.settings)?
        .ok_or_else(|| Error::Config("[pii] is not configured: nothing to rotate".into()))?;
    let (report, run) = audited(&lake, ctx.run("pii rotate", None), async |run| {
        subject_requests::rotate(&lake, &pii, run).await
    })
    .await?;
    out!("Re-encrypted under key {}:", report.key);
    for (t, n) in &report.tables {
        out!("  {t:<26} {n:>8} values");
    }
    Ok(Summary::succeeded("pii rotate")
        .run(&run)
        .with("rotation", &report))
}
