//! `[actions]`: the playbook library, channels and routes, SMTP, teams, assignment, delivery and
//! CRM write-back of `cslake act`.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::ingest::AuthConfig;

/// `[actions]` in cslake.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    /// Folder of playbook and campaign TOML files (default: the built-in templates).
    pub library: Option<PathBuf>,
    /// Where alerts, digests and campaign e-mails go.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// Which alerts go to which channels (every matching route applies).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    pub smtp: Option<SmtpConfig>,
    /// Per team (the `team` of core.csms): its lead, for escalations.
    #[serde(default)]
    pub teams: HashMap<String, TeamConfig>,
    #[serde(default)]
    pub assignment: AssignmentConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// CRM write-back targets.
    #[serde(default)]
    pub crm: Vec<CrmConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    /// `slack` (incoming webhook), `webhook` (JSON, optionally HMAC-signed) or `email`.
    pub kind: String,
    /// The URL, or the environment variable holding it (webhook URLs are secrets).
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// `webhook`: the environment variable holding the HMAC-SHA256 signing secret.
    pub secret_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Alert priorities this route takes (default: all).
    #[serde(default)]
    pub priorities: Vec<String>,
    /// Only alerts of these playbooks (default: all).
    #[serde(default)]
    pub playbooks: Vec<String>,
    /// Only accounts of these segments (default: all).
    #[serde(default)]
    pub segments: Vec<String>,
    pub channels: Vec<String>,
    /// Collect the day's alerts into one message per recipient (e-mail) or per channel.
    #[serde(default)]
    pub digest: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    pub tls: Option<String>,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// A PEM file with an extra trusted root (a private CA).
    pub ca_file: Option<PathBuf>,
    pub from: String,
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// The lead's e-mail (escalations, `assign = "team_lead"`).
    pub lead: Option<String>,
    /// The lead's csm_id when the lead also owns tasks.
    pub lead_csm_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentConfig {
    /// The default rule: owner, round_robin, least_loaded or least_arr.
    #[serde(default = "owner")]
    pub rule: String,
    /// Team by account segment, for rules that pick within a team (default: the owner's team).
    #[serde(default)]
    pub segment_teams: HashMap<String, String>,
}

fn owner() -> String {
    "owner".into()
}

impl Default for AssignmentConfig {
    fn default() -> Self {
        Self {
            rule: owner(),
            segment_teams: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Retries of one delivery within a run (with exponential backoff).
    #[serde(default = "three")]
    pub max_retries: u32,
    #[serde(default = "backoff")]
    pub backoff_ms: u64,
    #[serde(default = "timeout")]
    pub timeout_seconds: u64,
    /// Attempts over all runs before a delivery goes to the dead-letter table.
    #[serde(default = "eight")]
    pub dead_after_attempts: i64,
    /// A P1 alert not acknowledged after this many days is sent again ...
    #[serde(default = "one_day")]
    pub renotify_p1_after_days: i64,
    /// ... at most this many times.
    #[serde(default = "three_i")]
    pub renotify_max: i64,
}

fn three() -> u32 {
    3
}
fn three_i() -> i64 {
    3
}
fn eight() -> i64 {
    8
}
fn backoff() -> u64 {
    500
}
fn timeout() -> u64 {
    30
}
fn one_day() -> i64 {
    1
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_retries: three(),
            backoff_ms: backoff(),
            timeout_seconds: timeout(),
            dead_after_attempts: eight(),
            renotify_p1_after_days: one_day(),
            renotify_max: three_i(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmConfig {
    pub name: String,
    /// `hubspot` or `salesforce`.
    pub kind: String,
    pub base_url: Option<String>,
    pub auth: Option<AuthConfig>,
    /// Salesforce REST API version (default 60.0).
    pub api_version: Option<String>,
    /// The column of the day's row holding the CRM's record id (default `account_id`; e.g. a
    /// custom attribute `hubspot_id` landed by the connector).
    pub object_id: Option<String>,
    /// CRM field name = column of the day's row (`cslake_risk_score = "risk_score"`).
    pub fields: HashMap<String, String>,
    /// Also create the day's playbook tasks in the CRM.
    #[serde(default)]
    pub push_tasks: bool,
    /// Records per batch request (HubSpot allows 100, Salesforce 200).
    pub batch_size: Option<usize>,
}
