//! Whether a newly trained model replaces the current one: compared out of time on rows neither
//! learned from. With refits (the deployed weights learn every closed label), the current model
//! has often seen the new test window, and scoring it there would favour it unfairly.

use cslake_models::{Dataset, Metrics, ModelArtifact};

/// Whether the new model (`mine`) replaces the current one (`theirs`): compared on the test rows
/// the current model never learned from (dates after the last one its weights saw), the new one
/// by its split model's out-of-time probabilities. `(status, reason)`.
pub fn challenge(
    mine: &ModelArtifact,
    theirs: &ModelArtifact,
    data: &Dataset,
    obs: &[String],
    test_from: &str,
    tolerance: f64,
) -> (&'static str, String) {
    let version = &theirs.meta.version;
    let seen = theirs.meta.trained_through().unwrap_or_default().to_string();
    let from = if seen.as_str() >= test_from {
        obs.iter().filter(|d| **d > seen).min().cloned()
    } else {
        Some(test_from.to_string())
    };
    let Some(from) = from else {
        return (
            "current",
            format!(
                "promoted: {version} learned from every test date (through {seen}), so no window compares them fairly; the newer data wins"
            ),
        );
    };
    let rows: Vec<usize> = (0..obs.len()).filter(|i| obs[*i] >= from).collect();
    let test = data.select(|i| rows.binary_search(&i).is_ok());
    if test.positives() == 0 || test.positives() == test.n_rows() {
        return (
            "current",
            format!(
                "promoted: the dates {from}.. {version} never saw hold a single class, so no window compares them fairly; the newer data wins"
            ),
        );
    }
    let theirs_p: Vec<f64> = match theirs.predict(&test) {
        Ok(p) => p.iter().map(|p| p.probability).collect(),
        Err(e) => {
            return (
                "current",
                format!("promoted: {version} cannot score the new data ({e})"),
            );
        }
    };
    // the split model's probabilities of the test window, narrowed to the same rows
    let mine_p: Vec<f64> = (0..obs.len())
        .filter(|i| obs[*i].as_str() >= test_from)
        .zip(&mine.out_of_time)
        .filter(|(i, _)| obs[*i] >= from)
        .map(|(_, p)| *p)
        .collect();
    let (a, b) = (
        Metrics::compute(&mine_p, &test.y, 0.5).roc_auc,
        Metrics::compute(&theirs_p, &test.y, 0.5).roc_auc,
    );
    let verdict = format!(
        "ROC AUC {a:.3} against {b:.3} for {version} on the dates {from}.. ({} rows) it never saw",
        test.n_rows()
    );
    if b.is_nan() || a + tolerance >= b {
        ("current", format!("promoted: {verdict}"))
    } else {
        (
            "rejected",
            format!("not promoted, worse by more than {tolerance}: {verdict}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use cslake_models::{Family, ModelMeta, TrainOptions, train_out_of_time};

    use super::*;

    /// 400 rows at each of `dates` observation dates, churn rising with `a`.
    fn data(dates: usize) -> (Dataset, Vec<String>) {
        let mut seed = 3u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut x, mut y, mut obs) = (Vec::new(), Vec::new(), Vec::new());
        for d in 0..dates {
            for _ in 0..400 {
                let a = next() * 4.0 - 2.0;
                x.push(a as f32);
                y.push(if next() < 1.0 / (1.0 + (-(2.0 * a - 1.5)).exp()) {
                    1.0
                } else {
                    0.0
                });
                obs.push(format!("2026-{:02}-01", d + 1));
            }
        }
        (Dataset::new(vec!["a".into()], x, y).unwrap(), obs)
    }

    fn train(data: &Dataset, obs: &[String], refit: bool, version: &str) -> ModelArtifact {
        let opts = TrainOptions {
            family: Family::Logistic,
            refit,
            ..Default::default()
        };
        let meta = ModelMeta {
            version: version.into(),
            ..Default::default()
        };
        train_out_of_time(data, obs, &opts, meta).unwrap()
    }

    #[test]
    fn the_current_model_is_judged_only_on_dates_it_never_saw() {
        let (all, obs) = data(12);
        // the current model was refit when 10 dates had closed: it saw the first of the new
        // model's 3 test dates
        let early: Vec<String> = obs
            .iter()
            .filter(|d| d.as_str() < "2026-11-01")
            .cloned()
            .collect();
        let old = all.select(|i| obs[i].as_str() < "2026-11-01");
        let current = train(&old, &early, true, "churn-v1");
        let seen = current.meta.trained_through().unwrap().to_string();
        let new = train(&all, &obs, true, "churn-v2");
        let test_from = new.meta.windows["test"][0].clone();
        assert!(seen >= test_from, "the windows overlap: {seen} {test_from}");
        let (status, reason) = challenge(&new, &current, &all, &obs, &test_from, 0.005);
        assert_eq!(status, "current", "{reason}");
        assert!(
            reason.contains("for churn-v1 on the dates 2026-11-01.. (800 rows) it never saw"),
            "{reason}"
        );
        // on a window the current model never saw, the better model wins: a worse new model
        // (trained on noise) is rejected
        let mut noise = all.clone();
        noise.y.rotate_left(7);
        let worse = train(&noise, &obs, true, "churn-v3");
        let (status, reason) = challenge(&worse, &current, &all, &obs, &test_from, 0.005);
        assert_eq!(status, "rejected", "{reason}");

        // a model refit on every date has nothing left to be judged on
        let refit = train(&all, &obs, true, "churn-v2");
        let (status, reason) = challenge(&new, &refit, &all, &obs, &test_from, 0.005);
        assert_eq!(status, "current");
        assert!(
            reason.contains("learned from every test date (through 2026-12-01)"),
            "{reason}"
        );
    }
}
