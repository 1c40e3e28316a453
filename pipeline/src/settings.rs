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
    /// Lake location: a folder, `file://` or `memory://` (S3 is not wired in yet).
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
    /// Only records whose source fields have these values belong to the table, e.g.
    /// `filter = { type = "track" }` for the track calls of a Segment export (case is ignored).
    #[serde(default)]
    pub filter: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    /// A folder of extra `.sql` feature views (a view of the same name replaces the built-in).
    pub dir: Option<PathBuf>,
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
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// A new model replaces the current one unless its out-of-time ROC AUC is lower by more
    /// than this, measured on the same test window.
    pub promotion_tolerance: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            promotion_tolerance: 0.005,
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
}

impl Default for OpportunityConfig {
    fn default() -> Self {
        Self {
            seat_utilisation_min: 0.85,
            seat_headroom: 0.2,
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
        for name in self.file.ingest.tables.keys() {
            if crate::schema::core_table(name).is_none() {
                return Err(Error::Config(format!(
                    "[ingest.tables.{name}]: no such core table (tables: {})",
                    crate::schema::CORE_TABLES
                        .iter()
                        .map(|t| t.name)
                        .collect::<Vec<_>>()
                        .join(", ")
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
            definition: c.definition,
            lead_days: c.lead_days,
            horizon_days: c.horizon_days,
            grace_days: c.grace_days,
            inactivity_days: c.inactivity_days,
        }
    }

    pub fn reject_threshold(&self) -> f64 {
        self.file.ingest.reject_threshold.unwrap_or(0.001)
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
    }
}
