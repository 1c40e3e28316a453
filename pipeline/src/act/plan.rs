//! The playbook state machine of one day. Every SQL predicate of the library is evaluated first
//! ([`Predicates`]); [`plan`] is then a pure function of the day's table, those sets, the CSMs and
//! the state the lake holds, so its behaviour is tested without a lake.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Duration as Days, NaiveDate};
use deltalake::datafusion::prelude::SessionContext;
use sha2::{Digest, Sha256};

use crate::act::assignment::{Assigner, Csm};
use crate::act::day::Day;
use crate::act::library::{Campaign, Library, StepAction};
use crate::act::report::{ActReport, Firing, PlaybookDay};
use crate::act::tables::{Alert, Assignment, Enrolment, Task};
use crate::{Result, Settings};

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Everything the engine produced for the day, before writing.
#[derive(Default)]
pub struct Plan {
    /// Every enrolment after the day (the day's snapshot of `actions.playbook_runs`).
    pub enrolments: Vec<Enrolment>,
    pub new_tasks: Vec<Task>,
    /// Existing tasks whose status changed (cancelled, overdue).
    pub changed_tasks: Vec<Task>,
    pub new_alerts: Vec<Alert>,
    /// Open alerts of enrolments that ended today: resolved.
    pub resolved_alerts: Vec<Alert>,
    pub new_assignments: Vec<Assignment>,
    /// `send_content` steps run today; what they send is chosen when delivering.
    pub content_sends: Vec<ContentSend>,
    pub report: ActReport,
}

/// One `send_content` step of one enrolment. Its delivery key is derived from the enrolment and
/// the step, so a re-run of the day finds it sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentSend {
    /// `content:{enrollment_id}:{step number}`.
    pub key: String,
    pub enrollment_id: String,
    pub playbook: String,
    pub account_id: String,
    pub top: usize,
    /// Content ids the playbook offers first.
    pub listed: Vec<String>,
    pub channel: Option<String>,
    /// To the account's contacts (resolved when delivering).
    pub to_contacts: bool,
    /// Other recipients, resolved (the CSM, the team lead, literal addresses).
    pub to: Vec<String>,
    pub subject: String,
    pub intro: Option<String>,
}

/// Deterministic campaign arm: `control` for the holdout share, else an arm by weight.
pub fn campaign_arm(c: &Campaign, account: &str) -> (String, i64) {
    let h = Sha256::digest(format!("{}:{account}", c.name).as_bytes());
    let bucket = (u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) % 10_000) as i64;
    let holdout = (c.holdout_pct * 100.0).round() as i64;
    if bucket < holdout {
        return ("control".into(), bucket);
    }
    let total: f64 = c.arms.iter().map(|a| a.weight).sum();
    let pos = (bucket - holdout) as f64 / (10_000 - holdout).max(1) as f64 * total;
    let mut acc = 0.0;
    for a in &c.arms {
        acc += a.weight;
        if pos < acc {
            return (a.name.clone(), bucket);
        }
    }
    (c.arms.last().map(|a| a.name.clone()).unwrap_or_default(), bucket)
}

/// The sets of accounts each SQL predicate of the library selects on the day. They are evaluated
/// first, against `act_day`, so that planning itself is a pure function of them.
#[derive(Debug, Clone, Default)]
pub struct Predicates {
    /// Per playbook with an `[exit]`: the accounts that meet it.
    pub exits: HashMap<String, HashSet<String>>,
    /// Per playbook: the accounts its trigger matches, in id order.
    pub triggers: HashMap<String, Vec<String>>,
    /// Per playbook and step (by index) with a SQL `only_if`: the accounts that meet it.
    pub only_if: HashMap<(String, usize), HashSet<String>>,
}

impl Predicates {
    /// Runs every trigger, exit and SQL `only_if` of the library against the day's table. A
    /// predicate that does not run is a configuration error naming its file.
    pub async fn evaluate(ctx: &SessionContext, lib: &Library, day: &Day) -> Result<Self> {
        let mut out = Predicates::default();
        for p in &lib.playbooks {
            if let Some(x) = &p.exit {
                let set = day
                    .matching(ctx, &x.when, &format!("{}: [exit]", p.origin))
                    .await?;
                out.exits.insert(p.name.clone(), set.into_iter().collect());
            }
            // disabled playbooks too: `playbooks validate` checks their SQL
            let matched = day
                .matching(ctx, &p.trigger.predicate(), &format!("{}: [trigger]", p.origin))
                .await?;
            out.triggers.insert(p.name.clone(), matched);
            for (k, s) in p.steps.iter().enumerate() {
                if let Some(c) = &s.only_if
                    && c != "task_open"
                    && c != "task_completed"
                {
                    let set = day
                        .matching(ctx, c, &format!("{}: step {} only_if", p.origin, k + 1))
                        .await?;
                    out.only_if.insert((p.name.clone(), k), set.into_iter().collect());
                }
            }
        }
        Ok(out)
    }
}

/// What the lake holds of the playbooks' work before the day: the enrolments of the last day
/// planned before it, and every task, alert and campaign assignment.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub enrolments: Vec<Enrolment>,
    pub tasks: Vec<Task>,
    pub alerts: Vec<Alert>,
    pub assignments: Vec<Assignment>,
}

/// Plans the day: ends enrolments whose exit holds (or whose account or playbook is gone), enrols
/// the accounts a trigger matches (unless already enrolled, held by their dedupe group or in
/// cooldown), runs the steps that are due (tasks assigned by the rules, alerts to their
/// recipients, campaign arms), completes enrolments whose steps are done and tasks closed, marks
/// overdue tasks, and resolves the alerts of enrolments that ended. A pure function: the same
/// inputs give the same plan, with ids derived from what produced them, so a re-run of a day
/// plans exactly what the first run did.
#[allow(clippy::too_many_lines)]
pub fn plan(
    settings: &Settings,
    lib: &Library,
    day: &Day,
    predicates: &Predicates,
    csms: BTreeMap<String, Csm>,
    state: &State,
    dry_run: bool,
) -> Plan {
    let prev = state.enrolments.clone();
    let (tasks, alerts, assignments) = (&state.tasks, &state.alerts, &state.assignments);
    let as_of = day.as_of;
    let mut plan = Plan::default();
    let mut tasks: Vec<Task> = tasks.to_vec();
    let original: HashMap<String, Task> = tasks.iter().map(|t| (t.task_id.clone(), t.clone())).collect();
    let mut assigner = Assigner::new(settings, csms, &tasks, day);
    let known_alerts: HashSet<&str> = alerts.iter().map(|a| a.alert_id.as_str()).collect();
    let mut assigned: HashSet<String> = assignments.iter().map(|a| a.assignment_id.clone()).collect();
    let playbook = |name: &str| lib.playbooks.iter().find(|p| p.name == name);
    let mut days: BTreeMap<String, PlaybookDay> = lib
        .playbooks
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                PlaybookDay {
                    playbook: p.name.clone(),
                    version: p.version,
                    ..Default::default()
                },
            )
        })
        .collect();

    // 1. exits: recovered accounts, accounts no longer scored, playbooks removed
    let mut enrolments = prev;
    let exit_sets = &predicates.exits;
    for e in enrolments.iter_mut().filter(|e| e.status == "active") {
        let (status, reason) = if day.row(&e.account_id).is_none() {
            (
                "cancelled",
                "the account is no longer scored (churned or removed)".to_string(),
            )
        } else if let Some(p) = playbook(&e.playbook) {
            match exit_sets.get(&p.name) {
                Some(s) if s.contains(&e.account_id) => (
                    "exited",
                    format!(
                        "exit condition met: {}",
                        p.exit.as_ref().map(|x| x.when.as_str()).unwrap_or("")
                    ),
                ),
                _ => continue,
            }
        } else {
            (
                "cancelled",
                "the playbook was removed from the library".to_string(),
            )
        };
        e.status = status.into();
        e.ended_on = Some(as_of);
        e.end_reason = Some(reason);
        if let Some(d) = days.get_mut(&e.playbook)
            && status == "exited"
        {
            d.exited += 1;
        }
        if status == "exited" {
            plan.report.exited += 1;
        } else {
            plan.report.cancelled += 1;
        }
        // their open tasks are no longer needed
        for t in tasks
            .iter_mut()
            .filter(|t| t.enrollment_id.as_deref() == Some(&e.enrollment_id) && t.is_open())
        {
            t.status = "cancelled".into();
        }
    }

    // 2. triggers: new enrolments
    let active_by: HashSet<(String, String)> = enrolments
        .iter()
        .filter(|e| e.status == "active")
        .map(|e| (e.playbook.clone(), e.account_id.clone()))
        .collect();
    let mut active_groups: HashSet<(String, String)> = enrolments
        .iter()
        .filter(|e| e.status == "active")
        .filter_map(|e| e.dedupe_group.clone().map(|g| (g, e.account_id.clone())))
        .collect();
    let mut last_end: HashMap<(String, String), NaiveDate> = HashMap::new();
    for e in enrolments.iter().filter(|e| e.status != "active") {
        let k = (e.playbook.clone(), e.account_id.clone());
        let end = e.ended_on.unwrap_or(e.enrolled_on);
        if last_end.get(&k).is_none_or(|d| *d < end) {
            last_end.insert(k, end);
        }
    }
    for p in lib.playbooks.iter().filter(|p| p.enabled) {
        let matched = predicates.triggers.get(&p.name).cloned().unwrap_or_default();
        let pd = days.get_mut(&p.name).expect("a day entry per playbook");
        pd.matched = matched.len();
        for account in matched {
            let key = (p.name.clone(), account.clone());
            if active_by.contains(&key) {
                continue;
            }
            if let Some(g) = &p.dedupe_group
                && active_groups.contains(&(g.clone(), account.clone()))
            {
                continue;
            }
            if let Some(end) = last_end.get(&key)
                && *end + Days::days(p.cooldown_days) > as_of
            {
                continue;
            }
            let i = day.row(&account).expect("matched accounts are in the day");
            if let Some(g) = &p.dedupe_group {
                active_groups.insert((g.clone(), account.clone()));
            }
            let reason_src = [
                p.trigger.when.clone(),
                p.trigger
                    .entered_risk_band
                    .as_ref()
                    .map(|_| "risk_band prev_risk_band".to_string()),
                p.trigger
                    .entered_health_band
                    .as_ref()
                    .map(|_| "health_band prev_health_band".to_string()),
                p.trigger
                    .health_drop
                    .as_ref()
                    .map(|h| format!("health_score health_{}d_ago", h.days)),
                p.trigger
                    .opportunity
                    .as_ref()
                    .map(|_| "new_opportunity_kinds".to_string()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            enrolments.push(Enrolment {
                enrollment_id: format!("e-{}", short_hash(&[&p.name, &account, &as_of.to_string()])),
                playbook: p.name.clone(),
                playbook_version: i64::from(p.version),
                category: p.category.clone(),
                dedupe_group: p.dedupe_group.clone(),
                account_id: account.clone(),
                enrolled_on: as_of,
                status: "active".into(),
                steps_done: 0,
                steps_total: p.steps.len() as i64,
                last_step_on: None,
                ended_on: None,
                end_reason: None,
                trigger_reason: day.reason(&reason_src, i),
                mrr_at_enrolment: day.num("mrr", i),
                risk_at_enrolment: day.num("risk_score", i),
                health_at_enrolment: day.num("health_score", i),
                renewal_date: day
                    .text("contract_end", i)
                    .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
            });
            pd.enrolled += 1;
            plan.report.enrolled += 1;
        }
    }

    // 3. steps due today, for every active enrolment (new ones run their day-0 steps)
    let only_if_sets = &predicates.only_if;
    enrolments.sort_by(|a, b| {
        a.enrolled_on
            .cmp(&b.enrolled_on)
            .then(a.enrollment_id.cmp(&b.enrollment_id))
    });
    for e in enrolments.iter_mut().filter(|e| e.status == "active") {
        let (Some(p), Some(i)) = (playbook(&e.playbook), day.row(&e.account_id)) else {
            continue;
        };
        let age = (as_of - e.enrolled_on).num_days();
        let mut steps_today = Vec::new();
        while (e.steps_done as usize) < p.steps.len() && p.steps[e.steps_done as usize].day <= age {
            let k = e.steps_done as usize;
            let s = &p.steps[k];
            let mine = |t: &&Task| t.enrollment_id.as_deref() == Some(e.enrollment_id.as_str());
            let go = match s.only_if.as_deref() {
                None => true,
                Some("task_open") => tasks.iter().filter(mine).any(Task::is_open),
                Some("task_completed") => {
                    let m: Vec<&Task> = tasks.iter().filter(mine).collect();
                    !m.is_empty() && m.iter().all(|t| t.status == "completed")
                }
                Some(_) => only_if_sets
                    .get(&(p.name.clone(), k))
                    .is_some_and(|s| s.contains(&e.account_id)),
            };
            e.steps_done += 1;
            e.last_step_on = Some(as_of);
            if !go {
                steps_today.push(format!(
                    "step {} skipped ({})",
                    k + 1,
                    s.only_if.as_deref().unwrap_or("")
                ));
                continue;
            }
            let id = short_hash(&[&e.enrollment_id, &k.to_string()]);
            match s.action {
                StepAction::Task => {
                    let rule = s
                        .assign
                        .clone()
                        .unwrap_or_else(|| settings.file.actions.assignment.rule.clone());
                    let (assignee, email, team) = assigner.assign(&rule, day, i);
                    let task = Task {
                        task_id: format!("t-{id}"),
                        enrollment_id: Some(e.enrollment_id.clone()),
                        playbook: Some(p.name.clone()),
                        account_id: e.account_id.clone(),
                        title: day.fill(s.title.as_deref().unwrap_or_default(), i),
                        description: s.description.as_deref().map(|d| day.fill(d, i)),
                        assignee,
                        assignee_email: email,
                        team,
                        priority: s.priority.clone().unwrap_or_else(|| "medium".into()),
                        created_on: as_of,
                        due_date: as_of + Days::days(s.due_days.unwrap_or(3)),
                        status: "open".into(),
                        completed_at: None,
                        completed_by: None,
                        crm_task_id: None,
                    };
                    steps_today.push(format!(
                        "task for {}: {}",
                        task.assignee.as_deref().unwrap_or("nobody"),
                        task.title
                    ));
                    if !original.contains_key(&task.task_id) {
                        tasks.push(task.clone());
                        plan.new_tasks.push(task);
                        plan.report.tasks_created += 1;
                    }
                }
                StepAction::Alert => {
                    let to = assigner.recipients(&s.to, day, i);
                    let alert = Alert {
                        alert_id: format!("a-{id}"),
                        enrollment_id: Some(e.enrollment_id.clone()),
                        playbook: Some(p.name.clone()),
                        account_id: e.account_id.clone(),
                        as_of_date: as_of,
                        priority: s.priority.clone().unwrap_or_else(|| "P3".into()),
                        title: day.fill(s.title.as_deref().unwrap_or_default(), i),
                        message: s.description.as_deref().map(|d| day.fill(d, i)),
                        recipients: to.join(","),
                        status: "open".into(),
                        acknowledged_at: None,
                        acknowledged_by: None,
                        notified_count: 0,
                        last_notified_on: None,
                    };
                    steps_today.push(format!("{} alert: {}", alert.priority, alert.title));
                    if !known_alerts.contains(alert.alert_id.as_str()) {
                        plan.report.alerts_created += 1;
                    }
                    plan.new_alerts.push(alert);
                }
                StepAction::Campaign => {
                    let name = s.campaign.as_deref().unwrap_or_default();
                    let Some(c) = lib.campaign(name) else { continue };
                    let assignment_id = format!("{}:{}", c.name, e.account_id);
                    if !assigned.insert(assignment_id.clone()) {
                        steps_today.push(format!("campaign {name}: already assigned earlier"));
                        continue;
                    }
                    let (arm, bucket) = campaign_arm(c, &e.account_id);
                    steps_today.push(format!("campaign {name}: arm {arm}"));
                    plan.new_assignments.push(Assignment {
                        assignment_id,
                        campaign: c.name.clone(),
                        campaign_version: i64::from(c.version),
                        account_id: e.account_id.clone(),
                        arm,
                        bucket,
                        assigned_on: as_of,
                        enrollment_id: Some(e.enrollment_id.clone()),
                        mrr_at_assignment: day.num("mrr", i),
                        engagement_at_assignment: day.num(&c.engagement_feature, i),
                    });
                    plan.report.campaign_assignments += 1;
                }
                StepAction::SendContent => {
                    let (contacts, others): (Vec<String>, Vec<String>) =
                        s.content_to().into_iter().partition(|t| t == "contacts");
                    steps_today.push(format!("send {}", s.content_summary()));
                    plan.content_sends.push(ContentSend {
                        key: format!("content:{}:{}", e.enrollment_id, k + 1),
                        enrollment_id: e.enrollment_id.clone(),
                        playbook: p.name.clone(),
                        account_id: e.account_id.clone(),
                        top: s.top.unwrap_or(crate::act::library::Step::CONTENT_TOP),
                        listed: s.content.clone(),
                        channel: s.channel.clone(),
                        to_contacts: !contacts.is_empty(),
                        to: assigner.recipients(&others, day, i),
                        subject: day.fill(s.title.as_deref().unwrap_or("Resources picked for {name}"), i),
                        intro: s.description.as_deref().map(|d| day.fill(d, i)),
                    });
                    plan.report.content_sends += 1;
                }
            }
            if let Some(d) = days.get_mut(&p.name) {
                d.steps_run += 1;
            }
        }
        // done when every step has run and none of its tasks is still open
        if e.steps_done as usize >= p.steps.len()
            && !tasks
                .iter()
                .any(|t| t.enrollment_id.as_deref() == Some(e.enrollment_id.as_str()) && t.is_open())
        {
            e.status = "completed".into();
            e.ended_on = Some(as_of);
            e.end_reason = Some("every step done and every task closed".into());
            plan.report.completed += 1;
            if let Some(d) = days.get_mut(&p.name) {
                d.completed += 1;
            }
        }
        let d = days.get_mut(&p.name).expect("a day entry per playbook");
        if e.enrolled_on == as_of && (dry_run || d.enrolments.len() < 20) {
            d.enrolments.push(Firing {
                account_id: e.account_id.clone(),
                name: day.text("name", i).unwrap_or_default(),
                reason: e.trigger_reason.clone(),
                steps_today,
            });
        }
    }

    for (to, n) in assigner.unresolved() {
        tracing::warn!(
            to = to.as_str(),
            alerts = n,
            "alert recipient has no e-mail address (core.csms email, or [actions.teams.<team>] lead): the alert is recorded but not e-mailed to it"
        );
    }

    // 4. overdue tasks
    for t in tasks
        .iter_mut()
        .filter(|t| t.status == "open" && t.due_date < as_of)
    {
        t.status = "overdue".into();
    }
    plan.report.tasks_overdue = tasks.iter().filter(|t| t.status == "overdue").count();
    plan.changed_tasks = tasks
        .into_iter()
        .filter(|t| original.get(&t.task_id).is_some_and(|o| o != t))
        .collect();
    // the alerts of enrolments that ended today have done their work
    let ended: HashSet<&str> = enrolments
        .iter()
        .filter(|e| e.status != "active" && e.ended_on == Some(as_of))
        .map(|e| e.enrollment_id.as_str())
        .collect();
    plan.resolved_alerts = alerts
        .iter()
        .filter(|a| a.status == "open" && a.enrollment_id.as_deref().is_some_and(|e| ended.contains(e)))
        .map(|a| Alert {
            status: "resolved".into(),
            ..a.clone()
        })
        .collect();
    plan.report.active = enrolments.iter().filter(|e| e.status == "active").count();
    plan.report.playbooks = days
        .into_values()
        .map(|mut d| {
            d.enrolments.sort_by(|a, b| a.account_id.cmp(&b.account_id));
            d
        })
        .collect();
    enrolments.sort_by(|a, b| a.enrollment_id.cmp(&b.enrollment_id));
    plan.enrolments = enrolments;
    plan
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::act::library::Arm;
    use crate::act::tables::Cols;

    fn date(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, d).unwrap()
    }

    /// A day's table: account id, name, risk score, the owner and MRR.
    fn day(d: u32, rows: &[(&str, f64)]) -> Day {
        let batch = Cols::default()
            .key("account_id", rows.iter().map(|r| r.0.to_string()).collect())
            .str(
                "name",
                rows.iter().map(|r| Some(format!("Acme {}", r.0))).collect(),
            )
            .float("risk_score", rows.iter().map(|r| Some(r.1)).collect())
            .str("csm_id", rows.iter().map(|_| Some("c1".to_string())).collect())
            .float("mrr", rows.iter().map(|_| Some(100.0)).collect())
            .batch()
            .unwrap();
        Day::from_batch(date(d), batch).unwrap()
    }

    const SAVE: &str = r#"
        name = "save"
        version = 2
        cooldown_days = 10
        dedupe_group = "risk"
        [trigger]
        when = "risk_score >= 70"
        [exit]
        when = "risk_score < 30"
        [[steps]]
        action = "task"
        title = "Call {name}"
        priority = "high"
        due_days = 3
        [[steps]]
        day = 3
        action = "alert"
        only_if = "task_open"
        title = "{name} was not called"
        priority = "P1"
        to = ["csm"]
    "#;

    const WATCH: &str = r#"
        name = "watch"
        version = 1
        dedupe_group = "risk"
        [trigger]
        when = "risk_score >= 50"
        [[steps]]
        action = "task"
        title = "Look at {name}"
    "#;

    fn lib(files: &[&str]) -> Library {
        Library::parse(
            files
                .iter()
                .enumerate()
                .map(|(i, t)| (["save.toml", "watch.toml"][i], *t)),
        )
        .unwrap()
    }

    fn settings() -> Settings {
        Settings {
            lake: String::new(),
            file: crate::settings::FileConfig::default(),
            config_dir: ".".into(),
            actor: "test".into(),
            memory_limit: None,
            engine: Default::default(),
        }
    }

    fn csms() -> BTreeMap<String, Csm> {
        [(
            "c1".to_string(),
            Csm {
                email: Some("c1@x.test".into()),
                team: None,
            },
        )]
        .into_iter()
        .collect()
    }

    /// What the predicates selected: the trigger's matches, and the exit's.
    fn predicates(triggered: &[(&str, &[&str])], exits: &[(&str, &[&str])]) -> Predicates {
        Predicates {
            triggers: triggered
                .iter()
                .map(|(p, a)| (p.to_string(), a.iter().map(|x| x.to_string()).collect()))
                .collect(),
            exits: exits
                .iter()
                .map(|(p, a)| (p.to_string(), a.iter().map(|x| x.to_string()).collect()))
                .collect(),
            only_if: HashMap::new(),
        }
    }

    /// The state the next day starts from: the plan's enrolments, tasks and alerts applied.
    fn after(state: &State, plan: &Plan) -> State {
        let mut tasks: Vec<Task> = state
            .tasks
            .iter()
            .map(|t| {
                plan.changed_tasks
                    .iter()
                    .find(|c| c.task_id == t.task_id)
                    .unwrap_or(t)
                    .clone()
            })
            .collect();
        tasks.extend(plan.new_tasks.iter().cloned());
        let mut alerts: Vec<Alert> = state
            .alerts
            .iter()
            .map(|a| {
                plan.resolved_alerts
                    .iter()
                    .find(|r| r.alert_id == a.alert_id)
                    .unwrap_or(a)
                    .clone()
            })
            .collect();
        alerts.extend(
            plan.new_alerts
                .iter()
                .filter(|a| !state.alerts.iter().any(|o| o.alert_id == a.alert_id))
                .cloned(),
        );
        let mut assignments = state.assignments.clone();
        assignments.extend(plan.new_assignments.iter().cloned());
        State {
            enrolments: plan.enrolments.clone(),
            tasks,
            alerts,
            assignments,
        }
    }

    fn run(lib: &Library, day: &Day, p: &Predicates, state: &State) -> Plan {
        plan(&settings(), lib, day, p, csms(), state, false)
    }

    #[test]
    fn a_triggered_account_is_enrolled_and_gets_its_day_0_task() {
        let lib = lib(&[SAVE]);
        let d0 = day(1, &[("a1", 80.0), ("a2", 10.0)]);
        let p = run(
            &lib,
            &d0,
            &predicates(&[("save", &["a1"])], &[]),
            &State::default(),
        );
        assert_eq!(p.enrolments.len(), 1);
        let e = &p.enrolments[0];
        assert_eq!(
            (e.account_id.as_str(), e.status.as_str(), e.steps_done),
            ("a1", "active", 1)
        );
        assert_eq!(e.playbook_version, 2);
        assert_eq!(e.trigger_reason, "risk_score = 80");
        assert_eq!(p.new_tasks.len(), 1);
        let t = &p.new_tasks[0];
        assert_eq!(t.title, "Call Acme a1");
        assert_eq!(t.assignee.as_deref(), Some("c1"));
        assert_eq!(t.assignee_email.as_deref(), Some("c1@x.test"));
        assert_eq!((t.priority.as_str(), t.due_date), ("high", date(4)));
        assert!(p.new_alerts.is_empty());
        assert_eq!(
            (p.report.enrolled, p.report.tasks_created, p.report.active),
            (1, 1, 1)
        );
        let firing = &p.report.playbooks[0].enrolments[0];
        assert_eq!(firing.steps_today, ["task for c1: Call Acme a1"]);
    }

    #[test]
    fn a_content_step_is_planned_once_with_its_recipients() {
        const LEARN: &str = r#"
            name = "learn"
            version = 1
            [trigger]
            when = "risk_score >= 50"
            [[steps]]
            day = 2
            action = "send_content"
            top = 4
            content = ["KB-1"]
            to = ["contacts", "csm", "ops@x.test"]
            description = "For {name}"
        "#;
        let lib = lib(&[LEARN]);
        let on = predicates(&[("learn", &["a1"])], &[]);
        let p0 = run(&lib, &day(1, &[("a1", 80.0)]), &on, &State::default());
        assert!(p0.content_sends.is_empty(), "due on day 2");
        let s1 = after(&State::default(), &p0);
        let p2 = run(&lib, &day(3, &[("a1", 80.0)]), &on, &s1);
        assert_eq!(p2.content_sends.len(), 1);
        let c = &p2.content_sends[0];
        let e = &p2.enrolments[0];
        assert_eq!(c.key, format!("content:{}:1", e.enrollment_id));
        assert_eq!(
            (c.top, c.listed.as_slice(), c.to_contacts),
            (4, &["KB-1".to_string()][..], true)
        );
        assert_eq!(c.to, ["c1@x.test", "ops@x.test"]);
        assert_eq!(
            (c.subject.as_str(), c.intro.as_deref()),
            ("Resources picked for Acme a1", Some("For Acme a1"))
        );
        assert_eq!(p2.report.content_sends, 1);
        // the step ran: the one-step enrolment is done, and the next day sends nothing
        assert_eq!(e.status, "completed");
        let p3 = run(&lib, &day(4, &[("a1", 80.0)]), &on, &after(&s1, &p2));
        assert!(p3.content_sends.is_empty());
        // a re-run of the day plans the same send (the delivery log then finds it sent)
        assert_eq!(
            run(&lib, &day(3, &[("a1", 80.0)]), &on, &s1).content_sends,
            p2.content_sends
        );
    }

    #[test]
    fn an_open_task_escalates_on_day_3_and_becomes_overdue_after_its_due_date() {
        let lib = lib(&[SAVE]);
        let still = predicates(&[("save", &["a1"])], &[]);
        let s0 = State::default();
        let p0 = run(&lib, &day(1, &[("a1", 80.0)]), &still, &s0);
        let s1 = after(&s0, &p0);
        // day 2: nothing is due, the account stays enrolled once
        let p1 = run(&lib, &day(2, &[("a1", 85.0)]), &still, &s1);
        assert_eq!(
            (p1.report.enrolled, p1.new_tasks.len(), p1.new_alerts.len()),
            (0, 0, 0)
        );
        let s2 = after(&s1, &p1);
        // day 4 (3 days after enrolment): the task is still open, so the P1 alert goes to the CSM
        let p3 = run(&lib, &day(4, &[("a1", 85.0)]), &still, &s2);
        assert_eq!(p3.new_alerts.len(), 1);
        let a = &p3.new_alerts[0];
        assert_eq!(
            (a.priority.as_str(), a.title.as_str()),
            ("P1", "Acme a1 was not called")
        );
        assert_eq!(a.recipients, "c1@x.test");
        assert!(p3.changed_tasks.is_empty(), "due on day 4, not overdue yet");
        // every step has run but the task is open: the enrolment stays active
        assert_eq!(p3.enrolments[0].status, "active");
        let s3 = after(&s2, &p3);
        let p4 = run(&lib, &day(5, &[("a1", 85.0)]), &still, &s3);
        assert_eq!(p4.changed_tasks.len(), 1);
        assert_eq!(p4.changed_tasks[0].status, "overdue");
        assert_eq!(p4.report.tasks_overdue, 1);
    }

    #[test]
    fn a_completed_task_skips_the_escalation_and_completes_the_enrolment() {
        let lib = lib(&[SAVE]);
        let still = predicates(&[("save", &["a1"])], &[]);
        let s0 = State::default();
        let p0 = run(&lib, &day(1, &[("a1", 80.0)]), &still, &s0);
        let mut s1 = after(&s0, &p0);
        s1.tasks[0].status = "completed".into();
        let p3 = run(&lib, &day(4, &[("a1", 80.0)]), &still, &s1);
        assert!(p3.new_alerts.is_empty());
        let e = &p3.enrolments[0];
        assert_eq!((e.status.as_str(), e.steps_done), ("completed", 2));
        assert_eq!(
            e.end_reason.as_deref(),
            Some("every step done and every task closed")
        );
        assert_eq!(p3.report.playbooks[0].completed, 1);
    }

    #[test]
    fn exit_cancels_open_tasks_resolves_alerts_and_cooldown_holds_re_entry() {
        let lib = lib(&[SAVE]);
        let still = predicates(&[("save", &["a1"])], &[]);
        let s0 = State::default();
        let p0 = run(&lib, &day(1, &[("a1", 80.0)]), &still, &s0);
        let s1 = after(&s0, &p0);
        let p3 = run(&lib, &day(4, &[("a1", 80.0)]), &still, &s1);
        let s2 = after(&s1, &p3);
        assert_eq!(s2.alerts.len(), 1);
        // day 6: the account recovered
        let p5 = run(
            &lib,
            &day(6, &[("a1", 20.0)]),
            &predicates(&[("save", &[])], &[("save", &["a1"])]),
            &s2,
        );
        let e = &p5.enrolments[0];
        assert_eq!((e.status.as_str(), e.ended_on), ("exited", Some(date(6))));
        assert_eq!(
            e.end_reason.as_deref(),
            Some("exit condition met: risk_score < 30")
        );
        assert_eq!(p5.changed_tasks.len(), 1);
        assert_eq!(p5.changed_tasks[0].status, "cancelled");
        assert_eq!(p5.resolved_alerts.len(), 1);
        assert_eq!(p5.resolved_alerts[0].status, "resolved");
        let s3 = after(&s2, &p5);
        // day 10: risky again, but within the 10 days of cooldown
        let p9 = run(&lib, &day(10, &[("a1", 90.0)]), &still, &s3);
        assert_eq!(p9.report.enrolled, 0);
        // day 16: the cooldown is over
        let p15 = run(&lib, &day(16, &[("a1", 90.0)]), &still, &s3);
        assert_eq!(p15.report.enrolled, 1);
        assert_eq!(p15.enrolments.iter().filter(|e| e.status == "active").count(), 1);
    }

    #[test]
    fn an_account_no_longer_scored_is_cancelled() {
        let lib = lib(&[SAVE]);
        let s0 = State::default();
        let p0 = run(
            &lib,
            &day(1, &[("a1", 80.0)]),
            &predicates(&[("save", &["a1"])], &[]),
            &s0,
        );
        let s1 = after(&s0, &p0);
        let p1 = run(
            &lib,
            &day(2, &[("a2", 10.0)]),
            &predicates(&[("save", &[])], &[]),
            &s1,
        );
        let e = &p1.enrolments[0];
        assert_eq!(e.status, "cancelled");
        assert_eq!(p1.changed_tasks[0].status, "cancelled");
        assert_eq!(p1.report.cancelled, 1);
    }

    #[test]
    fn a_dedupe_group_holds_one_playbook_per_account() {
        let lib = lib(&[SAVE, WATCH]);
        let p = run(
            &lib,
            &day(1, &[("a1", 80.0), ("a2", 60.0)]),
            &predicates(&[("save", &["a1"]), ("watch", &["a1", "a2"])], &[]),
            &State::default(),
        );
        let mut who: Vec<(String, String)> = p
            .enrolments
            .iter()
            .map(|e| (e.playbook.clone(), e.account_id.clone()))
            .collect();
        who.sort();
        assert_eq!(
            who,
            [
                ("save".to_string(), "a1".to_string()),
                ("watch".to_string(), "a2".to_string())
            ]
        );
    }

    #[test]
    fn the_same_day_plans_the_same_ids_twice() {
        let lib = lib(&[SAVE]);
        let d = day(1, &[("a1", 80.0), ("a2", 75.0)]);
        let p = predicates(&[("save", &["a1", "a2"])], &[]);
        let (x, y) = (
            run(&lib, &d, &p, &State::default()),
            run(&lib, &d, &p, &State::default()),
        );
        let ids = |p: &Plan| {
            (
                p.enrolments
                    .iter()
                    .map(|e| e.enrollment_id.clone())
                    .collect::<Vec<_>>(),
                p.new_tasks.iter().map(|t| t.task_id.clone()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(ids(&x), ids(&y));
        assert_eq!(x.new_tasks.len(), 2);
        // a re-run of the day over its own result creates nothing new
        let again = run(&lib, &d, &p, &after(&State::default(), &x));
        assert!(again.new_tasks.is_empty());
    }

    #[test]
    fn campaign_arms_are_deterministic_and_follow_the_split() {
        let c = Campaign {
            kind: "campaign".into(),
            name: "c".into(),
            version: 1,
            category: None,
            owner: None,
            description: None,
            holdout_pct: 20.0,
            arms: ["a", "b"]
                .iter()
                .map(|n| Arm {
                    name: (*n).into(),
                    weight: 1.0,
                    subject: String::new(),
                    body: String::new(),
                })
                .collect(),
            channel: None,
            to: "csm".into(),
            outcome_days: 90,
            engagement_feature: "events_30d".into(),
            origin: String::new(),
        };
        let mut n: HashMap<String, usize> = HashMap::new();
        for i in 0..10_000 {
            let (arm, _) = campaign_arm(&c, &format!("acc-{i}"));
            assert_eq!(campaign_arm(&c, &format!("acc-{i}")).0, arm);
            *n.entry(arm).or_default() += 1;
        }
        // 20% control, the rest split evenly (within sampling noise of 10,000 draws)
        assert!((1800..2200).contains(&n["control"]), "{n:?}");
        assert!((3700..4300).contains(&n["a"]), "{n:?}");
        assert!((3700..4300).contains(&n["b"]), "{n:?}");
    }
}
