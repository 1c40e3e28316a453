//! `[pii]`, `[maintain]`, `[leases]` and `[access]`: personal data at rest, housekeeping, writers
//! and who may run what.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[access]`: actors to roles, roles to commands (see `admin/access.rs`). Without the section
/// every command is open to whoever runs the binary.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Actor (OS user, or the name a scheduler sets in `CSLAKE_ACTOR`; a trailing `*` matches a
    /// prefix, e.g. `"airflow:*"`) → its roles.
    #[serde(default)]
    pub actors: BTreeMap<String, Vec<String>>,
    /// Roles of an actor not listed (default none: every command but `access` is refused).
    #[serde(default)]
    pub default_roles: Vec<String>,
    /// OS users that may run commands as another actor (`--actor`, `CSLAKE_ACTOR`): the
    /// scheduler's service account.
    #[serde(default)]
    pub delegates: Vec<String>,
    /// Roles of your own, or built-in ones redefined: role → commands (`"query"`, `"models *"`,
    /// `"*"`, `"@analyst"`).
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
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

/// `[backup]`: how many generations `cslake backup` keeps at its destination.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// The N newest generations, whatever their dates (default 3).
    pub keep_last: Option<usize>,
    /// The newest generation of each of the last N days that have one (default 30).
    pub keep_daily: Option<usize>,
    /// ... of each of the last N months (default 12).
    pub keep_monthly: Option<usize>,
    /// ... of each of the last N years (default 7).
    pub keep_yearly: Option<usize>,
}

/// `[leases]`: one writer per zone of the lake at a time (see `lake/lease.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// How long a lease lasts without renewal (default `"2m"`; renewed every third of it while
    /// the command runs). A writer that died on another machine blocks its zone this long.
    pub ttl: Option<String>,
    /// How long a command waits for a zone another writer holds before it fails with exit 1
    /// naming the holder (default `"10m"`).
    pub wait: Option<String>,
}

/// How long a lease lasts without renewal, and how long a writer waits for a held one.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimes {
    pub ttl: std::time::Duration,
    pub wait: std::time::Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        Self {
            ttl: std::time::Duration::from_secs(120),
            wait: std::time::Duration::from_secs(600),
        }
    }
}
