//! `[features]`, `[freshness]`, `[churn]`, `[model]`, `[scoring]`, `[health]` and
//! `[opportunities]`: what the features are checked against, what churn means, and how models
//! are trained and their scores read.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    /// A folder of extra `.sql` feature views (a view of the same name replaces the built-in).
    pub dir: Option<PathBuf>,
    /// Quality thresholds per feature (`view.feature`, `feature` or `default`).
    #[serde(default)]
    pub checks: HashMap<String, FeatureCheck>,
    /// Which event types get metrics of their own (the generated `event_metrics` view).
    #[serde(default)]
    pub events: EventsConfig,
    /// Account attributes that become features (the generated `account_attributes` view).
    #[serde(default)]
    pub attributes: AttributesConfig,
}

/// `[features.attributes]`: account fields (keys of `accounts.attributes`, the source's own
/// columns cslake does not map, or the columns `industry`, `segment`, `country`) that become
/// model features, read as of each date from `core.attribute_history`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttributesConfig {
    /// Fields read as numbers (a value that is not one reads as missing).
    pub numeric: Vec<String>,
    /// Fields read as categories: each becomes the share of the date's customer accounts with
    /// the same value, plus one 0/1 column per level listed in `levels`.
    pub categorical: Vec<String>,
    /// Levels of a categorical field that get a 0/1 column of their own, e.g.
    /// `levels = { "Contract Type" = ["monthly", "annual"] }`.
    pub levels: std::collections::BTreeMap<String, Vec<String>>,
    /// A date before an account's first recorded version reads that first version (default: a
    /// lake whose history starts at its first load has nothing earlier). Declare only fields
    /// whose value was known before the churn they might predict.
    pub backfill: bool,
}

impl Default for AttributesConfig {
    fn default() -> Self {
        Self {
            numeric: Vec::new(),
            categorical: Vec::new(),
            levels: Default::default(),
            backfill: true,
        }
    }
}

impl AttributesConfig {
    /// The declared attributes, in order: numbers first, then categories.
    pub fn declared(&self) -> Result<Vec<cslake_features::Attribute>, crate::Error> {
        if let Some(name) = self.levels.keys().find(|k| !self.categorical.contains(k)) {
            return Err(crate::Error::Config(format!(
                "[features.attributes] levels lists '{name}', which is not in categorical"
            )));
        }
        if let Some(name) = self.numeric.iter().find(|n| self.categorical.contains(n)) {
            return Err(crate::Error::Config(format!(
                "[features.attributes] '{name}' is declared both numeric and categorical"
            )));
        }
        Ok(self
            .numeric
            .iter()
            .map(|n| cslake_features::Attribute::Numeric(n.clone()))
            .chain(
                self.categorical
                    .iter()
                    .map(|n| cslake_features::Attribute::Categorical {
                        name: n.clone(),
                        levels: self.levels.get(n).cloned().unwrap_or_default(),
                    }),
            )
            .collect())
    }
}

/// `[features.events]`: the event types `event_metrics` measures one by one. They are chosen
/// once (the most frequent `top`, plus `types`) and kept in `features.event_types`, so every
/// later run, training and scoring sees the same columns; a change here chooses again.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `false`: no per-type metrics.
    pub enabled: bool,
    /// How many of the most frequent event types get metrics.
    pub top: usize,
    /// Event types that always get metrics, however rare.
    pub types: Vec<String>,
    /// Event types that never do.
    pub exclude: Vec<String>,
    /// A type used by fewer than this share of the accounts with events is too rare to learn
    /// from and is skipped (listed types excepted).
    pub min_account_share: f64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            top: 10,
            types: Vec::new(),
            exclude: Vec::new(),
            min_account_share: 0.05,
        }
    }
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
    /// `auto` (default: logistic regression, gradient-boosted trees and a small MLP are all
    /// trained; the trees or the MLP are kept only when they rank better on the validation window
    /// than logistic regression by more than two DeLong standard errors), `logistic`, `gbdt` or
    /// `mlp`.
    pub family: cslake_models::Family,
    /// The tree family's complexity budget (perpetual's one knob: higher learns longer with
    /// smaller steps; the validation window still cuts the ensemble back).
    pub gbdt_budget: f32,
    /// After the out-of-time split has chosen the family, the training length and the
    /// calibration (and measured them), fit the deployed weights again on every observation
    /// date whose label has closed, the validation and test windows included (default on): the
    /// model that scores then knows the newest churners. `false`: deploy the split model.
    pub refit: bool,
    /// A model trained on fewer observation dates than this is provisional: it scores, but no
    /// playbook acts on its risk bands until `cslake models promote` confirms it.
    pub min_observation_dates: usize,
    /// Likewise for fewer churned rows in its training set.
    pub min_positives: usize,
    /// Likewise when, in a risk band of its test window, the mean predicted churn probability
    /// and the observed churn rate differ by more than this (absolute, 0.10 = 10 points) and by
    /// more than two standard errors.
    pub calibration_tolerance: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            promotion_tolerance: 0.005,
            backtest_folds: 3,
            balance_classes: true,
            family: cslake_models::Family::Auto,
            gbdt_budget: cslake_models::GbdtConfig::default().budget,
            refit: true,
            min_observation_dates: 6,
            min_positives: 20,
            calibration_tolerance: 0.10,
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

/// `[features.checks]`: per feature (`view.feature` or `feature`) or `default`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureCheck {
    pub max_null_rate: Option<f64>,
    /// Against the previous day.
    pub max_psi: Option<f64>,
    /// Against the training set of the current model.
    pub max_psi_training: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// `warn` (default) or `fail`.
    pub action: Option<String>,
}

/// `[freshness]`: per core table, how old its newest row may be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessCheck {
    pub warn_after: Option<String>,
    pub error_after: Option<String>,
}
