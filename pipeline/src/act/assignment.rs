//! Who gets a playbook's tasks and alerts: the rules of `[actions.assignment]` (owner, round
//! robin, least loaded, least ARR, team lead, a fixed CSM) over the CSMs of `core.csms`, and the
//! addresses of an alert's recipients.

use std::collections::{BTreeMap, HashMap};

use deltalake::datafusion::prelude::SessionContext;

use crate::act::day::Day;
use crate::act::tables::{Rows, Task, read};
use crate::{Result, Settings};

/// A CSM as tasks and alerts need them.
#[derive(Debug, Clone, Default)]
pub struct Csm {
    pub email: Option<String>,
    pub team: Option<String>,
}

pub(crate) async fn load_csms(ctx: &SessionContext) -> Result<BTreeMap<String, Csm>> {
    let mut out = BTreeMap::new();
    for b in read(ctx, "core.csms", "").await? {
        let r = Rows(&b);
        let (id, email, team) = (r.s("csm_id")?, r.s("email")?, r.s("team")?);
        for i in 0..b.num_rows() {
            if let Some(id) = &id[i] {
                out.insert(
                    id.clone(),
                    Csm {
                        email: email[i].clone(),
                        team: team[i].clone(),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Who gets tasks: the rules of `[actions.assignment]` over the CSMs of core.csms.
pub struct Assigner<'a> {
    settings: &'a Settings,
    csms: BTreeMap<String, Csm>,
    open_load: HashMap<String, i64>,
    book_arr: HashMap<String, f64>,
    round_robin: HashMap<String, usize>,
    /// Alert recipients that resolved to no address, with how often.
    unresolved: BTreeMap<String, usize>,
}

impl<'a> Assigner<'a> {
    /// The rules' state before the day: each CSM's open tasks and book ARR, and where the round
    /// robin of each team stands (it continues from the tasks assigned before the day, so a re-run
    /// assigns alike).
    pub fn new(settings: &'a Settings, csms: BTreeMap<String, Csm>, tasks: &[Task], day: &Day) -> Self {
        let as_of = day.as_of;
        Self {
            settings,
            open_load: tasks
                .iter()
                .filter(|t| t.is_open() && t.created_on < as_of)
                .filter_map(|t| t.assignee.clone())
                .fold(HashMap::new(), |mut m, a| {
                    *m.entry(a).or_insert(0) += 1;
                    m
                }),
            book_arr: day.ids.iter().enumerate().fold(HashMap::new(), |mut m, (i, _)| {
                if let (Some(c), Some(mrr)) = (day.text("csm_id", i), day.num("mrr", i)) {
                    *m.entry(c).or_insert(0.0) += mrr * 12.0;
                }
                m
            }),
            round_robin: tasks
                .iter()
                .filter(|t| t.created_on < as_of)
                .filter_map(|t| t.team.clone())
                .fold(HashMap::new(), |mut m, t| {
                    *m.entry(t).or_insert(0) += 1;
                    m
                }),
            csms,
            unresolved: BTreeMap::new(),
        }
    }

    /// Alert recipients that resolved to no address, with how often.
    pub fn unresolved(&self) -> &BTreeMap<String, usize> {
        &self.unresolved
    }

    pub(crate) fn team_of(&self, day: &Day, i: usize) -> Option<String> {
        let a = &self.settings.file.actions.assignment;
        day.text("segment", i)
            .and_then(|s| a.segment_teams.get(&s).cloned())
            .or_else(|| {
                day.text("csm_id", i)
                    .and_then(|c| self.csms.get(&c).and_then(|c| c.team.clone()))
            })
    }

    pub(crate) fn members(&self, team: Option<&str>) -> Vec<String> {
        self.csms
            .iter()
            .filter(|(_, c)| team.is_none() || c.team.as_deref() == team)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// (csm_id, e-mail, team) for a task of the account in row `i`.
    pub(crate) fn assign(
        &mut self,
        rule: &str,
        day: &Day,
        i: usize,
    ) -> (Option<String>, Option<String>, Option<String>) {
        let team = self.team_of(day, i);
        let owner = day.text("csm_id", i);
        let pick = match rule {
            "owner" => owner.clone().or_else(|| self.least_loaded(team.as_deref())),
            "round_robin" => {
                let m = self.members(team.as_deref());
                if m.is_empty() {
                    owner.clone()
                } else {
                    let k = self
                        .round_robin
                        .entry(team.clone().unwrap_or_default())
                        .or_insert(0);
                    let who = m[*k % m.len()].clone();
                    *k += 1;
                    Some(who)
                }
            }
            "least_loaded" => self.least_loaded(team.as_deref()).or(owner.clone()),
            "least_arr" => {
                let m = self.members(team.as_deref());
                m.into_iter()
                    .min_by(|a, b| {
                        let (x, y) = (
                            self.book_arr.get(a).copied().unwrap_or(0.0),
                            self.book_arr.get(b).copied().unwrap_or(0.0),
                        );
                        x.total_cmp(&y).then(a.cmp(b))
                    })
                    .or(owner.clone())
            }
            "team_lead" => team
                .as_ref()
                .and_then(|t| self.settings.file.actions.teams.get(t))
                .and_then(|t| t.lead_csm_id.clone())
                .or(owner.clone()),
            fixed => fixed.strip_prefix("csm:").map(str::to_string).or(owner.clone()),
        };
        if let Some(p) = &pick {
            *self.open_load.entry(p.clone()).or_insert(0) += 1;
        }
        let email = pick
            .as_ref()
            .and_then(|p| self.csms.get(p))
            .and_then(|c| c.email.clone());
        let team = pick
            .as_ref()
            .and_then(|p| self.csms.get(p))
            .and_then(|c| c.team.clone())
            .or(team);
        (pick, email, team)
    }

    pub(crate) fn least_loaded(&self, team: Option<&str>) -> Option<String> {
        self.members(team)
            .into_iter()
            .min_by_key(|m| (self.open_load.get(m).copied().unwrap_or(0), m.clone()))
    }

    /// Addresses for an alert's `to` entries.
    pub(crate) fn recipients(&mut self, to: &[String], day: &Day, i: usize) -> Vec<String> {
        let mut out = Vec::new();
        for t in to {
            let addr = match t.as_str() {
                "csm" => day
                    .text("csm_id", i)
                    .and_then(|c| self.csms.get(&c))
                    .and_then(|c| c.email.clone()),
                "team_lead" => self
                    .team_of(day, i)
                    .and_then(|t| self.settings.file.actions.teams.get(&t))
                    .and_then(|t| t.lead.clone()),
                literal => Some(literal.to_string()),
            };
            match addr {
                Some(a) if !out.contains(&a) => out.push(a),
                Some(_) => {}
                None => *self.unresolved.entry(t.clone()).or_insert(0) += 1,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::tables::Cols;
    use chrono::NaiveDate;

    fn day() -> Day {
        let batch = Cols::default()
            .key(
                "account_id",
                vec!["a1".into(), "a2".into(), "a3".into(), "a4".into()],
            )
            .str(
                "csm_id",
                vec![Some("c1".into()), Some("c1".into()), None, Some("c3".into())],
            )
            .str(
                "segment",
                vec![
                    Some("SMB".into()),
                    Some("SMB".into()),
                    Some("SMB".into()),
                    Some("Enterprise".into()),
                ],
            )
            .float("mrr", vec![Some(100.0), Some(900.0), Some(50.0), Some(5000.0)])
            .batch()
            .unwrap();
        Day::from_batch(NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(), batch).unwrap()
    }

    fn settings() -> Settings {
        let mut file = crate::settings::FileConfig::default();
        file.actions
            .assignment
            .segment_teams
            .insert("SMB".into(), "small".into());
        file.actions.teams.insert(
            "small".into(),
            crate::settings::TeamConfig {
                lead: Some("lead@x.test".into()),
                lead_csm_id: Some("c2".into()),
            },
        );
        Settings {
            lake: String::new(),
            file,
            config_dir: ".".into(),
            actor: "test".into(),
            memory_limit: None,
            engine: Default::default(),
        }
    }

    fn assigner<'a>(settings: &'a Settings, day: &Day) -> Assigner<'a> {
        let csm = |team: &str, email: &str| Csm {
            email: Some(email.into()),
            team: Some(team.into()),
        };
        Assigner {
            settings,
            csms: [
                ("c1".to_string(), csm("small", "c1@x.test")),
                ("c2".to_string(), csm("small", "c2@x.test")),
                ("c3".to_string(), csm("big", "c3@x.test")),
            ]
            .into_iter()
            .collect(),
            open_load: [("c1".to_string(), 5)].into_iter().collect(),
            book_arr: day.ids.iter().enumerate().fold(HashMap::new(), |mut m, (i, _)| {
                if let (Some(c), Some(mrr)) = (day.text("csm_id", i), day.num("mrr", i)) {
                    *m.entry(c).or_insert(0.0) += mrr * 12.0;
                }
                m
            }),
            round_robin: HashMap::new(),
            unresolved: BTreeMap::new(),
        }
    }

    #[test]
    fn tasks_go_to_the_person_the_rule_names() {
        let (settings, day) = (settings(), day());
        let mut a = assigner(&settings, &day);
        // owner; an account without one goes to the least-loaded CSM of its segment's team
        assert_eq!(a.assign("owner", &day, 0).0.as_deref(), Some("c1"));
        assert_eq!(
            a.assign("owner", &day, 2),
            (Some("c2".into()), Some("c2@x.test".into()), Some("small".into()))
        );
        // round robin within the team, in csm_id order
        let rr: Vec<String> = (0..3)
            .map(|_| a.assign("round_robin", &day, 0).0.unwrap())
            .collect();
        assert_eq!(rr, ["c1", "c2", "c1"]);
        // least loaded: c1 started with 5 open tasks
        assert_eq!(a.assign("least_loaded", &day, 1).0.as_deref(), Some("c2"));
        // least ARR in the book: c2 owns nothing
        assert_eq!(a.assign("least_arr", &day, 0).0.as_deref(), Some("c2"));
        // the team lead, and a fixed CSM
        assert_eq!(a.assign("team_lead", &day, 0).0.as_deref(), Some("c2"));
        assert_eq!(a.assign("csm:c3", &day, 0).0.as_deref(), Some("c3"));
        // alert recipients: the owner's e-mail, the team's lead, literal addresses; unknown ones counted
        assert_eq!(
            a.recipients(&["csm".into(), "team_lead".into(), "ops@x.test".into()], &day, 0),
            ["c1@x.test", "lead@x.test", "ops@x.test"]
        );
        assert!(a.recipients(&["team_lead".into()], &day, 3).is_empty());
        assert_eq!(a.unresolved.get("team_lead"), Some(&1));
    }
}
