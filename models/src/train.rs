use std::collections::{BTreeSet, HashMap};

use crate::calibration::sigmoid;
use crate::{
    Dataset, Error, Fold, LogisticConfig, LogisticRegression, Metrics, Mlp, MlpConfig, ModelArtifact,
    ModelMeta, Net, Platt, Refit, Result, Scaler, TrainReport,
};

/// Which model family to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Both; the MLP only when it beats logistic regression on the validation window.
    #[default]
    Auto,
    Logistic,
    Mlp,
}

/// How observation dates are split forward in time.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub family: Family,
    pub logistic: LogisticConfig,
    pub mlp: MlpConfig,
    /// Share of the latest observation dates held out as the test window (never trained on).
    pub test_share: f64,
    /// Share of the dates before the test window used for early stopping and calibration.
    pub validation_share: f64,
    /// Probability threshold for accuracy, precision and recall.
    pub threshold: f64,
    /// After the split has chosen the family, its training length and its calibration, fit the
    /// deployed weights again on every observation date (the newest labels included).
    pub refit: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            family: Family::Auto,
            logistic: LogisticConfig::default(),
            mlp: MlpConfig::default(),
            test_share: 0.25,
            validation_share: 0.2,
            threshold: 0.5,
            refit: true,
        }
    }
}

/// Trains a churn model on rows observed at `dates` (ISO `YYYY-MM-DD`, one per row) with an
/// out-of-time split: train on the earliest dates, stop early and calibrate on the next ones,
/// report metrics on the latest ones.
pub fn train_out_of_time(
    data: &Dataset,
    dates: &[String],
    opts: &TrainOptions,
    meta_template: ModelMeta,
) -> Result<ModelArtifact> {
    if dates.len() != data.n_rows() {
        return Err(Error::Data(format!(
            "{} dates for {} rows",
            dates.len(),
            data.n_rows()
        )));
    }
    let unique: Vec<&String> = dates.iter().collect::<BTreeSet<_>>().into_iter().collect();
    if unique.len() < 3 {
        return Err(Error::Data(format!(
            "{} observation date(s): an out-of-time split needs at least 3; lengthen the history",
            unique.len()
        )));
    }
    let n_dates = unique.len();
    let n_test = ((n_dates as f64 * opts.test_share).round() as usize).clamp(1, n_dates - 2);
    let n_valid =
        (((n_dates - n_test) as f64 * opts.validation_share).round() as usize).clamp(1, n_dates - n_test - 1);
    let test_from = unique[n_dates - n_test].clone();
    let valid_from = unique[n_dates - n_test - n_valid].clone();
    let role = |d: &String| {
        if *d >= test_from {
            2
        } else if *d >= valid_from {
            1
        } else {
            0
        }
    };
    let train = data.select(|i| role(&dates[i]) == 0);
    let valid = data.select(|i| role(&dates[i]) == 1);
    let test = data.select(|i| role(&dates[i]) == 2);
    let window = |r: u8| {
        let ds: Vec<&String> = unique.iter().copied().filter(|d| role(d) == r).collect();
        [
            ds.first().map(|s| s.to_string()).unwrap_or_default(),
            ds.last().map(|s| s.to_string()).unwrap_or_default(),
        ]
    };

    let scaler = Scaler::fit(&train);
    let train_x = scaler.transform(&train);
    let valid_x = scaler.transform(&valid);
    let chosen = fit_family(
        opts,
        data.n_features(),
        (&train_x, &train.y),
        (&valid_x, &valid.y),
    )?;
    let (model, report) = (chosen.net, chosen.report);

    let valid_logits: Vec<f64> = model.logits(&valid_x)?.into_iter().map(f64::from).collect();
    let (platt, isotonic, choice) = crate::calibration::choose_calibration(&valid_logits, &valid.y);
    let calibrate = |z: f64| match &isotonic {
        Some(i) => i.probability(z),
        None => platt.probability(z),
    };
    let valid_p: Vec<f64> = valid_logits.iter().map(|z| calibrate(*z)).collect();
    let test_logits: Vec<f64> = model
        .logits(&scaler.transform(&test))?
        .into_iter()
        .map(f64::from)
        .collect();
    let test_p: Vec<f64> = test_logits.iter().map(|z| calibrate(*z)).collect();
    tracing::debug!(
        raw_test_mean =
            test_logits.iter().map(|z| sigmoid(*z)).sum::<f64>() / test_logits.len().max(1) as f64,
        "uncalibrated mean probability on the test window"
    );

    let mut meta = meta_template;
    meta.family = model.family().into();
    meta.family_choice = chosen.why;
    meta.mlp = matches!(model, Net::Mlp(_)).then(|| MlpConfig {
        n_features: data.n_features(),
        ..opts.mlp.clone()
    });
    meta.features = data.feature_names.clone();
    meta.scaling = scaler.clone();
    meta.calibration = platt;
    meta.isotonic = isotonic.clone();
    meta.calibration_choice = choice;
    meta.config = LogisticConfig {
        n_features: data.n_features(),
        ..opts.logistic.clone()
    };
    meta.train_report = report;
    meta.windows = HashMap::from([
        ("train".to_string(), window(0)),
        ("validation".to_string(), window(1)),
        ("test".to_string(), window(2)),
    ]);
    meta.validation_metrics = Some(Metrics::compute(&valid_p, &valid.y, opts.threshold));
    meta.test_metrics = Metrics::compute(&test_p, &test.y, opts.threshold);
    if !opts.refit {
        let mut artifact = ModelArtifact::with_net(meta, model);
        artifact.out_of_time = test_p;
        return Ok(artifact);
    }
    let (net, all_scaler, refit) =
        refit_all(data, &unique, opts, &model, &scaler, meta.train_report.best_epoch)?;
    let [s, t] = refit.logit_map;
    meta.scaling = all_scaler;
    meta.calibration = Platt {
        a: meta.calibration.a * s,
        b: meta.calibration.a * t + meta.calibration.b,
    };
    if let Some(iso) = &mut meta.isotonic {
        for x in &mut iso.x {
            *x = (*x - t) / s;
        }
    }
    meta.refit = Some(refit);
    let mut artifact = ModelArtifact::with_net(meta, net);
    artifact.out_of_time = test_p;
    Ok(artifact)
}

/// Fits the chosen family again on every row, for the split model's early-stopped number of
/// epochs (no window is left to stop on), and maps its logits onto the split model's scale by
/// matching their mean and spread over the same rows, so the calibration learned out of time
/// carries over. A refit whose logits do not vary keeps the split model.
fn refit_all(
    data: &Dataset,
    dates: &[&String],
    opts: &TrainOptions,
    split: &Net,
    split_scaler: &Scaler,
    best_epoch: usize,
) -> Result<(Net, Scaler, Refit)> {
    let scaler = Scaler::fit(data);
    let x = scaler.transform(data);
    let d = data.n_features();
    let epochs = best_epoch.max(5);
    let net = match split {
        Net::Logistic(_) => {
            let cfg = LogisticConfig {
                n_features: d,
                max_epochs: epochs,
                ..opts.logistic.clone()
            };
            Net::Logistic(LogisticRegression::fit(&cfg, &x, &data.y, None)?.0)
        }
        Net::Mlp(_) => {
            let cfg = MlpConfig {
                n_features: d,
                max_epochs: epochs,
                ..opts.mlp.clone()
            };
            Net::Mlp(Mlp::fit(&cfg, &x, &data.y, None)?.0)
        }
    };
    let old: Vec<f64> = split
        .logits(&split_scaler.transform(data))?
        .into_iter()
        .map(f64::from)
        .collect();
    let new: Vec<f64> = net.logits(&x)?.into_iter().map(f64::from).collect();
    let moments = |v: &[f64]| {
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / n).sqrt();
        (mean, sd)
    };
    let ((m_old, sd_old), (m_new, sd_new)) = (moments(&old), moments(&new));
    if !(sd_new > 1e-9 && sd_old.is_finite() && sd_new.is_finite()) {
        return Err(Error::Data(
            "the model refit on every date gives the same score to every row".into(),
        ));
    }
    let scale = sd_old / sd_new;
    let refit = Refit {
        dates: dates.len(),
        rows: data.n_rows(),
        first: dates.first().map(|s| s.to_string()).unwrap_or_default(),
        last: dates.last().map(|s| s.to_string()).unwrap_or_default(),
        epochs,
        logit_map: [scale, m_old - scale * m_new],
    };
    Ok((net, scaler, refit))
}

/// A trained network and why its family was chosen.
pub struct Chosen {
    pub net: Net,
    pub report: TrainReport,
    pub why: String,
}

/// Trains the configured family, or (auto) both, keeping the MLP only when its validation ROC AUC
/// beats logistic regression's by more than 0.005: the simpler, more explainable model wins ties.
pub fn fit_family(
    opts: &TrainOptions,
    n_features: usize,
    train: (&[f32], &[f32]),
    valid: (&[f32], &[f32]),
) -> Result<Chosen> {
    let valid_opt = (!valid.1.is_empty()).then_some(valid);
    let lr = |()| -> Result<(Net, TrainReport)> {
        let cfg = LogisticConfig {
            n_features,
            ..opts.logistic.clone()
        };
        let (m, r) = LogisticRegression::fit(&cfg, train.0, train.1, valid_opt)?;
        Ok((Net::Logistic(m), r))
    };
    let mlp = |()| -> Result<(Net, TrainReport)> {
        let cfg = MlpConfig {
            n_features,
            ..opts.mlp.clone()
        };
        let (m, r) = Mlp::fit(&cfg, train.0, train.1, valid_opt)?;
        Ok((Net::Mlp(m), r))
    };
    match opts.family {
        Family::Logistic => {
            let (net, report) = lr(())?;
            Ok(Chosen {
                net,
                report,
                why: "logistic regression (configured)".into(),
            })
        }
        Family::Mlp => {
            let (net, report) = mlp(())?;
            Ok(Chosen {
                net,
                report,
                why: "mlp (configured)".into(),
            })
        }
        Family::Auto => {
            let (a, ra) = lr(())?;
            let (b, rb) = mlp(())?;
            let auc = |net: &Net| -> Result<f64> {
                let p: Vec<f64> = net
                    .logits(valid.0)?
                    .into_iter()
                    .map(|z| sigmoid(f64::from(z)))
                    .collect();
                Ok(Metrics::compute(&p, valid.1, 0.5).roc_auc)
            };
            let (auc_a, auc_b) = (auc(&a)?, auc(&b)?);
            if auc_b > auc_a + 0.005 {
                Ok(Chosen {
                    net: b,
                    report: rb,
                    why: format!(
                        "mlp: validation ROC AUC {auc_b:.3} against {auc_a:.3} for logistic regression"
                    ),
                })
            } else {
                Ok(Chosen {
                    net: a,
                    report: ra,
                    why: format!(
                        "logistic regression: validation ROC AUC {auc_a:.3} against {auc_b:.3} for the MLP \
                         (the MLP is kept only when better by more than 0.005)"
                    ),
                })
            }
        }
    }
}

/// An expanding-window backtest: the latest observation dates are cut into `folds` consecutive
/// blocks, and each block is scored by a model trained on every date before it (its own latest
/// dates for early stopping and calibration), as if deployed then. Says how stable the model's
/// quality is across time, which one test window cannot. The folds are independent and trained
/// in parallel (each fit is seeded, so the result does not depend on the order).
pub fn backtest(data: &Dataset, dates: &[String], opts: &TrainOptions, folds: usize) -> Result<Vec<Fold>> {
    let unique: Vec<&String> = dates.iter().collect::<BTreeSet<_>>().into_iter().collect();
    let n = unique.len();
    // each fold tests at least one date and trains on at least two (one to fit, one to calibrate)
    let folds = folds.min(n.saturating_sub(2));
    if folds == 0 {
        return Ok(Vec::new());
    }
    let block = ((n as f64 * opts.test_share) / folds as f64).ceil().max(1.0) as usize;
    // (first training date, validation from, test from, test to) of each fold, oldest first
    let mut specs = Vec::new();
    for k in (0..folds).rev() {
        let test_end = n - k * block; // exclusive
        let Some(test_start) = test_end.checked_sub(block).filter(|s| *s >= 2) else {
            continue;
        };
        let before = test_start;
        let n_valid = ((before as f64 * opts.validation_share).round() as usize).clamp(1, before - 1);
        specs.push((
            [unique[0].clone(), unique[test_start - 1].clone()],
            unique[before - n_valid].clone(),
            unique[test_start].clone(),
            unique[test_end - 1].clone(),
        ));
    }
    let fold = |(train_span, valid_from, test_from, test_to): &([String; 2], String, String, String)| {
        let train = data.select(|i| dates[i] < *valid_from);
        let valid = data.select(|i| dates[i] >= *valid_from && dates[i] < *test_from);
        let test = data.select(|i| dates[i] >= *test_from && dates[i] <= *test_to);
        if train.n_rows() == 0 || valid.n_rows() == 0 || test.n_rows() == 0 {
            return Ok(None);
        }
        let scaler = Scaler::fit(&train);
        let valid_x = scaler.transform(&valid);
        let model = fit_family(
            opts,
            data.n_features(),
            (&scaler.transform(&train), &train.y),
            (&valid_x, &valid.y),
        )?
        .net;
        let valid_logits: Vec<f64> = model.logits(&valid_x)?.into_iter().map(f64::from).collect();
        let platt = Platt::fit(&valid_logits, &valid.y);
        let test_p: Vec<f64> = model
            .logits(&scaler.transform(&test))?
            .into_iter()
            .map(|z| platt.probability(f64::from(z)))
            .collect();
        Ok(Some(Fold {
            train: train_span.clone(),
            test: [test_from.clone(), test_to.clone()],
            metrics: Metrics::compute(&test_p, &test.y, opts.threshold),
        }))
    };
    let results: Vec<Result<Option<Fold>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = specs.iter().map(|spec| scope.spawn(move || fold(spec))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Data("a backtest fold panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// The plain logistic-regression reference for `cslake evaluate`: no class weights, no penalty,
/// no early stopping, no calibration, trained on every date before the same test window the
/// production trainer holds out, and scored there. What the trainer's choices must beat.
pub fn reference(data: &Dataset, dates: &[String], opts: &TrainOptions, test_from: &str) -> Result<Metrics> {
    let train = data.select(|i| dates[i].as_str() < test_from);
    let test = data.select(|i| dates[i].as_str() >= test_from);
    if train.n_rows() == 0 || test.n_rows() == 0 {
        return Err(Error::Data(format!(
            "no rows on one side of the test window starting {test_from}"
        )));
    }
    let scaler = Scaler::fit(&train);
    let cfg = LogisticConfig {
        n_features: data.n_features(),
        l1: 0.0,
        l2: 0.0,
        balance_classes: false,
        patience: usize::MAX,
        ..opts.logistic.clone()
    };
    let (model, _) = LogisticRegression::fit(&cfg, &scaler.transform(&train), &train.y, None)?;
    let p: Vec<f64> = model
        .logits(&scaler.transform(&test))?
        .into_iter()
        .map(|z| sigmoid(f64::from(z)))
        .collect();
    Ok(Metrics::compute(&p, &test.y, opts.threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows at 6 observation dates where churn rises with feature `a` and falls with `b`.
    fn data() -> (Dataset, Vec<String>) {
        let mut seed = 5u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut x, mut y, mut dates) = (Vec::new(), Vec::new(), Vec::new());
        for d in 0..6 {
            for _ in 0..400 {
                let (a, b) = (next() * 4.0 - 2.0, next() * 4.0 - 2.0);
                let p = sigmoid(1.5 * a - b - 2.0);
                x.extend([a as f32, b as f32]);
                y.push(if next() < p { 1.0 } else { 0.0 });
                dates.push(format!("2026-0{}-01", d + 1));
            }
        }
        (Dataset::new(vec!["a".into(), "b".into()], x, y).unwrap(), dates)
    }

    #[test]
    fn both_families_save_load_and_explain_alike() {
        let (data, dates) = data();
        for family in [Family::Logistic, Family::Mlp, Family::Auto] {
            let opts = TrainOptions {
                family,
                ..Default::default()
            };
            let model = train_out_of_time(&data, &dates, &opts, ModelMeta::default()).unwrap();
            assert!(
                model.meta.test_metrics.roc_auc > 0.75,
                "{family:?}: {}",
                model.meta.test_metrics.roc_auc
            );
            assert!(!model.meta.family_choice.is_empty());
            let loaded =
                ModelArtifact::from_bytes(&model.meta_json().unwrap(), &model.weights_bytes().unwrap())
                    .unwrap();
            let (p, q) = (model.predict(&data).unwrap(), loaded.predict(&data).unwrap());
            let same = p.iter().zip(&q).all(|(a, b)| {
                a.probability == b.probability
                    && a.contributions
                        .iter()
                        .zip(&b.contributions)
                        .all(|(x, y)| x.feature == y.feature && x.contribution == y.contribution)
            });
            assert!(same, "{family:?}: the stored model predicts the same");
            // the factor pushing risk up most, for a row with high `a` and low `b`, is `a` or `b`
            // with the signs the data was made with
            let row = (0..data.n_rows())
                .find(|i| data.row(*i)[0] > 1.5 && data.row(*i)[1] < -1.5)
                .unwrap();
            let c = &p[row].contributions;
            let a = c.iter().find(|c| c.feature == "a").unwrap().contribution;
            let b = c.iter().find(|c| c.feature == "b").unwrap().contribution;
            assert!(a > 0.0 && b > 0.0, "{family:?}: a {a}, b {b}");
        }
    }

    #[test]
    fn the_deployed_model_learns_the_newest_dates_and_keeps_its_calibration() {
        // the first five dates as before; at the sixth, `b` no longer matters and `a` twice as much
        let (mut data, dates) = data();
        let last = dates.iter().max().unwrap().clone();
        let mut seed = 11u64;
        for (i, date) in dates.iter().enumerate() {
            if *date == last {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
                let a = f64::from(data.row(i)[0]);
                data.y[i] = if u < sigmoid(3.0 * a - 2.0) { 1.0 } else { 0.0 };
            }
        }
        let opts = TrainOptions {
            family: Family::Logistic,
            ..Default::default()
        };
        let split = train_out_of_time(
            &data,
            &dates,
            &TrainOptions {
                refit: false,
                ..opts.clone()
            },
            ModelMeta::default(),
        )
        .unwrap();
        let refit = train_out_of_time(&data, &dates, &opts, ModelMeta::default()).unwrap();
        let r = refit.meta.refit.clone().unwrap();
        assert_eq!((r.dates, r.rows, r.last.as_str()), (6, 2400, last.as_str()));
        assert!(split.meta.refit.is_none());
        // the metrics are the split's, out of time
        assert_eq!(refit.meta.test_metrics, split.meta.test_metrics);
        assert_eq!(refit.out_of_time.len(), split.out_of_time.len());
        // the refit weighs `a` up and `b` down, towards the newest date
        let weights = |m: &ModelArtifact| match m.net() {
            Net::Logistic(l) => l.weights().unwrap(),
            Net::Mlp(_) => unreachable!(),
        };
        let (ws, wr) = (weights(&split), weights(&refit));
        assert!(
            wr[1].abs() / wr[0].abs() < ws[1].abs() / ws[0].abs(),
            "{ws:?} {wr:?}"
        );
        // and its probabilities stay calibrated: their mean is near the churn rate of all rows
        let mean = |m: &ModelArtifact| {
            let p = m.predict(&data).unwrap();
            p.iter().map(|p| p.probability).sum::<f64>() / p.len() as f64
        };
        let rate = data.y.iter().map(|y| f64::from(*y)).sum::<f64>() / data.n_rows() as f64;
        assert!(
            (mean(&refit) - rate).abs() < 0.05,
            "{} against {rate}",
            mean(&refit)
        );
        let loaded =
            ModelArtifact::from_bytes(&refit.meta_json().unwrap(), &refit.weights_bytes().unwrap()).unwrap();
        assert_eq!(loaded.meta.refit, refit.meta.refit);
    }
}
