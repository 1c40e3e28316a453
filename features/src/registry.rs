use std::path::Path;

use crate::{Error, Result};

/// One feature view: a `SELECT` producing `account_id, as_of_date` and feature columns.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureView {
    pub name: String,
    pub entity: String,
    pub description: String,
    pub owner: String,
    pub sources: Vec<String>,
    /// Feature columns in order, with a readable label ("product events in the last 30 days").
    pub features: Vec<(String, String)>,
    pub sql: String,
    /// Where it came from: `builtin:NAME.sql` or a file path.
    pub origin: String,
    /// The running state the view reads, if it keeps one (`NAME.state.sql`, `NAME.step.sql`).
    pub state: Option<ViewState>,
}

/// What a view keeps from one day to the next: a table `NAME_state` the view's SQL reads (one
/// row per entity), computed from scratch by `sql` for any date, or advanced one day from the
/// previous day's rows (registered as `previous_state`) by `step`. Both must give the same rows;
/// the daily run uses `step` when the previous day's rows are there and still valid.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewState {
    /// The table name the view reads and the lake keeps (`features.<table>`).
    pub table: String,
    pub sql: String,
    pub step: Option<String>,
    /// Where the state SQL came from.
    pub origin: String,
}

/// Tables computed once per as-of date, after the spine and before the views, for every view
/// that reads them (`sql/active_users.sql`): what several views would otherwise each compute.
/// Each is kept like a view's state (`features.<table>`, the last dates) and stepped from the day
/// before on a daily run (`sql/active_users.step.sql`).
pub fn shared_states() -> Vec<ViewState> {
    vec![ViewState {
        table: "active_users".into(),
        sql: include_str!("../../sql/active_users.sql").into(),
        step: Some(include_str!("../../sql/active_users.step.sql").into()),
        origin: "sql/active_users.sql".into(),
    }]
}

/// How the cost of a view's daily run grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Maintenance {
    /// Advanced a day at a time from the previous day's state, plus what it reads directly
    /// (windows of the rollups).
    Step,
    /// Recomputed from its windows of the daily rollups and the entity tables.
    Window,
    /// Reads `usage_events` itself: grows with the history.
    History,
}

impl Maintenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Maintenance::Step => "step",
            Maintenance::Window => "window",
            Maintenance::History => "history",
        }
    }
}

/// The feature views cslake computes.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub views: Vec<FeatureView>,
}

/// The built-in views, embedded so the binary works from any directory.
pub const BUILTIN_VIEWS: &[(&str, &str)] = &[
    (
        "usage_activity.sql",
        include_str!("../../sql/features/usage_activity.sql"),
    ),
    (
        "subscription.sql",
        include_str!("../../sql/features/subscription.sql"),
    ),
    ("support.sql", include_str!("../../sql/features/support.sql")),
    ("billing.sql", include_str!("../../sql/features/billing.sql")),
    (
        "relationship.sql",
        include_str!("../../sql/features/relationship.sql"),
    ),
    (
        "engagement.sql",
        include_str!("../../sql/features/engagement.sql"),
    ),
    ("content.sql", include_str!("../../sql/features/content.sql")),
];

/// The built-in views' states, `(view, state SQL, step SQL)`.
pub const BUILTIN_STATES: &[(&str, &str, &str)] = &[(
    "usage_activity",
    include_str!("../../sql/features/usage_activity.state.sql"),
    include_str!("../../sql/features/usage_activity.step.sql"),
)];

pub const SPINE_SQL: &str = include_str!("../../sql/spine.sql");
/// The daily usage rollups the usage views read, `(name, SELECT)`: per account, day and event
/// type, and per account, day and user. `{{where}}` narrows one to some days when it is refreshed.
pub const ROLLUPS: &[(&str, &str)] = &[
    ("usage_daily", include_str!("../../sql/rollups/usage_daily.sql")),
    (
        "usage_daily_users",
        include_str!("../../sql/rollups/usage_daily_users.sql"),
    ),
];
pub const SPINE_ACTIVITY_SQL: &str = include_str!("../../sql/spine_activity.sql");
pub const CHURN_SUBSCRIPTION_GAP_SQL: &str = include_str!("../../sql/labels/churn_subscription_gap.sql");
pub const CHURN_CANCELLATION_SQL: &str = include_str!("../../sql/labels/churn_cancellation.sql");
pub const CHURN_INACTIVITY_SQL: &str = include_str!("../../sql/labels/churn_inactivity.sql");
pub const EXPANSION_SQL: &str = include_str!("../../sql/labels/expansion_mrr_increase.sql");

impl Registry {
    pub fn builtin() -> Result<Self> {
        let mut views: Vec<FeatureView> = BUILTIN_VIEWS
            .iter()
            .map(|(file, sql)| FeatureView::parse(sql, &format!("builtin:{file}")))
            .collect::<Result<_>>()?;
        for (name, state, step) in BUILTIN_STATES {
            if let Some(v) = views.iter_mut().find(|v| v.name == *name) {
                v.state = Some(ViewState {
                    table: format!("{name}_state"),
                    sql: state.to_string(),
                    step: Some(step.to_string()),
                    origin: format!("builtin:{name}.state.sql"),
                });
            }
        }
        Ok(Self { views })
    }

    /// Adds every `*.sql` file of a user folder; a user view replaces a built-in of the same name.
    /// `NAME.state.sql` and `NAME.step.sql` are the state of view NAME (table `NAME_state`): a
    /// user's own, or a replacement of a built-in view's (which a replaced view otherwise keeps).
    pub fn with_dir(mut self, dir: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let file_name = |p: &Path| {
            p.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let (companions, views): (Vec<_>, Vec<_>) = files.into_iter().partition(|p| {
            let f = file_name(p);
            f.ends_with(".state.sql") || f.ends_with(".step.sql")
        });
        for path in views {
            let mut view = FeatureView::parse(&read(&path)?, &path.display().to_string())?;
            if let Some(old) = self.views.iter().find(|v| v.name == view.name) {
                view.state = old.state.clone();
            }
            self.views.retain(|v| v.name != view.name);
            self.views.push(view);
        }
        let mut states: Vec<(String, ViewState)> = Vec::new();
        for path in companions.iter().filter(|p| file_name(p).ends_with(".state.sql")) {
            let name = file_name(path).trim_end_matches(".state.sql").to_string();
            states.push((
                name.clone(),
                ViewState {
                    table: format!("{name}_state"),
                    sql: read(path)?,
                    step: None,
                    origin: path.display().to_string(),
                },
            ));
        }
        for path in companions.iter().filter(|p| file_name(p).ends_with(".step.sql")) {
            let name = file_name(path).trim_end_matches(".step.sql").to_string();
            let Some((_, state)) = states.iter_mut().find(|(n, _)| *n == name) else {
                return Err(Error::View {
                    view: name.clone(),
                    path: path.display().to_string(),
                    message: format!("a step needs the state it advances: {name}.state.sql is missing"),
                });
            };
            state.step = Some(read(path)?);
        }
        for (name, state) in states {
            let Some(view) = self.views.iter_mut().find(|v| v.name == name) else {
                return Err(Error::View {
                    view: name.clone(),
                    path: state.origin.clone(),
                    message: format!("no feature view named '{name}' reads this state"),
                });
            };
            view.state = Some(state);
        }
        Ok(self)
    }

    /// The views whose source tables all exist; the others are left out with a warning (a
    /// company without billing data still gets usage and support features).
    pub fn available(&self, exists: impl Fn(&str) -> bool) -> Registry {
        let views = self
            .views
            .iter()
            .filter(|v| {
                let missing: Vec<&String> = v.sources.iter().filter(|s| !exists(s)).collect();
                if !missing.is_empty() {
                    tracing::warn!(
                        view = v.name.as_str(),
                        ?missing,
                        "feature view skipped: source tables missing"
                    );
                }
                missing.is_empty()
            })
            .cloned()
            .collect();
        Registry { views }
    }

    pub fn get(&self, name: &str) -> Option<&FeatureView> {
        self.views.iter().find(|v| v.name == name)
    }

    /// Every feature column name, in view order.
    pub fn feature_names(&self) -> Vec<String> {
        self.views
            .iter()
            .flat_map(|v| v.features.iter().map(|(n, _)| n.clone()))
            .collect()
    }

    /// The shared tables some view reads ([`shared_states`]).
    pub fn shared_needed(&self) -> Vec<ViewState> {
        shared_states()
            .into_iter()
            .filter(|s| self.views.iter().any(|v| reads(&v.sql, &s.table)))
            .collect()
    }

    /// Every state a run computes and the lake keeps, with what owns it (a view, or a shared
    /// table itself): the states views read ([`Registry::needs_state`]) and the shared tables
    /// they read ([`Registry::shared_needed`]).
    pub fn kept_states(&self) -> Vec<(String, ViewState)> {
        let mut out: Vec<(String, ViewState)> = self
            .views
            .iter()
            .filter_map(|v| self.needs_state(v).map(|s| (v.name.clone(), s.clone())))
            .collect();
        out.extend(self.shared_needed().into_iter().map(|s| (s.table.clone(), s)));
        out
    }

    /// The state `owner` keeps, when a view of the registry reads it (its own SQL or another
    /// view's: `engagement` reads `usage_activity_state`).
    pub fn needs_state<'a>(&self, owner: &'a FeatureView) -> Option<&'a ViewState> {
        owner
            .state
            .as_ref()
            .filter(|s| self.views.iter().any(|v| reads(&v.sql, &s.table)))
    }

    /// The views whose states `view` reads (itself included).
    pub fn states_read_by(&self, view: &FeatureView) -> Vec<&FeatureView> {
        self.views
            .iter()
            .filter(|owner| owner.state.as_ref().is_some_and(|s| reads(&view.sql, &s.table)))
            .collect()
    }

    /// The readable label of a feature column.
    pub fn label(&self, feature: &str) -> Option<&str> {
        self.views
            .iter()
            .flat_map(|v| v.features.iter())
            .find(|(n, _)| n == feature)
            .map(|(_, l)| l.as_str())
    }
}

/// Whether the SQL (comments aside) names `table`.
pub(crate) fn reads(sql: &str, table: &str) -> bool {
    let code: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let table = table.to_ascii_lowercase();
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|t| t == table)
}

impl FeatureView {
    /// Whether a daily run of the view costs in proportion to its window: neither it nor its
    /// state reads `usage_events` itself, whose scan grows with history.
    pub fn incremental(&self) -> bool {
        self.maintenance() != Maintenance::History
    }

    /// How the view is kept up to date day by day.
    pub fn maintenance(&self) -> Maintenance {
        let state = self.state_used();
        let history = reads(&self.sql, "usage_events")
            || state.is_some_and(|s| {
                reads(&s.sql, "usage_events") || s.step.as_deref().is_some_and(|st| reads(st, "usage_events"))
            });
        if history {
            Maintenance::History
        } else if state.is_some_and(|s| s.step.is_some()) {
            Maintenance::Step
        } else {
            Maintenance::Window
        }
    }

    /// The state, when the view's SQL reads it (a user view replacing a built-in one may not).
    pub fn state_used(&self) -> Option<&ViewState> {
        self.state.as_ref().filter(|s| reads(&self.sql, &s.table))
    }

    /// Parses the `-- key: value` header. `name` and at least one `feature` are required.
    pub fn parse(sql: &str, origin: &str) -> Result<Self> {
        let mut view = FeatureView {
            name: String::new(),
            entity: "account".into(),
            description: String::new(),
            owner: String::new(),
            sources: Vec::new(),
            features: Vec::new(),
            sql: sql.to_string(),
            origin: origin.to_string(),
            state: None,
        };
        for line in sql.lines() {
            let Some(rest) = line.trim().strip_prefix("--") else {
                if line.trim().is_empty() {
                    continue;
                }
                break;
            };
            let Some((key, value)) = rest.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "name" => view.name = value.to_string(),
                "entity" => view.entity = value.to_string(),
                "description" => view.description = value.to_string(),
                "owner" => view.owner = value.to_string(),
                "sources" => view.sources = value.split(',').map(|s| s.trim().to_string()).collect(),
                "feature" => {
                    let (name, label) = value.split_once('|').unwrap_or((value, value));
                    view.features
                        .push((name.trim().to_string(), label.trim().to_string()));
                }
                _ => {}
            }
        }
        let err = |message: &str| Error::View {
            view: view.name.clone(),
            path: origin.to_string(),
            message: message.to_string(),
        };
        if view.name.is_empty() {
            return Err(err("the header has no '-- name: ...' line"));
        }
        if view.features.is_empty() {
            return Err(err("the header lists no '-- feature: column | label' line"));
        }
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_views_parse_and_every_sql_file_is_registered() {
        let reg = Registry::builtin().unwrap();
        let on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../sql/features"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let (companions, on_disk): (Vec<String>, Vec<String>) = on_disk
            .into_iter()
            .partition(|f| f.ends_with(".state.sql") || f.ends_with(".step.sql"));
        for file in &companions {
            let view = file.split('.').next().unwrap();
            assert!(
                BUILTIN_STATES.iter().any(|(v, _, _)| *v == view),
                "sql/features/{file} is not embedded in BUILTIN_STATES"
            );
        }
        for file in &on_disk {
            assert!(
                BUILTIN_VIEWS.iter().any(|(f, _)| f == file),
                "sql/features/{file} is not embedded in BUILTIN_VIEWS"
            );
        }
        assert_eq!(reg.views.len(), on_disk.len());
        let names = reg.feature_names();
        assert!(names.contains(&"events_30d".to_string()));
        assert_eq!(reg.label("latest_nps"), Some("latest NPS answer (0-10)"));
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "a feature column is defined twice");
    }

    #[test]
    fn views_reading_raw_events_are_not_incremental() {
        let reg = Registry::builtin().unwrap();
        assert!(reg.views.iter().all(FeatureView::incremental));
        assert_eq!(
            reg.get("usage_activity").unwrap().maintenance(),
            Maintenance::Step
        );
        assert_eq!(reg.get("support").unwrap().maintenance(), Maintenance::Window);
        let raw = FeatureView::parse(
            "-- name: raw\n-- sources: usage_events\n-- feature: n | n\nSELECT account_id, COUNT(*) AS n FROM usage_events GROUP BY 1",
            "raw.sql",
        )
        .unwrap();
        assert!(!raw.incremental());
    }

    #[test]
    fn a_user_folder_gives_a_view_its_state_and_a_step_without_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("cslake-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("logins.sql"),
            "-- name: logins\n-- sources: usage_events\n-- feature: logins | logins\n\
             SELECT s.account_id, s.as_of_date, COALESCE(st.n, 0) AS logins FROM spine s \
             LEFT JOIN logins_state st ON st.account_id = s.account_id",
        )
        .unwrap();
        std::fs::write(
            dir.join("logins.state.sql"),
            "SELECT account_id, COUNT(*) AS n FROM usage_daily GROUP BY account_id",
        )
        .unwrap();
        std::fs::write(
            dir.join("logins.step.sql"),
            "SELECT account_id, n FROM previous_state",
        )
        .unwrap();
        // a user's usage_activity that still reads the built-in state keeps it
        std::fs::write(
            dir.join("usage_activity.sql"),
            BUILTIN_VIEWS
                .iter()
                .find(|(f, _)| *f == "usage_activity.sql")
                .unwrap()
                .1,
        )
        .unwrap();
        let reg = Registry::builtin().unwrap().with_dir(&dir).unwrap();
        let logins = reg.get("logins").unwrap();
        assert_eq!(logins.state_used().unwrap().table, "logins_state");
        assert_eq!(logins.maintenance(), Maintenance::Step);
        let usage = reg.get("usage_activity").unwrap();
        assert!(usage.origin.ends_with("usage_activity.sql") && !usage.origin.starts_with("builtin:"));
        assert_eq!(usage.maintenance(), Maintenance::Step);
        assert_eq!(
            reg.views.len(),
            BUILTIN_VIEWS.len() + 1,
            "companion files are not views"
        );

        std::fs::remove_file(dir.join("logins.state.sql")).unwrap();
        let e = Registry::builtin().unwrap().with_dir(&dir).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "feature view 'logins' ({}): a step needs the state it advances: logins.state.sql is missing",
                dir.join("logins.step.sql").display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn header_errors_name_the_file() {
        let e = FeatureView::parse("-- name: x\nSELECT 1", "my.sql").unwrap_err();
        assert_eq!(
            e.to_string(),
            "feature view 'x' (my.sql): the header lists no '-- feature: column | label' line"
        );
    }
}
