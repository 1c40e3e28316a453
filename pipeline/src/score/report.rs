//! What `cslake score` reports.

use std::collections::BTreeMap;

#[derive(Debug, Clone, serde::Serialize)]
pub struct TopAccount {
    pub account_id: String,
    pub name: String,
    pub risk_score: i32,
    pub mrr: f64,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScoreReport {
    pub as_of: String,
    pub model_version: String,
    pub accounts: usize,
    pub risk_bands: BTreeMap<String, usize>,
    pub health_bands: BTreeMap<String, usize>,
    pub opportunities: usize,
    pub expansion_mrr: f64,
    /// Whether an expansion propensity model set the opportunities' probabilities.
    pub expansion_model: bool,
    pub top_at_risk: Vec<TopAccount>,
}
