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
];

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
        let views = BUILTIN_VIEWS
            .iter()
            .map(|(file, sql)| FeatureView::parse(sql, &format!("builtin:{file}")))
            .collect::<Result<_>>()?;
        Ok(Self { views })
    }

    /// Adds every `*.sql` file of a user folder; a user view replaces a built-in of the same name.
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
        for path in files {
            let sql = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            let view = FeatureView::parse(&sql, &path.display().to_string())?;
            self.views.retain(|v| v.name != view.name);
            self.views.push(view);
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

    /// The readable label of a feature column.
    pub fn label(&self, feature: &str) -> Option<&str> {
        self.views
            .iter()
            .flat_map(|v| v.features.iter())
            .find(|(n, _)| n == feature)
            .map(|(_, l)| l.as_str())
    }
}

impl FeatureView {
    /// Whether a daily run of the view costs in proportion to its window: it reads the daily
    /// rollups (and entity tables), not `usage_events` itself, whose scan grows with history.
    pub fn incremental(&self) -> bool {
        let code: String = self
            .sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        !code
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|t| t == "usage_events")
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
        let raw = FeatureView::parse(
            "-- name: raw\n-- sources: usage_events\n-- feature: n | n\nSELECT account_id, COUNT(*) AS n FROM usage_events GROUP BY 1",
            "raw.sql",
        )
        .unwrap();
        assert!(!raw.incremental());
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
