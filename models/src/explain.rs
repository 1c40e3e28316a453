use serde::{Deserialize, Serialize};

use crate::Scaler;

/// One feature's push on one account's churn logit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Contribution {
    pub feature: String,
    /// Signed contribution to the logit: positive raises the risk.
    pub contribution: f64,
    /// The account's raw value (NaN when missing).
    pub value: f64,
    /// The median of the training rows, for "12 against a typical 85".
    pub typical: f64,
}

/// For a linear model, `wⱼ · zⱼ` is exactly feature j's share of the logit relative to an
/// account with every feature at its training mean.
pub(crate) fn contributions(
    scaling: &Scaler,
    weights: &[f32],
    scaled: &[f32],
    raw: &[f32],
) -> Vec<Contribution> {
    let mut out: Vec<Contribution> = scaling
        .features
        .iter()
        .enumerate()
        .map(|(j, f)| Contribution {
            feature: f.name.clone(),
            contribution: f64::from(weights[j] * scaled[j]),
            value: f64::from(raw[j]),
            typical: f.median,
        })
        .collect();
    out.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    out
}
