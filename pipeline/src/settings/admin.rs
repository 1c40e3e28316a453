//! `[pii]` and `[maintain]`: personal data at rest and housekeeping.

use serde::Deserialize;

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
