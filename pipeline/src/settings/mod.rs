//! One typed `Settings`, resolved once: flags > `CSLAKE_*` environment (both handled by the CLI)
//! > `cslake.toml` > defaults. Secrets never live here: they come from the environment only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::lake::schema::{self, ZONES};
use crate::units::{parse_bytes, parse_days};
use crate::{Error, Result};

mod actions;
mod admin;
mod analytics;
mod ingest;
mod model;

pub use actions::{
    ActionsConfig, AssignmentConfig, ChannelConfig, CrmConfig, DeliveryConfig, RouteConfig, SmtpConfig,
    TeamConfig,
};
pub use admin::{AccessConfig, BackupConfig, LeaseConfig, LeaseTimes, MaintainConfig, PiiConfig};
pub use analytics::{AnalyticsConfig, Goal, PostgresConfig, PublishConfig, ReportConfig};
pub use ingest::{
    AuthConfig, IncrementalConfig, IngestConfig, PagingConfig, PagingKind, Rule, SourceConfig, SourceKind,
    TableMapping,
};
pub use model::{
    ChurnConfig, EventsConfig, FeatureCheck, FeaturesConfig, FreshnessCheck, HealthConfig, ModelConfig,
    OpportunityConfig, ScoringConfig,
};

/// `cslake.toml`. Unknown keys are an error, so a typo never silently does nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Lake location: a folder, `file://`, `memory://` or `s3://bucket/prefix`.
    pub lake: Option<String>,
    /// Memory DataFusion may use before spilling to disk, e.g. `"4G"` or `"512M"`.
    pub memory_limit: Option<String>,
    /// Passed to the object store as they are (e.g. `aws_endpoint`).
    #[serde(default)]
    pub storage: HashMap<String, String>,
    /// Passed to DataFusion's `ConfigOptions::set` (e.g. `datafusion.execution.batch_size`).
    #[serde(default)]
    pub datafusion: HashMap<String, String>,
    #[serde(default)]
    pub ingest: IngestConfig,
    /// API connectors (`[[sources]]`), ingested in the order they are listed.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub features: FeaturesConfig,
    #[serde(default)]
    pub churn: ChurnConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub scoring: ScoringConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub opportunities: OpportunityConfig,
    /// How long rows are kept, by table (`usage_events`, `ops.quarantine`) or zone (`scores`):
    /// `"730d"`, `"104w"`, `"2y"`. Applied by `cslake maintain` and by ingest.
    #[serde(default)]
    pub retention: HashMap<String, String>,
    #[serde(default)]
    pub maintain: MaintainConfig,
    /// One writer per zone at a time: how long a lease lasts and how long a writer waits.
    #[serde(default)]
    pub leases: LeaseConfig,
    #[serde(default)]
    pub pii: PiiConfig,
    /// How old the newest row of a core table may be when features are built:
    /// `usage_events = { warn_after = "2d", error_after = "7d" }`.
    #[serde(default)]
    pub freshness: HashMap<String, FreshnessCheck>,
    /// Playbooks, channels, routing, assignment and CRM write-back (`cslake act`).
    #[serde(default)]
    pub actions: ActionsConfig,
    #[serde(default)]
    pub analytics: AnalyticsConfig,
    #[serde(default)]
    pub report: ReportConfig,
    #[serde(default)]
    pub publish: PublishConfig,
    /// Who may run what (absent: every command is open).
    pub access: Option<AccessConfig>,
    /// Generations `cslake backup` keeps.
    #[serde(default)]
    pub backup: BackupConfig,
    /// Where feature builds, training sets and backfills run.
    #[serde(default)]
    pub engine: EngineConfig,
}

/// `[engine]`: `url = "ballista://scheduler:50050"` runs the queries of feature builds, training
/// sets and backfills on an Apache Ballista cluster (default: in the cslake process).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    pub url: Option<String>,
}

/// Everything a job needs to know, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lake: String,
    pub file: FileConfig,
    /// Where `cslake.toml` was read from (for relative paths in it).
    pub config_dir: PathBuf,
    pub actor: String,
    /// Bytes, from `--memory-limit` / `CSLAKE_MEMORY_LIMIT` / `memory_limit`.
    pub memory_limit: Option<usize>,
    /// Where queries run, from `--engine` / `CSLAKE_ENGINE` / `[engine] url`.
    pub engine: crate::cluster::Engine,
}

/// Rules name columns of their table and fit their type.
fn check_rules(at: &str, table: &str, t: &TableMapping) -> Result<()> {
    use schema::ColType;
    for (column, rule) in &t.rules {
        let ty = schema::core_table(table)
            .and_then(|s| s.column(column))
            .map(|c| c.ty)
            .ok_or_else(|| Error::Config(format!("{at} {column}: not a column of core.{table}")))?;
        let numeric = matches!(ty, ColType::Int | ColType::Float);
        let dated = matches!(ty, ColType::Date | ColType::Timestamp);
        if (rule.min.is_some() || rule.max.is_some()) && !numeric {
            return Err(Error::Config(format!(
                "{at} {column}: min and max are for numbers"
            )));
        }
        if rule.future_days.is_some() && !dated {
            return Err(Error::Config(format!(
                "{at} {column}: future_days is for dates and times"
            )));
        }
        if rule.future_days.is_some_and(|d| !(0..=36_500).contains(&d)) {
            return Err(Error::Config(format!(
                "{at} {column}: future_days from 0 to 36500"
            )));
        }
    }
    Ok(())
}

/// The OS user this process runs as (the actor when none is named).
pub fn os_user() -> String {
    std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .filter(|u| !u.is_empty())
        .or_else(|| {
            // containers often run without USER: ask the system
            let out = std::process::Command::new("id").arg("-un").output().ok()?;
            let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (!name.is_empty()).then_some(name)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `location` (a folder or a URL) as seen from `dir`: relative folders are joined to it, URLs and
/// absolute paths are kept.
fn beside(dir: &Path, location: &str) -> String {
    let path = Path::new(location);
    let here = dir.as_os_str().is_empty() || dir == Path::new(".");
    if location.contains("://") || path.is_absolute() || here {
        location.to_string()
    } else {
        dir.join(path).to_string_lossy().into_owned()
    }
}

/// The memory budget of a command when none is set: half of the machine's memory (or of the
/// container's limit, when it has a lower one).
pub fn default_memory_limit() -> Option<usize> {
    use sysinfo::System;
    let mut sys = System::new();
    sys.refresh_memory();
    let mut total = sys.total_memory();
    if let Some(limits) = sys.cgroup_limits() {
        total = total.min(limits.total_memory);
    }
    (total > 0).then(|| usize::try_from(total / 2).unwrap_or(usize::MAX))
}

impl Settings {
    /// Reads `cslake.toml` (the given path, or `./cslake.toml` when it exists) and applies
    /// the overrides the CLI resolved from flags and environment.
    pub fn load(
        config: Option<&Path>,
        lake: Option<String>,
        actor: Option<String>,
        memory_limit: Option<String>,
    ) -> Result<Self> {
        let (file, config_dir) = match config {
            Some(p) => (
                Self::read(p)?,
                p.parent().map(Path::to_path_buf).unwrap_or_default(),
            ),
            None if Path::new("cslake.toml").exists() => {
                (Self::read(Path::new("cslake.toml"))?, PathBuf::from("."))
            }
            None => (FileConfig::default(), PathBuf::from(".")),
        };
        let mut file = file;
        // locations in the file are relative to the file's folder, not to wherever the command
        // runs (a scheduler's task runs in a temporary folder); flags and environment are the
        // caller's, relative to the working folder
        file.ingest.source = file.ingest.source.map(|s| beside(&config_dir, &s));
        let lake = lake
            .or_else(|| file.lake.as_deref().map(|l| beside(&config_dir, l)))
            .unwrap_or_else(|| "./lake".to_string());
        let actor = actor.unwrap_or_else(os_user);
        let memory_limit = memory_limit
            .or_else(|| file.memory_limit.clone())
            .map(|m| parse_bytes(&m).map_err(|e| Error::Config(format!("memory limit {e}"))))
            .transpose()?
            .or_else(default_memory_limit);
        let engine = match &file.engine.url {
            Some(url) => crate::cluster::Engine::parse(url)?,
            None => crate::cluster::Engine::Local,
        };
        let s = Self {
            memory_limit,
            engine,
            lake,
            file,
            config_dir,
            actor,
        };
        s.validate()?;
        Ok(s)
    }

    /// The engine `--engine` / `CSLAKE_ENGINE` names, over `[engine] url`.
    pub fn with_engine(mut self, engine: Option<&str>) -> Result<Self> {
        if let Some(e) = engine {
            self.engine = crate::cluster::Engine::parse(e)?;
        }
        Ok(self)
    }

    fn read(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let c = &self.file.churn;
        // ten years: longer windows are typos, and would overflow date arithmetic
        for (key, v) in [
            ("horizon_days", Some(c.horizon_days)),
            ("lead_days", Some(c.lead_days)),
            ("grace_days", Some(c.grace_days)),
            ("inactivity_days", Some(c.inactivity_days)),
            ("observation_every_days", Some(c.observation_every_days)),
            ("warmup_days", Some(c.warmup_days)),
            ("observe_before_renewal_days", c.observe_before_renewal_days),
        ] {
            if v.is_some_and(|d| d.unsigned_abs() > 3650) {
                return Err(Error::Config(format!(
                    "[churn] {key} = {}: at most 3650 days",
                    v.unwrap_or_default()
                )));
            }
        }
        if c.horizon_days <= 0
            || c.observation_every_days <= 0
            || c.inactivity_days <= 0
            || c.lead_days < 0
            || c.grace_days < 0
        {
            return Err(Error::Config(
                "[churn]: horizon_days, observation_every_days and inactivity_days must be positive, lead_days and grace_days not negative".into(),
            ));
        }
        if let Some(o) = &self.file.ingest.orphans
            && o != "quarantine"
            && o != "keep"
        {
            return Err(Error::Config(format!(
                "[ingest] orphans = '{o}': expected 'quarantine' or 'keep'"
            )));
        }
        let tables = || {
            schema::CORE_TABLES
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (name, t) in &self.file.ingest.tables {
            if schema::core_table(name).is_none() {
                return Err(Error::Config(format!(
                    "[ingest.tables.{name}]: no such core table (tables: {})",
                    tables()
                )));
            }
            if let Some(key) = t.api_keys_set().first() {
                return Err(Error::Config(format!(
                    "[ingest.tables.{name}] {key}: only API sources ([[sources]]) have it"
                )));
            }
            check_rules(&format!("[ingest.tables.{name}.rules]"), name, t)?;
        }
        for (key, value) in &self.file.retention {
            parse_days(value).map_err(|e| Error::Config(format!("[retention] {key}: {e}")))?;
            let (zone, table) = match key.split_once('.') {
                Some((z, t)) => (z, Some(t)),
                None if ZONES.contains(&key.as_str()) => (key.as_str(), None),
                None => ("core", Some(key.as_str())),
            };
            let aged = [
                "usage_events",
                "interactions",
                "invoices",
                "subscriptions",
                "deals",
                "content_events",
            ];
            let ok = match (zone, table) {
                ("core", Some(t)) => aged.contains(&t),
                ("core", None) => false,
                ("ops", Some(t)) => t == "runs" || t == "quarantine",
                ("models" | "ops", _) => false,
                (z, _) => ZONES.contains(&z),
            };
            if !ok {
                return Err(Error::Config(format!(
                    "[retention] {key}: not a table rows can age out of (core: {}; ops.runs, ops.quarantine; \
                     or a zone of dated tables: features, scores, training, actions, analytics). Accounts and contacts \
                     leave with `cslake gdpr erase --account`",
                    aged.join(", ")
                )));
            }
        }
        for (table, check) in &self.file.freshness {
            let name = table.strip_prefix("core.").unwrap_or(table);
            if schema::core_table(name).is_none() {
                return Err(Error::Config(format!("[freshness] {table}: no such core table")));
            }
            for v in [&check.warn_after, &check.error_after].into_iter().flatten() {
                parse_days(v).map_err(|e| Error::Config(format!("[freshness] {table}: {e}")))?;
            }
        }
        for (key, check) in &self.file.features.checks {
            if let Some(a) = check.action.as_deref()
                && a != "warn"
                && a != "fail"
            {
                return Err(Error::Config(format!(
                    "[features.checks] {key}: action = '{a}': expected 'warn' or 'fail'"
                )));
            }
        }
        for c in &self.file.pii.columns {
            let known = c
                .split_once('.')
                .and_then(|(t, col)| schema::core_table(t).and_then(|s| s.column(col)))
                .is_some_and(|col| col.ty == schema::ColType::Str);
            if !known {
                return Err(Error::Config(format!(
                    "[pii] columns: '{c}' is not a text column of a core table (write it as table.column)"
                )));
            }
        }
        self.lease_times()?;
        let mut names = std::collections::HashSet::new();
        for s in &self.file.sources {
            if s.name.trim().is_empty() || !names.insert(s.name.as_str()) {
                return Err(Error::Config(format!(
                    "[[sources]]: every source needs a unique name ('{}' is empty or repeated)",
                    s.name
                )));
            }
            for (name, t) in &s.tables {
                if schema::core_table(name).is_none() {
                    return Err(Error::Config(format!(
                        "source '{}': [sources.tables.{name}]: no such core table (tables: {})",
                        s.name,
                        tables()
                    )));
                }
                if t.files.is_some() || t.delimiter.is_some() {
                    return Err(Error::Config(format!(
                        "source '{}': [sources.tables.{name}]: `files` and `delimiter` are for file drops ([ingest.tables])",
                        s.name
                    )));
                }
                check_rules(
                    &format!("source '{}': [sources.tables.{name}.rules]", s.name),
                    name,
                    t,
                )?;
                if s.kind == SourceKind::Rest && t.path.is_none() {
                    return Err(Error::Config(format!(
                        "source '{}': [sources.tables.{name}] needs a `path` (the endpoint)",
                        s.name
                    )));
                }
            }
            if s.kind == SourceKind::Rest && s.base_url.is_none() {
                return Err(Error::Config(format!(
                    "source '{}': a `rest` source needs a `base_url`",
                    s.name
                )));
            }
        }
        Ok(())
    }

    /// `[leases]` as durations.
    pub fn lease_times(&self) -> Result<LeaseTimes> {
        let mut t = LeaseTimes::default();
        let l = &self.file.leases;
        for (key, value, slot) in [("ttl", &l.ttl, &mut t.ttl), ("wait", &l.wait, &mut t.wait)] {
            if let Some(v) = value {
                *slot = crate::units::parse_duration(v)
                    .and_then(|d| d.to_std().map_err(|e| e.to_string()))
                    .map_err(|e| Error::Config(format!("[leases] {key}: {e}")))?;
            }
        }
        if t.ttl < std::time::Duration::from_secs(3) {
            return Err(Error::Config("[leases] ttl: at least 3s".into()));
        }
        Ok(t)
    }

    /// A path from the config file, relative to the config file's folder.
    pub fn config_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.config_dir.join(p)
        }
    }

    /// The churn label as configured.
    pub fn label_spec(&self) -> cslake_features::LabelSpec {
        let c = &self.file.churn;
        cslake_features::LabelSpec {
            target: cslake_features::Target::Churn,
            min_increase_pct: self.file.opportunities.expansion_min_increase_pct,
            definition: c.definition,
            lead_days: c.lead_days,
            horizon_days: c.horizon_days,
            grace_days: c.grace_days,
            inactivity_days: c.inactivity_days,
        }
    }

    /// The label of `target` as configured (expansion uses the churn windows).
    pub fn label_for(&self, target: cslake_features::Target) -> cslake_features::LabelSpec {
        cslake_features::LabelSpec {
            target,
            ..self.label_spec()
        }
    }

    pub fn reject_threshold(&self) -> f64 {
        self.file.ingest.reject_threshold.unwrap_or(0.001)
    }

    /// `[ingest] spill_dir`, relative to the configuration file's folder.
    pub fn spill_root(&self) -> PathBuf {
        match &self.file.ingest.spill_dir {
            Some(d) => self.config_dir.join(d),
            None => crate::lake::spill::default_root(),
        }
    }

    pub fn spill_rows(&self) -> usize {
        self.file.ingest.spill_rows.unwrap_or(1_000_000).max(1)
    }

    pub fn keep_orphans(&self) -> bool {
        self.file.ingest.orphans.as_deref() == Some("keep")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_in_the_file_are_relative_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).unwrap();
        let file = conf.join("cslake.toml");
        std::fs::write(
            &file,
            "lake = \"lake\"\n[ingest]\nsource = \"exports\"\nspill_dir = \"spill\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), None, Some("t".into()), None).unwrap();
        assert_eq!(s.lake, conf.join("lake").to_string_lossy());
        assert_eq!(
            s.file.ingest.source.as_deref(),
            Some(&*conf.join("exports").to_string_lossy())
        );
        assert_eq!(s.spill_root(), conf.join("spill"));
        // the caller's own locations stay theirs; URLs and absolute paths are kept
        let s = Settings::load(Some(&file), Some("here".into()), Some("t".into()), None).unwrap();
        assert_eq!(s.lake, "here");
        std::fs::write(&file, "lake = \"s3://b/p\"\n[ingest]\nsource = \"/srv/x\"\n").unwrap();
        let s = Settings::load(Some(&file), None, Some("t".into()), None).unwrap();
        assert_eq!(
            (s.lake.as_str(), s.file.ingest.source.as_deref()),
            ("s3://b/p", Some("/srv/x"))
        );
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let file: FileConfig = toml::from_str(include_str!("../../../cslake.example.toml")).unwrap();
        assert_eq!(file.churn.horizon_days, 90);
        assert_eq!(file.ingest.tables["accounts"].columns["account_id"], "Company ID");
        let kinds: Vec<_> = file.sources.iter().map(|s| (s.name.as_str(), s.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("crm", SourceKind::Hubspot),
                ("billing", SourceKind::Stripe),
                ("helpdesk", SourceKind::Rest)
            ]
        );
        let helpdesk = &file.sources[2].tables["interactions"];
        assert_eq!(helpdesk.paging.as_ref().unwrap().kind, PagingKind::Cursor);
        assert_eq!(
            helpdesk.incremental.as_ref().unwrap().lookback.as_deref(),
            Some("1h")
        );
        let s = Settings {
            lake: "x".into(),
            file,
            config_dir: PathBuf::new(),
            actor: "t".into(),
            memory_limit: None,
            engine: Default::default(),
        };
        s.validate().unwrap();
    }

    #[test]
    fn unknown_tables_and_bad_values_are_configuration_errors() {
        let file: FileConfig = toml::from_str("[ingest.tables.acounts]\nfiles = \"a.csv\"\n").unwrap();
        let s = Settings {
            lake: "x".into(),
            file,
            config_dir: PathBuf::new(),
            actor: "t".into(),
            memory_limit: None,
            engine: Default::default(),
        };
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("configuration: [ingest.tables.acounts]: no such core table"),
            "{e}"
        );
        assert_eq!(Error::Config(e).exit_code(), 2);

        let check = |text: &str| {
            let file: FileConfig = toml::from_str(text).unwrap();
            Settings {
                lake: "x".into(),
                file,
                config_dir: PathBuf::new(),
                actor: "t".into(),
                memory_limit: None,
                engine: Default::default(),
            }
            .validate()
            .unwrap_err()
            .to_string()
        };
        assert!(
            check("[[sources]]\nname = \"api\"\nkind = \"rest\"\n")
                .contains("a `rest` source needs a `base_url`")
        );
        assert!(
            check("[[sources]]\nname = \"a\"\nkind = \"stripe\"\n[sources.tables.invoices]\nfiles = \"x\"\n")
                .contains("`files` and `delimiter` are for file drops")
        );
        assert!(check("[ingest.tables.accounts]\npath = \"x\"\n").contains("only API sources"));
        // huge numbers name their key instead of overflowing later
        assert!(
            check("[churn]\nhorizon_days = 99999999999\n")
                .contains("[churn] horizon_days = 99999999999: at most 3650 days")
        );
        assert!(check("[retention]\nusage_events = \"99999999999y\"\n").contains("[retention] usage_events"));
    }
}
