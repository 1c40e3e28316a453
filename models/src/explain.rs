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

/// Each feature's share of one account's logit against an account with that feature at its
/// training mean (for the linear model exactly `wⱼ · zⱼ`), largest first.
pub(crate) fn contributions(scaling: &Scaler, shares: &[f32], raw: &[f32]) -> Vec<Contribution> {
    let mut out: Vec<Contribution> = scaling
        .features
        .iter()
        .enumerate()
        .map(|(j, f)| Contribution {
            feature: f.name.clone(),
            contribution: f64::from(shares[j]),
            value: f64::from(raw[j]),
            typical: f.median,
        })
        .collect();
    out.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    out
}
