//! Success tracking for BI: `actions.playbook_stats` (enrolments, completion and the outcome of
//! enrolled accounts per playbook and version) and `actions.campaign_results` / `cslake campaigns
//! report` (retention, expansion and engagement per arm against the control group).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Duration as Days, NaiveDate};
use deltalake::arrow::array::RecordBatch;

use crate::act::day::{Day, day_table};
use crate::act::library::Library;
use crate::act::library::library;
use crate::act::tables::{Alert, Assignment, Cols, Enrolment, Task, read};
use crate::lake::query::{sql, strings};
use crate::{Error, Lake, Result, Settings};

/// Per playbook and version: enrolments, completion and the outcome of enrolled accounts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PlaybookStats {
    pub playbook: String,
    pub playbook_version: i64,
    pub category: Option<String>,
    pub enrolled: i64,
    pub active: i64,
    pub completed: i64,
    pub exited: i64,
    pub cancelled: i64,
    pub tasks_created: i64,
    pub tasks_completed: i64,
    pub tasks_overdue: i64,
    pub task_completion_rate: Option<f64>,
    pub alerts: i64,
    pub churned: i64,
    pub renewed: i64,
    pub expanded: i64,
    pub retention_rate: Option<f64>,
}

pub(crate) fn playbook_stats(
    settings: &Settings,
    _lib: &Library,
    day: &Day,
    enrolments: &[Enrolment],
    tasks: &[Task],
    alerts: &[Alert],
) -> Vec<PlaybookStats> {
    let min_increase = settings.file.opportunities.expansion_min_increase_pct as f64 / 100.0;
    let mut by: BTreeMap<(String, i64), PlaybookStats> = BTreeMap::new();
    let playbook_of: HashMap<&str, (&str, i64)> = enrolments
        .iter()
        .map(|e| {
            (
                e.enrollment_id.as_str(),
                (e.playbook.as_str(), e.playbook_version),
            )
        })
        .collect();
    for e in enrolments {
        let s = by
            .entry((e.playbook.clone(), e.playbook_version))
            .or_insert_with(|| PlaybookStats {
                playbook: e.playbook.clone(),
                playbook_version: e.playbook_version,
                category: e.category.clone(),
                ..Default::default()
            });
        s.enrolled += 1;
        match e.status.as_str() {
            "active" => s.active += 1,
            "completed" => s.completed += 1,
            "exited" => s.exited += 1,
            _ => s.cancelled += 1,
        }
        match day.row(&e.account_id) {
            None => s.churned += 1,
            Some(i) => {
                if e.renewal_date
                    .is_some_and(|r| r > e.enrolled_on && r <= day.as_of)
                {
                    s.renewed += 1;
                }
                if let (Some(before), Some(now)) = (e.mrr_at_enrolment, day.num("mrr", i))
                    && before > 0.0
                    && now >= before * (1.0 + min_increase)
                {
                    s.expanded += 1;
                }
            }
        }
    }
    // tasks and alerts as they stood at the end of the day (a re-run after later activity
    // gives the same numbers)
    let ended: HashMap<&str, NaiveDate> = enrolments
        .iter()
        .filter_map(|e| Some((e.enrollment_id.as_str(), e.ended_on?)))
        .collect();
    for t in tasks {
        let Some(e) = t.enrollment_id.as_deref() else {
            continue;
        };
        let (Some((p, v)), Some(status)) =
            (playbook_of.get(e), t.status_on(day.as_of, ended.get(e).copied()))
        else {
            continue;
        };
        if let Some(s) = by.get_mut(&((*p).to_string(), *v)) {
            s.tasks_created += 1;
            match status {
                "completed" => s.tasks_completed += 1,
                "overdue" => s.tasks_overdue += 1,
                _ => {}
            }
        }
    }
    for a in alerts.iter().filter(|a| a.as_of_date <= day.as_of) {
        let Some((p, v)) = a.enrollment_id.as_deref().and_then(|e| playbook_of.get(e)) else {
            continue;
        };
        if let Some(s) = by.get_mut(&((*p).to_string(), *v)) {
            s.alerts += 1;
        }
    }
    by.into_values()
        .map(|mut s| {
            s.task_completion_rate =
                (s.tasks_created > 0).then(|| s.tasks_completed as f64 / s.tasks_created as f64);
            s.retention_rate = (s.enrolled > 0).then(|| 1.0 - s.churned as f64 / s.enrolled as f64);
            s
        })
        .collect()
}

pub(crate) fn stats_batch(rows: &[PlaybookStats], as_of: NaiveDate, run_id: &str) -> Result<RecordBatch> {
    let n = rows.len();
    let i = |f: fn(&PlaybookStats) -> i64| rows.iter().map(|r| Some(f(r))).collect::<Vec<_>>();
    Cols::default()
        .key("playbook", rows.iter().map(|r| r.playbook.clone()).collect())
        .int("playbook_version", i(|r| r.playbook_version))
        .str("category", rows.iter().map(|r| r.category.clone()).collect())
        .int("enrolled", i(|r| r.enrolled))
        .int("active", i(|r| r.active))
        .int("completed", i(|r| r.completed))
        .int("exited", i(|r| r.exited))
        .int("cancelled", i(|r| r.cancelled))
        .int("tasks_created", i(|r| r.tasks_created))
        .int("tasks_completed", i(|r| r.tasks_completed))
        .int("tasks_overdue", i(|r| r.tasks_overdue))
        .float(
            "task_completion_rate",
            rows.iter().map(|r| r.task_completion_rate).collect(),
        )
        .int("alerts", i(|r| r.alerts))
        .int("churned", i(|r| r.churned))
        .int("renewed", i(|r| r.renewed))
        .int("expanded", i(|r| r.expanded))
        .float("retention_rate", rows.iter().map(|r| r.retention_rate).collect())
        .date("as_of_date", vec![Some(as_of); n])
        .key("_run_id", vec![run_id.to_string(); n])
        .batch()
}

/// One arm of a campaign against its control group.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ArmReport {
    pub campaign: String,
    pub arm: String,
    pub accounts: usize,
    /// Accounts whose outcome window has fully passed.
    pub matured: usize,
    pub retained: usize,
    pub retention_rate: Option<f64>,
    pub expanded: usize,
    pub expansion_rate: Option<f64>,
    /// Mean relative change of the engagement feature since assignment.
    pub engagement_change: Option<f64>,
    /// Retention rate minus control's, with a 95% confidence interval (normal approximation).
    pub retention_lift: Option<f64>,
    pub retention_lift_ci: Option<(f64, f64)>,
    pub engagement_lift: Option<f64>,
    pub engagement_lift_ci: Option<(f64, f64)>,
}

pub(crate) fn arms_batch(rows: &[ArmReport], as_of: NaiveDate, run_id: &str) -> Result<RecordBatch> {
    let n = rows.len();
    let lo = |v: Option<(f64, f64)>| v.map(|x| x.0);
    let hi = |v: Option<(f64, f64)>| v.map(|x| x.1);
    Cols::default()
        .key("campaign", rows.iter().map(|r| r.campaign.clone()).collect())
        .key("arm", rows.iter().map(|r| r.arm.clone()).collect())
        .int("accounts", rows.iter().map(|r| Some(r.accounts as i64)).collect())
        .int("matured", rows.iter().map(|r| Some(r.matured as i64)).collect())
        .int("retained", rows.iter().map(|r| Some(r.retained as i64)).collect())
        .float("retention_rate", rows.iter().map(|r| r.retention_rate).collect())
        .int("expanded", rows.iter().map(|r| Some(r.expanded as i64)).collect())
        .float("expansion_rate", rows.iter().map(|r| r.expansion_rate).collect())
        .float(
            "engagement_change",
            rows.iter().map(|r| r.engagement_change).collect(),
        )
        .float("retention_lift", rows.iter().map(|r| r.retention_lift).collect())
        .float(
            "retention_lift_low",
            rows.iter().map(|r| lo(r.retention_lift_ci)).collect(),
        )
        .float(
            "retention_lift_high",
            rows.iter().map(|r| hi(r.retention_lift_ci)).collect(),
        )
        .float(
            "engagement_lift",
            rows.iter().map(|r| r.engagement_lift).collect(),
        )
        .float(
            "engagement_lift_low",
            rows.iter().map(|r| lo(r.engagement_lift_ci)).collect(),
        )
        .float(
            "engagement_lift_high",
            rows.iter().map(|r| hi(r.engagement_lift_ci)).collect(),
        )
        .date("as_of_date", vec![Some(as_of); n])
        .key("_run_id", vec![run_id.to_string(); n])
        .batch()
}

fn mean_var(v: &[f64]) -> Option<(f64, f64, usize)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((m, var, v.len()))
}

/// `cslake campaigns report`: per campaign and arm, retention, expansion and engagement change
/// of the assigned accounts as of `as_of` (or the latest scored date), against the control group.
pub async fn campaign_report(
    lake: &Lake,
    settings: &Settings,
    as_of: Option<NaiveDate>,
) -> Result<Vec<ArmReport>> {
    let lib = library(settings)?;
    let ctx = lake.session().await?;
    let assignments = Assignment::read(&read(&ctx, "actions.campaign_assignments", "").await?)?;
    if assignments.is_empty() {
        return Ok(vec![]);
    }
    let date = match as_of {
        Some(d) => d,
        None => {
            let b = sql(
                &ctx,
                "SELECT CAST(MAX(as_of_date) AS VARCHAR) AS d FROM scores.risk_scores",
            )
            .await?;
            b.first()
                .and_then(|b| strings(b, "d").ok())
                .and_then(|v| v.into_iter().next().flatten())
                .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
                .ok_or_else(|| Error::Job("no scores to measure campaigns against".into()))?
        }
    };
    let day = day_table(&ctx, settings, date, &BTreeSet::new()).await?;
    Ok(campaign_arms(settings, &lib, &assignments, &day))
}

/// Per campaign and arm, the outcomes of the accounts assigned up to the day.
pub(crate) fn campaign_arms(
    settings: &Settings,
    lib: &Library,
    assignments: &[Assignment],
    day: &Day,
) -> Vec<ArmReport> {
    let date = day.as_of;
    let min_increase = settings.file.opportunities.expansion_min_increase_pct as f64 / 100.0;
    // (campaign, arm) -> (retained flags, expanded flags, engagement changes, matured)
    type Acc = (Vec<f64>, Vec<f64>, Vec<f64>, usize);
    let mut by: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for a in assignments.iter().filter(|a| a.assigned_on <= date) {
        let outcome_days = lib.campaign(&a.campaign).map_or(90, |c| c.outcome_days);
        let feature = lib
            .campaign(&a.campaign)
            .map_or("events_30d".to_string(), |c| c.engagement_feature.clone());
        let e = by.entry((a.campaign.clone(), a.arm.clone())).or_default();
        if a.assigned_on + Days::days(outcome_days) <= date {
            e.3 += 1;
        }
        match day.row(&a.account_id) {
            None => {
                e.0.push(0.0);
                e.1.push(0.0);
            }
            Some(i) => {
                e.0.push(1.0);
                let expanded = matches!((a.mrr_at_assignment, day.num("mrr", i)), (Some(b), Some(n)) if b > 0.0 && n >= b * (1.0 + min_increase));
                e.1.push(if expanded { 1.0 } else { 0.0 });
                if let (Some(b), Some(n)) = (a.engagement_at_assignment, day.num(&feature, i))
                    && b > 0.0
                {
                    e.2.push(n / b - 1.0);
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((campaign, arm), (ret, exp, eng, matured)) in &by {
        let control = by.get(&(campaign.clone(), "control".to_string()));
        let r = mean_var(ret);
        let mut rep = ArmReport {
            campaign: campaign.clone(),
            arm: arm.clone(),
            accounts: ret.len(),
            matured: *matured,
            retained: ret.iter().filter(|x| **x > 0.5).count(),
            retention_rate: r.map(|x| x.0),
            expanded: exp.iter().filter(|x| **x > 0.5).count(),
            expansion_rate: mean_var(exp).map(|x| x.0),
            engagement_change: mean_var(eng).map(|x| x.0),
            ..Default::default()
        };
        if arm != "control"
            && let Some((cret, _, ceng, _)) = control
        {
            if let (Some((p1, _, n1)), Some((p2, _, n2))) = (r, mean_var(cret)) {
                let diff = p1 - p2;
                let se = (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).sqrt();
                rep.retention_lift = Some(diff);
                rep.retention_lift_ci = Some((diff - 1.96 * se, diff + 1.96 * se));
            }
            if let (Some((m1, v1, n1)), Some((m2, v2, n2))) = (mean_var(eng), mean_var(ceng)) {
                let diff = m1 - m2;
                let se = (v1 / n1 as f64 + v2 / n2 as f64).sqrt();
                rep.engagement_lift = Some(diff);
                rep.engagement_lift_ci = Some((diff - 1.96 * se, diff + 1.96 * se));
            }
        }
        out.push(rep);
    }
    out
}
