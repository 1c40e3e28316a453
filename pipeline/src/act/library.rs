//! The template library: playbooks and campaigns, one versioned TOML file each.
//!
//! A playbook is a trigger (a SQL predicate over the day's scores and features, and/or a change
//! such as "entered the red band"), dedupe and cooldown rules, an exit condition, and steps with
//! delays (day 0: a task; day 3: an alert if the task is still open; ...). A campaign is a
//! template with A/B arms and a holdout control group. Without `[actions] library`, the built-in
//! templates in `playbooks/` are used.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result, Settings};

/// The templates shipped with cslake (`playbooks/` in the repository).
const BUILTIN: &[(&str, &str)] = &[
    (
        "high_risk_save.toml",
        include_str!("../../../playbooks/high_risk_save.toml"),
    ),
    (
        "health_drop.toml",
        include_str!("../../../playbooks/health_drop.toml"),
    ),
    (
        "expansion_outreach.toml",
        include_str!("../../../playbooks/expansion_outreach.toml"),
    ),
    (
        "renewal_checkin.toml",
        include_str!("../../../playbooks/renewal_checkin.toml"),
    ),
    (
        "re_engagement_campaign.toml",
        include_str!("../../../playbooks/re_engagement_campaign.toml"),
    ),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthDrop {
    /// Health points lost ...
    pub points: f64,
    /// ... within this many days.
    pub days: i64,
}

/// When an account enters the playbook. Every condition given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// A SQL predicate over the day's row (`risk_score >= 70 AND mrr >= 1000`).
    pub when: Option<String>,
    /// The risk band is this one today and was another one (or none) on the previous scored day.
    pub entered_risk_band: Option<String>,
    /// Same for the health band (`red`, `yellow`, `green`).
    pub entered_health_band: Option<String>,
    /// Health fell at least `points` in `days`.
    pub health_drop: Option<HealthDrop>,
    /// An opportunity of this kind (or `any`) appeared today.
    pub opportunity: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exit {
    /// The account recovered: a SQL predicate over the day's row.
    pub when: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    Task,
    Alert,
    Campaign,
    /// Sends the account's top content items (listed ones first, then its recommendations).
    SendContent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Days after enrolment.
    #[serde(default)]
    pub day: i64,
    pub action: StepAction,
    /// `task_open` / `task_completed` (the playbook's earlier tasks), or a SQL predicate over
    /// the day's row. The step is skipped (and counted as done) when it does not hold.
    pub only_if: Option<String>,
    /// Tasks and alerts: `{column}` placeholders are filled from the day's row.
    pub title: Option<String>,
    pub description: Option<String>,
    /// Tasks: low, medium, high, urgent. Alerts: P1 (most urgent) to P4.
    pub priority: Option<String>,
    /// Tasks: days until due.
    pub due_days: Option<i64>,
    /// Tasks: owner, round_robin, least_loaded, least_arr, team_lead (default: [actions.assignment] rule).
    pub assign: Option<String>,
    /// Alerts: csm, team_lead or e-mail addresses. `send_content`: those or `contacts` (the
    /// account's contacts; the default).
    #[serde(default)]
    pub to: Vec<String>,
    /// Campaign steps: the campaign's name.
    pub campaign: Option<String>,
    /// `send_content`: how many items at most (default 3).
    pub top: Option<usize>,
    /// `send_content`: content ids of `core.content` this playbook always offers first (unless
    /// the account has completed them); the rest are the account's recommendations of the day.
    #[serde(default)]
    pub content: Vec<String>,
    /// `send_content`: the channel (an e-mail or webhook channel of `[[actions.channels]]`;
    /// default the first e-mail channel).
    pub channel: Option<String>,
}

impl Step {
    /// Default number of items a `send_content` step sends.
    pub const CONTENT_TOP: usize = 3;

    /// Who a `send_content` step goes to (default the account's contacts).
    pub fn content_to(&self) -> Vec<String> {
        if self.to.is_empty() {
            vec!["contacts".into()]
        } else {
            self.to.clone()
        }
    }

    /// A `send_content` step in words, for listings and dry runs.
    pub fn content_summary(&self) -> String {
        let listed = if self.content.is_empty() {
            String::new()
        } else {
            format!(" ({} first)", self.content.join(", "))
        };
        format!(
            "up to {} content item(s){listed} to {}",
            self.top.unwrap_or(Self::CONTENT_TOP),
            self.content_to().join(", ")
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub trigger: Trigger,
    /// Playbooks of one group never hold the same account at once (like a CTA type's dedupe).
    pub dedupe_group: Option<String>,
    /// Days after an enrolment ends before the account may enter this playbook again.
    #[serde(default)]
    pub cooldown_days: i64,
    pub exit: Option<Exit>,
    pub steps: Vec<Step>,
    #[serde(skip)]
    pub origin: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    /// Relative share of the treated accounts.
    #[serde(default = "one")]
    pub weight: f64,
    pub subject: String,
    pub body: String,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub kind: String,
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Percent of enrolled accounts kept as the untreated control group.
    #[serde(default = "ten")]
    pub holdout_pct: f64,
    pub arms: Vec<Arm>,
    /// The e-mail channel the arms are sent through (default: the first e-mail channel).
    pub channel: Option<String>,
    /// Who receives it: `csm` (the CSM sends it on) or `contacts` (the account's contacts).
    #[serde(default = "csm")]
    pub to: String,
    /// Days after assignment over which retention, expansion and engagement are measured.
    #[serde(default = "ninety")]
    pub outcome_days: i64,
    /// The feature whose change measures engagement.
    #[serde(default = "events_30d")]
    pub engagement_feature: String,
    #[serde(skip)]
    pub origin: String,
}

fn ten() -> f64 {
    10.0
}
fn csm() -> String {
    "csm".into()
}
fn ninety() -> i64 {
    90
}
fn events_30d() -> String {
    "events_30d".into()
}

/// Every playbook and campaign of the library.
#[derive(Debug, Clone, Default)]
pub struct Library {
    pub playbooks: Vec<Playbook>,
    pub campaigns: Vec<Campaign>,
}

pub const TASK_PRIORITIES: &[&str] = &["low", "medium", "high", "urgent"];
pub const ALERT_PRIORITIES: &[&str] = &["P1", "P2", "P3", "P4"];
pub const ASSIGN_RULES: &[&str] = &["owner", "round_robin", "least_loaded", "least_arr", "team_lead"];

impl Library {
    /// The built-in templates, or every `*.toml` of `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let files: Vec<(String, String)> = match dir {
            None => BUILTIN
                .iter()
                .map(|(f, t)| (format!("builtin:{f}"), (*t).to_string()))
                .collect(),
            Some(dir) => {
                let io = |source| Error::Io {
                    path: dir.display().to_string(),
                    source,
                };
                let mut paths: Vec<_> = std::fs::read_dir(dir)
                    .map_err(io)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                paths.sort();
                paths
                    .into_iter()
                    .map(|p| {
                        std::fs::read_to_string(&p)
                            .map(|t| (p.display().to_string(), t))
                            .map_err(|source| Error::Io {
                                path: p.display().to_string(),
                                source,
                            })
                    })
                    .collect::<Result<_>>()?
            }
        };
        Self::parse(files.iter().map(|(o, t)| (o.as_str(), t.as_str())))
    }

    /// A library from `(origin, TOML text)` pairs, checked as a whole.
    pub fn parse<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut lib = Library::default();
        for (origin, text) in files {
            lib.add(origin, text)?;
        }
        lib.validate()?;
        Ok(lib)
    }

    fn add(&mut self, origin: &str, text: &str) -> Result<()> {
        let bad = |e: toml::de::Error| Error::Config(format!("{origin}: {e}"));
        let value: toml::Table = toml::from_str(text).map_err(bad)?;
        match value.get("kind").and_then(|k| k.as_str()).unwrap_or("playbook") {
            "playbook" => {
                let mut p: Playbook = toml::from_str(text).map_err(bad)?;
                p.origin = origin.to_string();
                self.playbooks.push(p);
            }
            "campaign" => {
                let mut c: Campaign = toml::from_str(text).map_err(bad)?;
                c.origin = origin.to_string();
                self.campaigns.push(c);
            }
            other => {
                return Err(Error::Config(format!(
                    "{origin}: kind = '{other}': expected 'playbook' or 'campaign'"
                )));
            }
        }
        Ok(())
    }

    pub fn campaign(&self, name: &str) -> Option<&Campaign> {
        self.campaigns.iter().find(|c| c.name == name)
    }

    /// Checks what can be checked without data: names, priorities, rules, references. The SQL
    /// of triggers is checked against the day's table by `cslake playbooks validate`.
    fn validate(&self) -> Result<()> {
        let mut names = BTreeSet::new();
        for p in &self.playbooks {
            let err = |m: String| Err(Error::Config(format!("{}: playbook '{}': {m}", p.origin, p.name)));
            if !names.insert(p.name.as_str()) {
                return err("a playbook or campaign of this name is defined twice".into());
            }
            if p.name.trim().is_empty() || p.name.contains(['|', '\'']) {
                return err("the name must not be empty or contain | or '".into());
            }
            let t = &p.trigger;
            if t.when.is_none()
                && t.entered_risk_band.is_none()
                && t.entered_health_band.is_none()
                && t.health_drop.is_none()
                && t.opportunity.is_none()
            {
                return err("[trigger] needs at least one of when, entered_risk_band, entered_health_band, health_drop, opportunity".into());
            }
            if let Some(d) = &t.health_drop
                && (d.days <= 0 || d.points <= 0.0)
            {
                return err("[trigger] health_drop needs positive points and days".into());
            }
            if p.cooldown_days < 0 {
                return err("cooldown_days must not be negative".into());
            }
            if p.steps.is_empty() {
                return err("has no [[steps]]".into());
            }
            let mut last = 0;
            for (i, s) in p.steps.iter().enumerate() {
                let serr = |m: String| err(format!("step {} ({:?}): {m}", i + 1, s.action));
                if s.day < last {
                    return serr(format!(
                        "day {} comes before the previous step's day {last}: list steps in order",
                        s.day
                    ));
                }
                last = s.day;
                match s.action {
                    StepAction::Task => {
                        if s.title.is_none() {
                            return serr("a task needs a title".into());
                        }
                        if let Some(pr) = &s.priority
                            && !TASK_PRIORITIES.contains(&pr.as_str())
                        {
                            return serr(format!("priority '{pr}': expected one of {TASK_PRIORITIES:?}"));
                        }
                        if let Some(a) = &s.assign
                            && !ASSIGN_RULES.contains(&a.as_str())
                            && !a.starts_with("csm:")
                        {
                            return serr(format!(
                                "assign '{a}': expected one of {ASSIGN_RULES:?} or csm:<id>"
                            ));
                        }
                    }
                    StepAction::Alert => {
                        if s.title.is_none() {
                            return serr("an alert needs a title".into());
                        }
                        if let Some(pr) = &s.priority
                            && !ALERT_PRIORITIES.contains(&pr.as_str())
                        {
                            return serr(format!("priority '{pr}': expected one of {ALERT_PRIORITIES:?}"));
                        }
                        for to in &s.to {
                            if to != "csm" && to != "team_lead" && !to.contains('@') {
                                return serr(format!(
                                    "to '{to}': expected csm, team_lead or an e-mail address"
                                ));
                            }
                        }
                    }
                    StepAction::SendContent => {
                        if s.top == Some(0) {
                            return serr("top must be at least 1".into());
                        }
                        for to in &s.to {
                            if !["contacts", "csm", "team_lead"].contains(&to.as_str()) && !to.contains('@') {
                                return serr(format!(
                                    "to '{to}': expected contacts, csm, team_lead or an e-mail address"
                                ));
                            }
                        }
                    }
                    StepAction::Campaign => {
                        let Some(c) = &s.campaign else {
                            return serr("a campaign step needs campaign = NAME".into());
                        };
                        if self.campaign(c).is_none() {
                            return serr(format!(
                                "campaign '{c}' is not in the library (campaigns: {:?})",
                                self.campaigns.iter().map(|c| &c.name).collect::<Vec<_>>()
                            ));
                        }
                    }
                }
            }
        }
        for c in &self.campaigns {
            let err = |m: String| Err(Error::Config(format!("{}: campaign '{}': {m}", c.origin, c.name)));
            if !names.insert(c.name.as_str()) {
                return err("a playbook or campaign of this name is defined twice".into());
            }
            if c.arms.is_empty() {
                return err("needs at least one [[arms]]".into());
            }
            if !(0.0..100.0).contains(&c.holdout_pct) {
                return err(format!("holdout_pct {} must be in [0, 100)", c.holdout_pct));
            }
            if c.arms.iter().any(|a| a.weight <= 0.0) {
                return err("arm weights must be positive".into());
            }
            let mut arms = BTreeSet::new();
            for a in &c.arms {
                if a.name == "control" || !arms.insert(a.name.as_str()) {
                    return err(format!("arm name '{}' is reserved or repeated", a.name));
                }
            }
            if c.to != "csm" && c.to != "contacts" {
                return err(format!("to = '{}': expected csm or contacts", c.to));
            }
        }
        Ok(())
    }
}

impl Trigger {
    /// The trigger as one SQL predicate over the day's row (see `act_day`).
    pub fn predicate(&self) -> String {
        let mut parts = Vec::new();
        if let Some(w) = &self.when {
            parts.push(format!("({w})"));
        }
        if let Some(b) = &self.entered_risk_band {
            let b = b.replace('\'', "''");
            parts.push(format!(
                "(risk_band = '{b}' AND (prev_risk_band IS NULL OR prev_risk_band <> '{b}'))"
            ));
        }
        if let Some(b) = &self.entered_health_band {
            let b = b.replace('\'', "''");
            parts.push(format!(
                "(health_band = '{b}' AND (prev_health_band IS NULL OR prev_health_band <> '{b}'))"
            ));
        }
        if let Some(d) = &self.health_drop {
            parts.push(format!("(health_{}d_ago - health_score >= {})", d.days, d.points));
        }
        if let Some(k) = &self.opportunity {
            if k == "any" {
                parts.push("(new_opportunity_kinds <> '')".into());
            } else {
                let k = k.replace('\'', "''");
                parts.push(format!(
                    "(strpos(',' || new_opportunity_kinds || ',', ',{k},') > 0)"
                ));
            }
        }
        parts.join(" AND ")
    }

    /// The day offsets `health_drop` needs a column for.
    pub fn health_days(&self) -> Option<i64> {
        self.health_drop.as_ref().map(|d| d.days)
    }
}

/// Identifiers a predicate mentions (to show their values as the reason it fired).
pub fn identifiers(sql: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_str = false;
    let mut cur = String::new();
    for ch in sql.chars().chain(std::iter::once(' ')) {
        if ch == '\'' {
            in_str = !in_str;
            cur.clear();
            continue;
        }
        if in_str {
            continue;
        }
        if ch.is_ascii_alphanumeric() || ch == '_' {
            cur.push(ch);
        } else {
            if !cur.is_empty()
                && !cur.chars().next().is_some_and(|c| c.is_ascii_digit())
                && !out.contains(&cur)
            {
                out.push(cur.clone());
            }
            cur.clear();
        }
    }
    out
}

/// Fills `{column}` placeholders from a row; unknown names stay as they are.
pub fn fill(template: &str, mut value: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end)
                if after[..end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                let name = &after[..end];
                match value(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The template library the settings point at.
pub fn library(settings: &Settings) -> Result<Library> {
    let dir = settings
        .file
        .actions
        .library
        .as_ref()
        .map(|p| settings.config_path(p));
    Library::load(dir.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_library_is_valid() {
        let lib = Library::load(None).unwrap();
        assert!(lib.playbooks.len() >= 3);
        assert!(!lib.campaigns.is_empty());
    }

    #[test]
    fn trigger_predicate_and_reasons() {
        let t = Trigger {
            when: Some("risk_score >= 70 AND segment = 'Enterprise'".into()),
            entered_risk_band: Some("critical".into()),
            ..Default::default()
        };
        assert_eq!(
            t.predicate(),
            "(risk_score >= 70 AND segment = 'Enterprise') AND (risk_band = 'critical' AND (prev_risk_band IS NULL OR prev_risk_band <> 'critical'))"
        );
        assert_eq!(
            identifiers("risk_score >= 70 AND segment = 'Enterprise'"),
            vec!["risk_score", "AND", "segment"]
        );
        assert_eq!(
            fill("Call {name} ({risk_score}) {x} {", |n| (n != "x")
                .then(|| n.to_uppercase())),
            "Call NAME (RISK_SCORE) {x} {"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let mut lib = Library::default();
        lib.add(
            "p.toml",
            "name = 'x'\nversion = 1\n[trigger]\nwhen = 'true'\n[[steps]]\naction = 'task'\ntitle = 't'\npriority = 'P1'\n",
        )
        .unwrap();
        let e = lib.validate().unwrap_err().to_string();
        assert!(
            e.contains("p.toml: playbook 'x': step 1 (Task): priority 'P1'"),
            "{e}"
        );
        let mut lib = Library::default();
        let e = lib
            .add("q.toml", "name = 'x'\nversion = 1\nwhen = 'true'\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("q.toml") && e.contains("unknown field `when`"), "{e}");
        for (step, said) in [
            ("top = 0", "step 1 (SendContent): top must be at least 1"),
            (
                "to = ['customers']",
                "step 1 (SendContent): to 'customers': expected contacts, csm, team_lead or an e-mail address",
            ),
        ] {
            let mut lib = Library::default();
            lib.add(
                "c.toml",
                &format!("name = 'c'\nversion = 1\n[trigger]\nwhen = 'true'\n[[steps]]\naction = 'send_content'\n{step}\n"),
            )
            .unwrap();
            let e = lib.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("c.toml: playbook 'c': {said}")), "{e}");
        }
    }
}
