use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{Error, Result};

/// The profiles shipped with cslake.
pub const DEFAULT_PROFILES: &str = include_str!("../../sql/health/default.toml");

/// One measure: a feature scored 0-100 between `poor` and `healthy`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub name: String,
    pub feature: String,
    pub group: String,
    pub weight: f64,
    pub poor: f64,
    pub healthy: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bands {
    pub red: f64,
    pub yellow: f64,
}

/// A weighted set of measures for some segments.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthProfile {
    pub name: String,
    #[serde(default)]
    pub segments: Vec<String>,
    pub bands: Bands,
    #[serde(rename = "measure")]
    pub measures: Vec<Measure>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthProfiles {
    #[serde(rename = "profile")]
    pub profiles: Vec<HealthProfile>,
}

/// One account's health.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthResult {
    pub profile: String,
    /// `None` when no measure could be computed.
    pub score: Option<f64>,
    pub band: Option<&'static str>,
    /// Score of each measure group (0-100), `None` when the whole group is missing.
    pub groups: BTreeMap<String, Option<f64>>,
    /// The measure pulling the score down most (largest weighted shortfall from 100).
    pub most_impactful_measure: Option<String>,
}

impl HealthProfiles {
    /// Parses profiles and checks them against the features that exist.
    pub fn parse(text: &str, origin: &str, known_features: &[String]) -> Result<Self> {
        let parsed: HealthProfiles = toml::from_str(text).map_err(|e| Error::Health {
            profile: origin.to_string(),
            message: e.to_string(),
        })?;
        for p in &parsed.profiles {
            let err = |message: String| Error::Health {
                profile: p.name.clone(),
                message,
            };
            if p.measures.is_empty() {
                return Err(err("has no measures".into()));
            }
            if p.bands.red > p.bands.yellow {
                return Err(err(format!(
                    "band 'red' ({}) is above 'yellow' ({})",
                    p.bands.red, p.bands.yellow
                )));
            }
            for m in &p.measures {
                if !known_features.contains(&m.feature) {
                    return Err(err(format!(
                        "measure '{}' uses feature '{}', which no feature view produces (known features: {})",
                        m.name,
                        m.feature,
                        known_features.join(", ")
                    )));
                }
                if m.poor == m.healthy {
                    return Err(err(format!(
                        "measure '{}': 'poor' and 'healthy' are both {}",
                        m.name, m.poor
                    )));
                }
                if m.weight.is_nan() || m.weight <= 0.0 {
                    return Err(err(format!("measure '{}': weight must be positive", m.name)));
                }
            }
        }
        if !parsed.profiles.iter().any(|p| p.segments.is_empty()) {
            return Err(Error::Health {
                profile: origin.to_string(),
                message:
                    "no profile without `segments`: accounts of other segments would have no health score"
                        .into(),
            });
        }
        Ok(parsed)
    }

    pub fn for_segment(&self, segment: Option<&str>) -> &HealthProfile {
        segment
            .and_then(|s| {
                self.profiles
                    .iter()
                    .find(|p| p.segments.iter().any(|x| x.eq_ignore_ascii_case(s)))
            })
            .or_else(|| self.profiles.iter().find(|p| p.segments.is_empty()))
            .unwrap_or(&self.profiles[0])
    }

    /// Every group name of every profile, sorted: the health table's group columns.
    pub fn group_names(&self) -> Vec<String> {
        let mut g: Vec<String> = self
            .profiles
            .iter()
            .flat_map(|p| p.measures.iter().map(|m| m.group.clone()))
            .collect();
        g.sort();
        g.dedup();
        g
    }
}

impl HealthProfile {
    /// Scores an account; `value` returns a feature's value or `None` when missing.
    pub fn score(&self, value: impl Fn(&str) -> Option<f64>) -> HealthResult {
        let mut total = 0.0;
        let mut weight = 0.0;
        let mut groups: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let mut worst: Option<(f64, &str)> = None;
        for m in &self.measures {
            let entry = groups.entry(m.group.clone()).or_insert((0.0, 0.0));
            let Some(v) = value(&m.feature).filter(|v| v.is_finite()) else {
                continue;
            };
            let s = (((v - m.poor) / (m.healthy - m.poor)).clamp(0.0, 1.0)) * 100.0;
            total += s * m.weight;
            weight += m.weight;
            entry.0 += s * m.weight;
            entry.1 += m.weight;
            let shortfall = (100.0 - s) * m.weight;
            if shortfall > 0.0 && worst.is_none_or(|(w, _)| shortfall > w) {
                worst = Some((shortfall, &m.name));
            }
        }
        let score = (weight > 0.0).then(|| total / weight);
        HealthResult {
            profile: self.name.clone(),
            score,
            band: score.map(|s| {
                if s < self.bands.red {
                    "red"
                } else if s < self.bands.yellow {
                    "yellow"
                } else {
                    "green"
                }
            }),
            groups: groups
                .into_iter()
                .map(|(g, (t, w))| (g, (w > 0.0).then(|| t / w)))
                .collect(),
            most_impactful_measure: worst.map(|(_, n)| n.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles() -> HealthProfiles {
        let known: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        HealthProfiles::parse(
            r#"
            [[profile]]
            name = "p"
            bands = { red = 40, yellow = 70 }
            [[profile.measure]]
            name = "A"
            feature = "a"
            group = "usage"
            weight = 3
            poor = 0
            healthy = 10
            [[profile.measure]]
            name = "B"
            feature = "b"
            group = "support"
            weight = 1
            poor = 4
            healthy = 0
            "#,
            "test",
            &known,
        )
        .unwrap()
    }

    #[test]
    fn weights_measures_and_redistributes_missing_ones() {
        let p = profiles();
        let prof = p.for_segment(Some("Enterprise"));
        let r = prof.score(|f| match f {
            "a" => Some(5.0),
            "b" => Some(1.0),
            _ => None,
        });
        // A scores 50 (weight 3), B scores 75 (weight 1)
        assert_eq!(r.score, Some((50.0 * 3.0 + 75.0) / 4.0));
        assert_eq!(r.band, Some("yellow"));
        assert_eq!(r.groups["usage"], Some(50.0));
        assert_eq!(r.most_impactful_measure.as_deref(), Some("A"));
        // B missing: A alone decides
        let r = prof.score(|f| (f == "a").then_some(10.0));
        assert_eq!(r.score, Some(100.0));
        assert_eq!(r.band, Some("green"));
        assert_eq!(r.groups["support"], None);
    }

    #[test]
    fn unknown_feature_is_a_clear_error() {
        let e = HealthProfiles::parse(
            "[[profile]]\nname='p'\nbands={red=1,yellow=2}\n[[profile.measure]]\nname='x'\nfeature='nope'\ngroup='g'\nweight=1\npoor=0\nhealthy=1\n",
            "t",
            &["a".to_string()],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "health profile 'p': measure 'x' uses feature 'nope', which no feature view produces (known features: a)"
        );
    }
}
