//! What the CLI prints on stdout for people; the last line is always the JSON summary.

use std::path::Path;
use std::str::FromStr;

use cslake_pipeline::demo::GenStats;
use cslake_pipeline::features::ViewInfo;
use cslake_pipeline::ingest::IngestReport;
use cslake_pipeline::score::ScoreReport;
use cslake_pipeline::train::TrainReport;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::pretty::pretty_format_batches;

use crate::out;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            o => Err(format!("unknown format '{o}' (expected table, csv or json)")),
        }
    }
}

/// Standard output that ends the process quietly once the reader is gone (`| head`).
struct QuietStdout;

impl std::io::Write for QuietStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::io::stdout().write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            r => r,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match std::io::stdout().flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            r => r,
        }
    }
}

pub fn print_batches(batches: &[RecordBatch], format: Format) -> anyhow::Result<usize> {
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    match format {
        Format::Table => out!("{}", pretty_format_batches(batches)?),
        Format::Csv => {
            let mut w = deltalake::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(QuietStdout);
            for b in batches {
                w.write(&flatten_nested(b)?)?;
            }
        }
        Format::Json => {
            let mut w = deltalake::arrow::json::LineDelimitedWriter::new(QuietStdout);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(rows)
}

pub fn generated(stats: &GenStats, out: &Path) {
    out!("Generated {} files in {}:", stats.files, out.display());
    // the generator has no CRM deals: tables it leaves empty are not listed
    for (t, n) in stats.tables.iter().filter(|(_, n)| *n > 0) {
        out!("  {t:<14} {n:>10} rows");
    }
}

pub fn ingested(r: &IngestReport) {
    out!(
        "Landed from {}: {} rows read, {} rejected (see ops.quarantine)",
        r.source,
        r.read,
        r.rejected
    );
    for t in &r.tables {
        if t.unchanged_files > 0 && t.files == 0 {
            out!(
                "  core.{:<14} {} file(s) unchanged since they were loaded",
                t.table,
                t.unchanged_files
            );
        }
        if t.pages > 0 {
            out!(
                "  core.{:<14} {:>3} page(s) {:>10} read {:>6} rejected {:>10} new {:>8} changed",
                t.table,
                t.pages,
                t.read,
                t.rejected,
                t.inserted,
                t.updated
            );
        }
        if t.files > 0 {
            out!(
                "  core.{:<14} {:>3} file(s) {:>10} read {:>6} rejected {:>10} new {:>8} changed",
                t.table,
                t.files,
                t.read,
                t.rejected,
                t.inserted,
                t.updated
            );
        }
        if t.duplicates > 0 {
            out!(
                "  core.{:<14} {} duplicate event(s) not landed again: the table or this load already holds their {}",
                t.table,
                t.duplicates,
                cslake_pipeline::lake::schema::core_table(&t.table).map_or("key", |s| s.key)
            );
        }
        if t.erased + t.expired > 0 {
            out!(
                "  core.{:<14} not landed: {} row(s) of erased subjects, {} past the table's retention",
                t.table,
                t.erased,
                t.expired
            );
        }
    }
}

pub fn trained(r: &TrainReport) {
    let m = &r.test;
    let verdict = if r.promoted {
        "now the current model"
    } else {
        "NOT promoted"
    };
    out!(
        "Trained {} on {} rows at {} observation dates ({} churned).",
        r.version,
        r.rows,
        r.observation_dates,
        r.positives
    );
    if let Some([a, b]) = r.windows.get("test") {
        out!(
            "  Held-out window {a} .. {b} (never seen in training): {} rows, churn rate {:.1}%",
            m.rows,
            100.0 * m.base_rate
        );
    }
    out!(
        "  ROC AUC {:.3} | PR AUC {:.3} | Brier {:.4} | top-decile lift {:.2} | accuracy {:.3} (always 'stays': {:.3}) | recall {:.3}",
        m.roc_auc,
        m.pr_auc,
        m.brier,
        m.top_decile_lift,
        m.accuracy,
        m.majority_accuracy,
        m.recall
    );
    if !r.family_choice.is_empty() {
        out!("  Model: {}", r.family_choice);
    }
    out!("  Features: {} from {}", r.features, r.views.join(", "));
    if !r.skipped_views.is_empty() {
        out!(
            "  Skipped views (their data is not in the lake): {}",
            r.skipped_views.join("; ")
        );
    }
    if !r.seconds.is_empty() {
        let each: Vec<String> = r
            .fit_seconds
            .iter()
            .map(|(family, s)| format!("{family} {s:.1} s"))
            .collect();
        out!(
            "  Time: training sets {:.1} s, fitting {:.1} s (split fits: {}; backtest and expansion alongside)",
            r.seconds.get("training_sets").copied().unwrap_or_default(),
            r.seconds.get("fitting").copied().unwrap_or_default(),
            each.join(", ")
        );
    }
    if let Some(x) = &r.expansion {
        out!(
            "  Expansion propensity ({}): ROC AUC {:.3} | PR AUC {:.3} | base rate {:.1}% on its test window",
            x.family,
            x.test.roc_auc,
            x.test.pr_auc,
            x.test.base_rate * 100.0
        );
    }
    if !r.calibration.is_empty() {
        out!("  Calibration: {}", r.calibration);
    }
    if !r.backtest.is_empty() {
        out!("  Backtest, one model per fold trained only on earlier dates:");
        for f in &r.backtest {
            out!(
                "    {} .. {}: ROC AUC {:.3} | PR AUC {:.3} | lift {:.2} | {} rows, churn rate {:.1}%",
                f.test[0],
                f.test[1],
                f.metrics.roc_auc,
                f.metrics.pr_auc,
                f.metrics.top_decile_lift,
                f.metrics.rows,
                100.0 * f.metrics.base_rate
            );
        }
        let aucs: Vec<f64> = r.backtest.iter().map(|f| f.metrics.roc_auc).collect();
        let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
        let sd = (aucs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / aucs.len() as f64).sqrt();
        out!("    mean ROC AUC {mean:.3} ± {sd:.3}");
    }
    out!("  {}: {verdict} ({})", r.version, r.reason);
}

pub fn scored(r: &ScoreReport) {
    let bands = |b: &std::collections::BTreeMap<String, usize>| {
        b.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out!(
        "Scored {} accounts as of {} with {}.",
        r.accounts,
        r.as_of,
        r.model_version
    );
    out!("  Risk bands: {}", bands(&r.risk_bands));
    out!("  Health bands: {}", bands(&r.health_bands));
    out!(
        "  Opportunities: {} (seat expansions, and tier upgrades where the expansion model finds them likely), expected MRR {:.0}{}",
        r.opportunities,
        r.expansion_mrr,
        if r.expansion_model {
            ""
        } else {
            " (no expansion model: product fit alone)"
        }
    );
    out!("  Top at-risk accounts:");
    for a in &r.top_at_risk {
        out!(
            "    {} {:<32} risk {:>3}  MRR {:>8.0}",
            a.account_id,
            a.name,
            a.risk_score,
            a.mrr
        );
        for reason in &a.reasons {
            out!("        - {reason}");
        }
    }
}

/// CSV has no nested values: lists and structs are written as their text form.
fn flatten_nested(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::arrow::util::display::array_value_to_string;

    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.data_type().is_nested() {
            let text: Vec<Option<String>> = (0..c.len())
                .map(|i| {
                    if c.is_null(i) {
                        Ok(None)
                    } else {
                        array_value_to_string(c, i).map(Some)
                    }
                })
                .collect::<Result<_, _>>()?;
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(StringArray::from(text)));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

pub fn views(views: &[ViewInfo]) {
    out!(
        "{:<18} {:>8} {:>9} {:<11} {:<12} {:>8}  sources",
        "view",
        "features",
        "available",
        "daily cost",
        "last as-of",
        "rows"
    );
    for v in views {
        out!(
            "{:<18} {:>8} {:>9} {:<11} {:<12} {:>8}  {}",
            v.name,
            v.features.len(),
            if v.available { "yes" } else { "no" },
            v.maintenance.as_str(),
            v.last_as_of.as_deref().unwrap_or("-"),
            v.last_rows.map_or("-".to_string(), |r| r.to_string()),
            v.sources.join(", ")
        );
    }
}

pub fn view(v: &ViewInfo) {
    out!("{} ({}): {}", v.name, v.origin, v.description);
    out!(
        "  entity: {}   owner: {}   sources: {}",
        v.entity,
        if v.owner.is_empty() { "-" } else { &v.owner },
        v.sources.join(", ")
    );
    match v.maintenance {
        cslake_features::Maintenance::Step => out!(
            "  daily cost: one day (its state is advanced from the day before; distinct counts read their window of the rollups)"
        ),
        cslake_features::Maintenance::Window => {
            out!("  daily cost: its window (reads the daily usage rollups, not raw events)")
        }
        cslake_features::Maintenance::History => out!(
            "  daily cost: the whole history (reads usage_events itself: use usage_daily / usage_daily_users)"
        ),
    }
    match &v.last_as_of {
        Some(d) => out!(
            "  materialised for {} date(s), last {d} with {} rows",
            v.materialised_dates,
            v.last_rows.unwrap_or(0)
        ),
        None => out!("  not materialised yet"),
    }
    for (name, label, ty) in &v.features {
        out!("  {name:<28} {:<10} {label}", ty.as_deref().unwrap_or("-"));
    }
}

pub fn erased(r: &cslake_pipeline::admin::gdpr::ErasureReport) {
    let verb = if r.dry_run { "Would erase" } else { "Erased" };
    out!("{verb} {} from {} table(s)", r.subject, r.tables.len());
    if !r.backups.is_empty() {
        out!(
            "  recorded in {} backup(s), so that a restore erases it again: {}",
            r.backups.len(),
            r.backups.join(", ")
        );
    }
    for t in &r.tables {
        out!(
            "  {:<26} {:>7} rows deleted {:>7} blanked {:>5} old files and log entries purged",
            t.table,
            t.deleted,
            t.blanked,
            t.files_purged
        );
    }
}

pub fn maintained(r: &cslake_pipeline::admin::maintain::MaintainReport) {
    let verb = if r.dry_run { "Would maintain" } else { "Maintained" };
    out!(
        "{verb} {} table(s) as of {} (history kept: {} days)",
        r.tables.len(),
        r.as_of,
        r.keep_history_days
    );
    for t in &r.tables {
        let retention = t
            .retention_days
            .map(|d| format!("{d}d"))
            .unwrap_or_else(|| "-".into());
        out!(
            "  {:<26} retention {:>6} {:>9} expired {:>4} files compacted {:>4} vacuumed {:>4} log entries removed",
            t.table,
            retention,
            t.expired_rows,
            t.files_compacted,
            t.files_vacuumed,
            t.log_entries_removed
        );
    }
}

pub fn acted(r: &cslake_pipeline::act::ActReport) {
    let verb = if r.dry_run { "Would act" } else { "Acted" };
    out!(
        "{verb} on {} scored accounts as of {}: {} enrolled, {} exited, {} completed, {} still active.",
        r.accounts,
        r.as_of,
        r.enrolled,
        r.exited,
        r.completed,
        r.active
    );
    out!(
        "  Tasks created {}, overdue {}; alerts {}, re-notified {}; campaign assignments {}.",
        r.tasks_created,
        r.tasks_overdue,
        r.alerts_created,
        r.renotified,
        r.campaign_assignments
    );
    if r.content_sends > 0 {
        out!(
            "  Content sends {} ({} with nothing left to send).",
            r.content_sends,
            r.content_nothing_to_send
        );
    }
    if !r.dry_run {
        let d = &r.deliveries;
        out!(
            "  Deliveries: {} sent, {} failed (retried next run), {} dead-lettered, {} already sent before.",
            d.sent,
            d.failed,
            d.dead,
            d.already_sent
        );
    }
    for w in &r.warnings {
        out!("  warning: {w}");
    }
    for c in &r.crm {
        out!(
            "  CRM {}: {} records updated ({} fields), {} unchanged, {} failed; {} tasks created.",
            c.name,
            c.records_updated,
            c.fields_sent,
            c.unchanged,
            c.failed,
            c.tasks_created
        );
    }
    for p in &r.playbooks {
        out!(
            "  {} v{}: {} matched, {} enrolled, {} exited, {} completed, {} steps run",
            p.playbook,
            p.version,
            p.matched,
            p.enrolled,
            p.exited,
            p.completed,
            p.steps_run
        );
        let shown = if r.dry_run { usize::MAX } else { 3 };
        for f in p.enrolments.iter().take(shown) {
            out!("      {} {}: {}", f.account_id, f.name, f.reason);
            for s in &f.steps_today {
                out!("        -> {s}");
            }
        }
    }
}

pub fn playbooks(entries: &[cslake_pipeline::act::commands::LibraryEntry]) {
    for e in entries {
        out!(
            "{} {} v{} [{}]{} — {}",
            e.kind,
            e.name,
            e.version,
            e.category.as_deref().unwrap_or("-"),
            if e.enabled { "" } else { " (disabled)" },
            e.origin
        );
        out!("    when: {}", e.trigger);
        for s in &e.steps {
            out!("    {s}");
        }
    }
}

pub fn campaigns(arms: &[cslake_pipeline::act::stats::ArmReport]) {
    if arms.is_empty() {
        out!("No campaign assignments yet.");
        return;
    }
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
    let ci = |v: Option<(f64, f64)>| {
        v.map_or(String::new(), |(a, b)| {
            format!(" [{:+.1}, {:+.1}]", a * 100.0, b * 100.0)
        })
    };
    for a in arms {
        out!(
            "{} / {:<10} accounts {:>5} (matured {:>5})  retained {:>6}  expanded {:>6}  engagement {:>7}{}",
            a.campaign,
            a.arm,
            a.accounts,
            a.matured,
            pct(a.retention_rate),
            pct(a.expansion_rate),
            pct(a.engagement_change),
            match a.retention_lift {
                Some(l) => format!(
                    "  retention lift {:+.1} pts{}, engagement lift {}{}",
                    l * 100.0,
                    ci(a.retention_lift_ci),
                    a.engagement_lift
                        .map_or("-".into(), |v| format!("{:+.1} pts", v * 100.0)),
                    ci(a.engagement_lift_ci)
                ),
                None => String::new(),
            }
        );
    }
}

pub fn analysed(r: &cslake_pipeline::analytics::AnalyticsReport) {
    let t = &r.total;
    let num = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
    out!(
        "Analytics as of {}: {} financial-impact rows, {} CSMs in team_performance, {} teams, {} goal rows, {} benchmark rows.",
        r.as_of,
        r.financial_impact_rows,
        r.team_performance_rows,
        r.team_summary_rows,
        r.team_goals_rows,
        r.benchmarks_rows
    );
    out!(
        "  MRR {:.0} | revenue at risk {:.0}/month ({:.0}/year) | expansion pipeline {:.0}/month | GRR 12m {:.1}% | NRR 12m {:.1}% | logo churn 12m {:.1}%",
        num("mrr"),
        num("revenue_at_risk_monthly"),
        num("revenue_at_risk_annual"),
        num("expansion_pipeline_mrr"),
        num("grr_12m") * 100.0,
        num("nrr_12m") * 100.0,
        num("logo_churn_12m") * 100.0
    );
}

pub fn account(a: &serde_json::Value) {
    let t = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    };
    let acc = &a["account"];
    out!(
        "{} {} — {} / {} — {} seats, MRR {} — CSM {} — renews {}",
        t(&acc["account_id"]),
        t(&acc["name"]),
        t(&acc["segment"]),
        t(&acc["plan"]),
        t(&acc["seats"]),
        t(&acc["mrr"]),
        t(&acc["csm_id"]),
        t(&acc["contract_end"])
    );
    if a["risk"].is_object() {
        let r = &a["risk"];
        out!(
            "Risk {} ({}) on {} with {}",
            t(&r["risk_score"]),
            t(&r["risk_band"]),
            t(&r["as_of_date"]),
            t(&r["model_version"])
        );
        for f in r["factors"].as_array().into_iter().flatten() {
            out!("  - {}", t(&f["reason"]));
        }
    }
    if let Some(h) = a["health"].as_array()
        && !h.is_empty()
    {
        let points: Vec<String> = h
            .iter()
            .map(|p| format!("{} {}", t(&p["as_of_date"]), t(&p["health_score"])))
            .collect();
        out!("Health: {}", points.join(" → "));
    }
    for (title, key, fields) in [
        (
            "Interactions",
            "interactions",
            &["occurred_at", "kind", "subject"][..],
        ),
        (
            "Playbooks",
            "playbooks",
            &["playbook", "status", "enrolled_on", "trigger_reason"][..],
        ),
        (
            "Open tasks",
            "open_tasks",
            &["task_id", "title", "assignee", "due_date", "status"][..],
        ),
        (
            "Open alerts",
            "open_alerts",
            &["alert_id", "priority", "title"][..],
        ),
        (
            "Opportunities",
            "opportunities",
            &["kind", "product_id", "expected_mrr", "reason"][..],
        ),
    ] {
        let Some(list) = a[key].as_array().filter(|l| !l.is_empty()) else {
            continue;
        };
        out!("{title}:");
        for row in list {
            out!(
                "  {}",
                fields.iter().map(|f| t(&row[*f])).collect::<Vec<_>>().join(" | ")
            );
        }
    }
    if a["forecast"].is_object() {
        let f = &a["forecast"];
        out!(
            "Forecast over the label horizon: {} of {} MRR expected to stay ({} at risk), {} expected expansion",
            t(&f["expected_retained_mrr"]),
            t(&f["mrr"]),
            t(&f["revenue_at_risk_mrr"]),
            t(&f["expected_expansion_mrr"])
        );
    }
}

pub fn reported(
    r: &cslake_pipeline::analytics::report::ReportOutput,
    deliveries: &[cslake_pipeline::analytics::report::ReportDelivery],
) {
    out!("Report as of {}: {} page(s).", r.as_of, r.pages);
    for f in &r.files {
        out!("  wrote {}", f.display());
    }
    for p in &r.layout_problems {
        out!("  layout: {p}");
    }
    for d in deliveries {
        if d.sent {
            out!("  delivered to {} ({})", d.channel, d.detail);
        } else {
            out!("  NOT delivered to {}: {}", d.channel, d.detail);
        }
    }
}

pub fn published(r: &cslake_pipeline::analytics::publish::PublishReport) {
    out!("Published {} to {}:", r.as_of, r.target);
    for t in &r.tables {
        let mut extra = Vec::new();
        if t.created {
            extra.push("created".to_string());
        }
        if !t.added_columns.is_empty() {
            extra.push(format!("added columns {}", t.added_columns.join(", ")));
        }
        if t.deleted > 0 {
            extra.push(format!("{} stale rows removed", t.deleted));
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join("; "))
        };
        out!("  {:<40} {:>7} rows{extra}", t.table, t.rows);
    }
    for m in &r.missing {
        out!("  {m}: not in the lake yet, skipped");
    }
}

pub fn training_set(r: &cslake_pipeline::train::TrainingSetReport) {
    out!(
        "Training set as of {}: {} rows ({} churned) at {} observation dates {}..{}, {} features; label: {}",
        r.as_of,
        r.rows,
        r.positives,
        r.observation_dates,
        r.first,
        r.last,
        r.features,
        r.label
    );
    if let Some(f) = &r.out {
        out!("  written to {f} and {}", r.table);
    }
}

pub fn evaluated(r: &cslake_pipeline::train::EvaluateReport) {
    out!(
        "Evaluated on {} rows ({} churned); test window {} .. {}",
        r.rows,
        r.positives,
        r.test_window[0],
        r.test_window[1]
    );
    out!(
        "  {:<34} {:>8} {:>8} {:>8} {:>6}",
        "",
        "ROC AUC",
        "PR AUC",
        "Brier",
        "lift"
    );
    let trainer = format!("cslake trainer ({})", r.family);
    for (name, m) in [
        (trainer.as_str(), &r.model),
        ("plain logistic regression", &r.reference),
        ("default gradient-boosted trees", &r.reference_gbdt),
    ] {
        out!(
            "  {:<34} {:>8.3} {:>8.3} {:>8.4} {:>6.2}",
            name,
            m.roc_auc,
            m.pr_auc,
            m.brier,
            m.top_decile_lift
        );
    }
    out!("  model: {}", r.family_choice);
    out!("  calibration: {}", r.calibration);
    out!("  verdict: the trainer {}", r.verdict);
    if let Some(f) = &r.out {
        out!("  training set written to {f}");
    }
}

pub fn verified(r: &cslake_pipeline::admin::backup::VerifyReport, at: &str) {
    out!(
        "Checked {} objects of {} generation(s) of the backup at {}: {} damaged or missing",
        r.checked,
        r.generations,
        at,
        r.bad.len()
    );
    for b in &r.bad {
        out!("  damaged or missing: {b}");
    }
}

/// A size in bytes for people: `812 B`, `4.2 KB`, `1.3 MB`, `2.0 GB` (powers of 1024).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let (mut v, mut unit) = (n as f64, 0);
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
