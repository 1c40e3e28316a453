//! One typed `Settings`, resolved once: flags > `CSLAKE_*` environment (both handled by the CLI)
//! > `cslake.toml` > defaults. Secrets never live here: they come from the environment only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

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
    #[serde(default)]
    pub pii: PiiConfig,
    /// How old the newest row of a core table may be when features are built:
    /// `usage_events = { warn_after = "2d", error_after = "7d" }`.
    #[serde(default)]
    pub freshness: HashMap<String, crate::jobs::quality::FreshnessCheck>,
    /// Playbooks, channels, routing, assignment and CRM write-back (`cslake act`).
    #[serde(default)]
    pub actions: crate::actions::ActionsConfig,
    #[serde(default)]
    pub analytics: AnalyticsConfig,
    #[serde(default)]
    pub report: ReportConfig,
    #[serde(default)]
    pub publish: PublishConfig,
}

/// `cslake publish`: copies of output tables in databases BI tools read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    pub postgres: Option<PostgresConfig>,
}

/// `[publish.postgres]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The environment variable holding the connection URL (`postgres://user:password@host/db`);
    /// URLs carry passwords, so they are read from the environment only.
    pub url_env: String,
    /// The schema the tables go to (default `cslake`).
    pub schema: Option<String>,
    /// Lake tables to publish (default: every `analytics.*` table). Each becomes
    /// `<schema>.<zone>_<name>`.
    pub tables: Option<Vec<String>>,
    /// A PEM file with the CA that signed the server's certificate, when it is not a public one
    /// (TLS itself is asked for with `sslmode=require` in the URL).
    pub ca_file: Option<PathBuf>,
}

/// `cslake report`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// The report's title (default "Customer success report").
    pub title: Option<String>,
    /// The currency symbol money is written with (default "$").
    pub currency: Option<String>,
    /// How many accounts the at-risk and expansion tables list (default 15).
    pub top_accounts: Option<usize>,
    /// `--deliver` sends the report to these `[[actions.channels]]` (email: the files attached;
    /// webhook: the KPIs and the files, base64; slack: the KPIs).
    #[serde(default)]
    pub deliver: Vec<String>,
    /// The recipients of e-mail channels.
    #[serde(default)]
    pub recipients: Vec<String>,
}

/// `cslake analytics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// What one intervention (a treated campaign assignment) costs, in MRR terms, subtracted
    /// from the retained MRR in `intervention_roi_mrr`.
    #[serde(default)]
    pub cost_per_intervention: f64,
    /// A CSV replacing the shipped industry benchmarks (`data/industry_benchmarks.csv`: kpi,
    /// band_kind, band, acv_min, acv_max, p25, median, p75, source, url, published).
    pub industry_benchmarks: Option<PathBuf>,
    /// Goals for the team: `analytics.team_goals` reports each CSM's progress against them.
    #[serde(default)]
    pub goals: Vec<Goal>,
}

/// One goal of `[[analytics.goals]]`: a column of `analytics.team_performance` and its target.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    /// A numeric column of `analytics.team_performance` (e.g. `grr_12m`, `tasks_completed`,
    /// `tasks_overdue`, `mean_hours_to_acknowledge`).
    pub metric: String,
    pub target: f64,
    /// `at_least` (default) or `at_most`.
    #[serde(default = "at_least")]
    pub direction: String,
    /// Only for this team (default: every CSM).
    pub team: Option<String>,
}

fn at_least() -> String {
    "at_least".into()
}

/// Personal data at rest: see `pii.rs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    /// `encrypt` (AES-256-GCM, reversible with the key), `pseudonymise` (HMAC, irreversible) or
    /// `off` (default).
    pub mode: Option<String>,
    /// The environment variable with the current key (default `CSLAKE_PII_KEY`).
    pub key_env: Option<String>,
    /// Variables with earlier keys, still accepted for reading until `cslake pii rotate` ran.
    #[serde(default)]
    pub old_key_envs: Vec<String>,
    /// `table.column` to protect (default: contacts.email, contacts.name, csms.email, csms.name).
    #[serde(default)]
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintainConfig {
    /// Versions younger than this stay readable (time travel); older files and log entries are
    /// removed by `cslake maintain` (default 7).
    pub keep_history_days: Option<i64>,
    /// Compaction target (default 128 MB).
    pub target_file_mb: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// The file-drop folder or URL that `cslake ingest` reads.
    pub source: Option<String>,
    /// Share of rejected rows above which the run fails with exit code 3 (default 0.001 = 0.1%).
    pub reject_threshold: Option<f64>,
    /// `quarantine` (default) or `keep` rows that reference an unknown account.
    pub orphans: Option<String>,
    /// Rows of an event table a run keeps in memory before it moves them to local disk until the
    /// commit (default 1,000,000): memory stays bounded however large the export.
    pub spill_rows: Option<usize>,
    /// Per canonical table: which files hold it and how their fields map.
    #[serde(default)]
    pub tables: HashMap<String, TableMapping>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    /// Glob relative to the source root, e.g. `exports/crm_companies_*.csv`.
    pub files: Option<String>,
    /// CSV field delimiter (default `,`; `\t` for `.tsv` files).
    pub delimiter: Option<String>,
    /// canonical column = "source field"
    #[serde(default)]
    pub columns: HashMap<String, String>,
    /// chrono formats tried for date and timestamp columns after the standard ones,
    /// e.g. `["%m/%d/%Y", "%d.%m.%Y %H:%M"]`.
    #[serde(default)]
    pub date_formats: Vec<String>,
    /// Value mapping per canonical column: `[ingest.tables.accounts.values.segment]`
    /// `"Small Business" = "SMB"`. Matching ignores case.
    #[serde(default)]
    pub values: HashMap<String, HashMap<String, String>>,
    /// A value for a canonical column the source lacks (or leaves empty), e.g. `plan = "standard"`.
    #[serde(default)]
    pub constants: HashMap<String, String>,
    /// The only values a column may take (after `values` mapping; case is ignored), e.g.
    /// `allowed = { status = ["active", "canceled", "past_due"] }`: other values are rejected.
    #[serde(default)]
    pub allowed: HashMap<String, Vec<String>>,
    /// Only records whose source fields have these values belong to the table, e.g.
    /// `filter = { type = "track" }` for the track calls of a Segment export (case is ignored).
    #[serde(default)]
    pub filter: HashMap<String, String>,

    // --- API sources only ([sources.tables.NAME]) ---
    /// Endpoint path, relative to the source's `base_url` (or an absolute URL).
    pub path: Option<String>,
    /// `GET` (default) or `POST`.
    pub method: Option<String>,
    /// JSON body sent with `POST`.
    pub body: Option<String>,
    /// Dotted path of the records array in the response (`data`, `results`, `items`, `records`
    /// are found without it; `""` when the response is the array itself).
    pub records: Option<String>,
    /// Query parameters sent with every request.
    #[serde(default)]
    pub params: HashMap<String, String>,
    pub paging: Option<PagingConfig>,
    pub incremental: Option<IncrementalConfig>,
    /// Extra source fields to ask for (HubSpot properties, Salesforce SOQL fields): they land
    /// as attributes unless a column maps them.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Salesforce: the SOQL query (default: the connector's query for the table).
    pub query: Option<String>,
    /// Source fields (or dotted prefixes) not kept as attributes, e.g. `["attributes"]`.
    #[serde(default)]
    pub ignore: Vec<String>,
}

impl TableMapping {
    /// Fills what `self` leaves unset from `defaults` (a connector's built-in mapping): the user's
    /// configuration wins field by field and column by column.
    pub fn over(mut self, defaults: &TableMapping) -> TableMapping {
        fn or<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
        fn merge<V: Clone>(a: &mut HashMap<String, V>, b: &HashMap<String, V>) {
            for (k, v) in b {
                a.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        or(&mut self.files, &defaults.files);
        or(&mut self.delimiter, &defaults.delimiter);
        merge(&mut self.columns, &defaults.columns);
        self.date_formats.extend(defaults.date_formats.iter().cloned());
        merge(&mut self.values, &defaults.values);
        merge(&mut self.constants, &defaults.constants);
        merge(&mut self.allowed, &defaults.allowed);
        merge(&mut self.filter, &defaults.filter);
        or(&mut self.path, &defaults.path);
        or(&mut self.method, &defaults.method);
        or(&mut self.body, &defaults.body);
        or(&mut self.records, &defaults.records);
        merge(&mut self.params, &defaults.params);
        or(&mut self.paging, &defaults.paging);
        or(&mut self.incremental, &defaults.incremental);
        for f in &defaults.fields {
            if !self.fields.contains(f) {
                self.fields.push(f.clone());
            }
        }
        or(&mut self.query, &defaults.query);
        self.ignore.extend(defaults.ignore.iter().cloned());
        self
    }

    /// Keys that only mean something for API sources, set here.
    pub fn api_keys_set(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (set, name) in [
            (self.path.is_some(), "path"),
            (self.method.is_some(), "method"),
            (self.body.is_some(), "body"),
            (self.records.is_some(), "records"),
            (!self.params.is_empty(), "params"),
            (self.paging.is_some(), "paging"),
            (self.incremental.is_some(), "incremental"),
            (!self.fields.is_empty(), "fields"),
            (self.query.is_some(), "query"),
        ] {
            if set {
                v.push(name);
            }
        }
        v
    }
}

/// How an API returns the next page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingConfig {
    /// `none`, `cursor` (a token in the body), `next_url` (a URL in the body), `link` (the
    /// `Link: <…>; rel="next"` header), `offset`, `page`, or `last_id` (`starting_after` = the
    /// last record's id).
    #[serde(rename = "type")]
    pub kind: PagingKind,
    /// `cursor` / `next_url`: dotted path of the token or URL in the response.
    pub next: Option<String>,
    /// The query parameter (or POST body field) that receives the cursor, offset, page or id.
    pub param: Option<String>,
    /// The query parameter of the page size, e.g. `limit`.
    pub limit_param: Option<String>,
    pub page_size: Option<u32>,
    /// Dotted path of a boolean that is true while more pages follow (`has_more`).
    pub has_more: Option<String>,
    /// Dotted path of a boolean that is true on the last page (`done`).
    pub done: Option<String>,
    /// `last_id`: the record field holding the id (default `id`).
    pub id_field: Option<String>,
    /// `page`: the number of the first page (default 1).
    pub first_page: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PagingKind {
    #[default]
    None,
    Cursor,
    NextUrl,
    Link,
    Offset,
    Page,
    LastId,
}

/// Incremental reads: the next run asks only for records changed since the last one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// The record field that holds its last-modified (or created) time.
    pub field: String,
    /// The query parameter that receives the cursor (the largest `field` value loaded so far).
    pub param: Option<String>,
    /// Re-read this far behind the cursor to catch late changes, e.g. `"35d"`, `"6h"`.
    pub lookback: Option<String>,
}

/// One API connector: `[[sources]]` in `cslake.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// What `cslake ingest --source NAME` calls it; also recorded as each row's source.
    pub name: String,
    pub kind: SourceKind,
    /// API root (default: the vendor's public endpoint; required for `rest`).
    pub base_url: Option<String>,
    pub auth: Option<AuthConfig>,
    /// Requests per second this source may make (default: unlimited for `rest`, the vendor's
    /// documented limit for the others).
    pub requests_per_second: Option<f64>,
    /// Per request (default 60).
    pub timeout_seconds: Option<u64>,
    /// Retries of a 429, a 5xx or a network error (default 5).
    pub max_retries: Option<u32>,
    /// First retry delay in milliseconds, doubled each time, with jitter (default 500).
    pub backoff_ms: Option<u64>,
    /// Connectors with built-in tables: load only these (default: all of them).
    #[serde(default)]
    pub only: Vec<String>,
    /// Google Calendar: the calendar ids to read (default `["primary"]`).
    #[serde(default)]
    pub calendars: Vec<String>,
    /// Salesforce: the REST API version (default `v60.0`).
    pub api_version: Option<String>,
    #[serde(default)]
    pub tables: HashMap<String, TableMapping>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    Rest,
    Hubspot,
    Salesforce,
    Stripe,
    GoogleCalendar,
}

/// Credentials are always read from environment variables named here, never from the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `none`, `bearer`, `header`, `query`, `basic`, `oauth2_client_credentials` or
    /// `oauth2_refresh_token`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `bearer`, `header`, `query`: the variable holding the token or key.
    pub token_env: Option<String>,
    /// `header` / `query`: the header or parameter name, e.g. `X-Api-Key`.
    pub name: Option<String>,
    /// `basic`
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// OAuth 2.0
    pub token_url: Option<String>,
    pub client_id_env: Option<String>,
    pub client_secret_env: Option<String>,
    pub refresh_token_env: Option<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    /// A folder of extra `.sql` feature views (a view of the same name replaces the built-in).
    pub dir: Option<PathBuf>,
    /// Quality thresholds per feature (`view.feature`, `feature` or `default`).
    #[serde(default)]
    pub checks: HashMap<String, crate::jobs::quality::FeatureCheck>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnConfig {
    /// What churn means: `subscription_gap` (default), `cancellation` or `inactivity`.
    pub definition: cslake_features::ChurnDefinition,
    /// For `inactivity`: an account counts as a customer while active within this many days.
    pub inactivity_days: i64,
    /// Label window length: "churns within N days".
    pub horizon_days: i64,
    /// Days between the observation date and the start of the label window.
    pub lead_days: i64,
    /// A subscription gap longer than this counts as churn.
    pub grace_days: i64,
    /// Spacing of the observation dates of the training set.
    pub observation_every_days: i64,
    /// History needed before the first observation date (so 90-day features are complete).
    pub warmup_days: i64,
    /// Observe each account only in the N days before a renewal (its `days_to_renewal` between 0
    /// and N), as renewal-risk reviews do; unset: every account at every observation date.
    pub observe_before_renewal_days: Option<i64>,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        Self {
            definition: cslake_features::ChurnDefinition::default(),
            inactivity_days: 30,
            horizon_days: 90,
            lead_days: 0,
            grace_days: 30,
            observation_every_days: 14,
            warmup_days: 90,
            observe_before_renewal_days: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// A new model replaces the current one unless its out-of-time ROC AUC is lower by more
    /// than this, measured on the same test window.
    pub promotion_tolerance: f64,
    /// Folds of the forward-in-time backtest run with every training (0 to skip it).
    pub backtest_folds: usize,
    /// Weight churners and stayers equally in the loss (default on). With few churners an
    /// unweighted model can stop learning early (250 demo accounts: ROC AUC 0.54 against 0.75);
    /// with many it can rank a little better (2,000: PR AUC 0.238 against 0.226). `cslake
    /// evaluate` shows the effect on your data.
    pub balance_classes: bool,
    /// `auto` (default: logistic regression and a small MLP are both trained, the MLP kept only
    /// when it ranks better on the validation window), `logistic` or `mlp`.
    pub family: cslake_models::Family,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            promotion_tolerance: 0.005,
            backtest_folds: 3,
            balance_classes: true,
            family: cslake_models::Family::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Risk score (0-100) lower bounds of the bands above `low`: `medium`, `high`, `critical`.
    pub band_medium: f64,
    pub band_high: f64,
    pub band_critical: f64,
    /// How many factors to keep per account.
    pub top_factors: usize,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            band_medium: 20.0,
            band_high: 40.0,
            band_critical: 60.0,
            top_factors: 3,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// A TOML file of health profiles (default: the built-in `sql/health/default.toml`).
    pub profiles: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpportunityConfig {
    /// Seat utilisation from which a seat expansion is proposed.
    pub seat_utilisation_min: f64,
    /// Seats proposed: enough for active users × (1 + headroom).
    pub seat_headroom: f64,
    /// The expansion label: MRR at least this many percent higher at the end of the window.
    pub expansion_min_increase_pct: i64,
    /// A tier upgrade is proposed when the expansion propensity model gives at least this.
    pub upgrade_min_probability: f64,
    /// Event types that belong to a tier (`enterprise = ["sso_login", "audit_export"]`): an
    /// account on the tier below that uses them is proposed the upgrade.
    pub tier_features: HashMap<String, Vec<String>>,
}

impl Default for OpportunityConfig {
    fn default() -> Self {
        Self {
            seat_utilisation_min: 0.85,
            seat_headroom: 0.2,
            expansion_min_increase_pct: 10,
            upgrade_min_probability: 0.3,
            tier_features: HashMap::new(),
        }
    }
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
}

/// Parses `512M`, `4G`, `2GiB`, `1000000` (bytes).
pub fn parse_bytes(s: &str) -> Result<usize> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Error::Config(format!("memory limit '{s}': expected e.g. 512M or 4G")))?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" | "KIB" => 1024.0,
        "M" | "MB" | "MIB" => 1024.0 * 1024.0,
        "G" | "GB" | "GIB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TB" | "TIB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(Error::Config(format!(
                "memory limit '{s}': unknown unit '{unit}' (use K, M, G or T)"
            )));
        }
    };
    Ok((n * mult) as usize)
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
        let lake = lake
            .or_else(|| file.lake.clone())
            .unwrap_or_else(|| "./lake".to_string());
        let actor = actor
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .or_else(|| std::env::var("USERNAME").ok())
            .or_else(|| {
                // containers often run without USER: ask the system
                let out = std::process::Command::new("id").arg("-un").output().ok()?;
                let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
                (!name.is_empty()).then_some(name)
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_limit = memory_limit
            .or_else(|| file.memory_limit.clone())
            .map(|m| parse_bytes(&m))
            .transpose()?;
        let s = Self {
            memory_limit,
            lake,
            file,
            config_dir,
            actor,
        };
        s.validate()?;
        Ok(s)
    }

    fn read(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    fn validate(&self) -> Result<()> {
        let c = &self.file.churn;
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
            crate::schema::CORE_TABLES
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (name, t) in &self.file.ingest.tables {
            if crate::schema::core_table(name).is_none() {
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
        }
        for (key, value) in &self.file.retention {
            crate::jobs::maintain::parse_days(value)
                .map_err(|e| Error::Config(format!("[retention] {key}: {e}")))?;
            let (zone, table) = match key.split_once('.') {
                Some((z, t)) => (z, Some(t)),
                None if crate::lake::ZONES.contains(&key.as_str()) => (key.as_str(), None),
                None => ("core", Some(key.as_str())),
            };
            let aged = [
                "usage_events",
                "interactions",
                "invoices",
                "subscriptions",
                "deals",
            ];
            let ok = match (zone, table) {
                ("core", Some(t)) => aged.contains(&t),
                ("core", None) => false,
                ("ops", Some(t)) => t == "runs" || t == "quarantine",
                ("models" | "ops", _) => false,
                (z, _) => crate::lake::ZONES.contains(&z),
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
            if crate::schema::core_table(name).is_none() {
                return Err(Error::Config(format!("[freshness] {table}: no such core table")));
            }
            for v in [&check.warn_after, &check.error_after].into_iter().flatten() {
                crate::jobs::maintain::parse_days(v)
                    .map_err(|e| Error::Config(format!("[freshness] {table}: {e}")))?;
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
                .and_then(|(t, col)| crate::schema::core_table(t).and_then(|s| s.column(col)))
                .is_some_and(|col| col.ty == crate::schema::ColType::Str);
            if !known {
                return Err(Error::Config(format!(
                    "[pii] columns: '{c}' is not a text column of a core table (write it as table.column)"
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.file.sources {
            if s.name.trim().is_empty() || !names.insert(s.name.as_str()) {
                return Err(Error::Config(format!(
                    "[[sources]]: every source needs a unique name ('{}' is empty or repeated)",
                    s.name
                )));
            }
            for (name, t) in &s.tables {
                if crate::schema::core_table(name).is_none() {
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

    /// The `[pii]` protector, when configured (its keys are read from the environment here).
    pub fn pii(&self) -> Result<Option<crate::pii::Protector>> {
        crate::pii::Protector::from_config(&self.file.pii)
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
    fn the_example_configuration_is_valid() {
        let file: FileConfig = toml::from_str(include_str!("../../cslake.example.toml")).unwrap();
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
        };
        s.validate().unwrap();
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert!(
            parse_bytes("lots")
                .unwrap_err()
                .to_string()
                .contains("expected e.g. 512M or 4G")
        );
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
    }
}
