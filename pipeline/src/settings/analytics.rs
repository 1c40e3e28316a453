//! `[analytics]`, `[report]` and `[publish]`: the tables BI tools read, the executive report, and
//! the databases the tables are copied to.

use std::path::PathBuf;

use serde::Deserialize;

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
