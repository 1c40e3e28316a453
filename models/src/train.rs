use std::collections::{BTreeSet, HashMap};

use crate::calibration::sigmoid;
use crate::{
    Dataset, Error, Fold, Gbdt, GbdtConfig, LogisticConfig, LogisticRegression, Metrics, Mlp, MlpConfig,
    ModelArtifact, ModelMeta, Net, Platt, Refit, Result, Scaler, TrainReport,
};

/// Which model family to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// All three; the MLP or the trees only when they beat logistic regression on the
    /// validation window by more than the noise: two DeLong standard errors of the paired
    /// difference on validation rows of accounts each model did not fit.
    #[default]
    Auto,
    Logistic,
    Mlp,
    /// Gradient-boosted decision trees.
    Gbdt,
}

/// How observation dates are split forward in time.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub family: Family,
    pub logistic: LogisticConfig,
    pub mlp: MlpConfig,
    pub gbdt: GbdtConfig,
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
            gbdt: GbdtConfig::default(),
            test_share: 0.25,
            validation_share: 0.2,
            threshold: 0.5,
            refit: true,
        }
    }
}

/// Which half of the accounts a row belongs to, for cross-fitting. The same account observed two
/// weeks apart has nearly the same features and, when it churns, the same churn inside both
/// rows' label windows: a model fit on the earlier row and validated on the later one is
/// rewarded for recognising the account, which flexible families (trees) do and logistic
/// regression hardly can (measured on the 2,000-account demo: trees validated at ROC AUC 0.885
/// and tested at 0.830). So with accounts known (`Dataset::groups`) each half of the accounts
/// (by hash) fits a model that is early-stopped on and scores the other half's validation rows:
/// every validation row gets a score from a model that never saw its account, and the family
/// choice, the training length and the calibration are judged on those.
fn halves(train: &Dataset, valid: &Dataset) -> Option<[(Dataset, Vec<usize>, Dataset); 2]> {
    // each half must fit on both classes and score some rows: with few accounts (or churners)
    // the split falls back to validating on the next dates alone
    let fits = |side: u64| {
        let y = |class: bool| {
            (0..train.n_rows()).any(|i| train.groups[i] % 2 == side && (train.y[i] > 0.5) == class)
        };
        y(true) && y(false)
    };
    let checks = |side: u64| valid.groups.iter().any(|g| g % 2 != side);
    if train.groups.is_empty() || valid.groups.is_empty() || ![0, 1].iter().all(|s| fits(*s) && checks(*s)) {
        return None;
    }
    let half = |side: u64| {
        let fit = train.select(|i| train.groups[i] % 2 == side);
        let rows: Vec<usize> = (0..valid.n_rows())
            .filter(|i| valid.groups[*i] % 2 != side)
            .collect();
        let check = valid.select(|i| valid.groups[i] % 2 != side);
        (fit, rows, check)
    };
    Some([half(0), half(1)])
}

/// Trains a churn model on rows observed at `dates` (ISO `YYYY-MM-DD`, one per row) with an
/// out-of-time split: train on the earliest dates, stop early and calibrate on the next ones
/// (scored by models that did not fit the row's account, see [`halves`]), report metrics on the latest ones.
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

    let split = fit_split(opts, &train, &valid)?;
    let (platt, isotonic, choice) = crate::calibration::choose_calibration(&split.valid_logits, &valid.y);
    let calibrate = |z: f64| match &isotonic {
        Some(i) => i.probability(z),
        None => platt.probability(z),
    };
    let valid_p: Vec<f64> = split.valid_logits.iter().map(|z| calibrate(*z)).collect();
    // the split model's logits onto the validation scores' scale, then calibrated
    let [s, t] = split.logit_map;
    let test_logits: Vec<f64> = split
        .net
        .logits(&split.scaler.transform(&test))?
        .into_iter()
        .map(|z| s * f64::from(z) + t)
        .collect();
    let test_p: Vec<f64> = test_logits.iter().map(|z| calibrate(*z)).collect();
    tracing::debug!(
        raw_test_mean =
            test_logits.iter().map(|z| sigmoid(*z)).sum::<f64>() / test_logits.len().max(1) as f64,
        "uncalibrated mean probability on the test window"
    );
    let (platt, isotonic) = fold_logit_map(platt, isotonic, split.logit_map);
    let (model, report, scaler) = (split.net, split.report, split.scaler);

    let mut meta = meta_template;
    meta.family = model.family().into();
    meta.family_choice = split.why;
    meta.fit_seconds = split.fit_seconds;
    meta.mlp = matches!(model, Net::Mlp(_)).then(|| MlpConfig {
        n_features: data.n_features(),
        ..opts.mlp.clone()
    });
    meta.gbdt = matches!(model, Net::Gbdt(_)).then(|| GbdtConfig {
        n_features: data.n_features(),
        ..opts.gbdt.clone()
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
    meta.scaling = all_scaler;
    (meta.calibration, meta.isotonic) =
        fold_logit_map(meta.calibration, meta.isotonic.take(), refit.logit_map);
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
    let epochs = match split {
        Net::Gbdt(_) => best_epoch.max(1),
        _ => best_epoch.max(5),
    };
    let net = fit_fixed(split.family(), opts, d, &x, &data.y, epochs)?;
    let old: Vec<f64> = split
        .logits(&split_scaler.transform(data))?
        .into_iter()
        .map(f64::from)
        .collect();
    let new: Vec<f64> = net.logits(&x)?.into_iter().map(f64::from).collect();
    let logit_map = moment_map(&new, &old).ok_or_else(|| {
        Error::Data("the model refit on every date gives the same score to every row".into())
    })?;
    let refit = Refit {
        dates: dates.len(),
        rows: data.n_rows(),
        first: dates.first().map(|s| s.to_string()).unwrap_or_default(),
        last: dates.last().map(|s| s.to_string()).unwrap_or_default(),
        epochs,
        logit_map,
    };
    Ok((net, scaler, refit))
}

/// A calibration learnt on logits `z'` applied to logits `z` with `z' = s·z + t`.
fn fold_logit_map(
    platt: Platt,
    isotonic: Option<crate::calibration::Isotonic>,
    [s, t]: [f64; 2],
) -> (Platt, Option<crate::calibration::Isotonic>) {
    let platt = Platt {
        a: platt.a * s,
        b: platt.a * t + platt.b,
    };
    let isotonic = isotonic.map(|mut iso| {
        for x in &mut iso.x {
            *x = (*x - t) / s;
        }
        iso
    });
    (platt, isotonic)
}

/// The `(scale, shift)` that gives `from` the mean and spread of `to` (the same rows).
fn moment_map(from: &[f64], to: &[f64]) -> Option<[f64; 2]> {
    let moments = |v: &[f64]| {
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / n).sqrt();
        (mean, sd)
    };
    let ((m_from, sd_from), (m_to, sd_to)) = (moments(from), moments(to));
    if !(sd_from > 1e-9 && sd_to.is_finite() && sd_from.is_finite()) {
        return None;
    }
    let scale = sd_to / sd_from;
    Some([scale, m_to - scale * m_from])
}

/// Fits one family on scaled rows, early-stopped on `valid` when given.
fn fit_one(
    family: Family,
    opts: &TrainOptions,
    n_features: usize,
    train: (&[f32], &[f32]),
    valid: Option<(&[f32], &[f32])>,
) -> Result<(Net, TrainReport)> {
    Ok(match family {
        Family::Mlp => {
            let cfg = MlpConfig {
                n_features,
                ..opts.mlp.clone()
            };
            let (m, r) = Mlp::fit(&cfg, train.0, train.1, valid)?;
            (Net::Mlp(m), r)
        }
        Family::Gbdt => {
            let cfg = GbdtConfig {
                n_features,
                ..opts.gbdt.clone()
            };
            let (m, r) = Gbdt::fit(&cfg, train.0, train.1, valid)?;
            (Net::Gbdt(m), r)
        }
        Family::Logistic | Family::Auto => {
            let cfg = LogisticConfig {
                n_features,
                ..opts.logistic.clone()
            };
            let (m, r) = LogisticRegression::fit(&cfg, train.0, train.1, valid)?;
            (Net::Logistic(m), r)
        }
    })
}

/// Fits the family of `name` (as [`Net::family`] says it) for a fixed number of epochs (trees).
fn fit_fixed(name: &str, opts: &TrainOptions, d: usize, x: &[f32], y: &[f32], epochs: usize) -> Result<Net> {
    Ok(match name {
        "mlp" => {
            let cfg = MlpConfig {
                n_features: d,
                max_epochs: epochs,
                ..opts.mlp.clone()
            };
            Net::Mlp(Mlp::fit(&cfg, x, y, None)?.0)
        }
        "gbdt" => {
            let cfg = GbdtConfig {
                n_features: d,
                max_trees: epochs.max(1),
                ..opts.gbdt.clone()
            };
            Net::Gbdt(Gbdt::fit(&cfg, x, y, None)?.0)
        }
        _ => {
            let cfg = LogisticConfig {
                n_features: d,
                max_epochs: epochs,
                ..opts.logistic.clone()
            };
            Net::Logistic(LogisticRegression::fit(&cfg, x, y, None)?.0)
        }
    })
}

/// What one out-of-time fit produced: the split model, the validation rows' scores the
/// calibration and the choice were made on, and how the model's logits map onto them.
pub(crate) struct Split {
    pub net: Net,
    pub scaler: Scaler,
    pub report: TrainReport,
    pub why: String,
    pub fit_seconds: std::collections::BTreeMap<String, f64>,
    /// One logit per validation row, each from a model that did not fit that row's account
    /// (when accounts are known; else the split model's own).
    pub valid_logits: Vec<f64>,
    /// `(scale, shift)` from the split model's logits to `valid_logits`' scale.
    pub logit_map: [f64; 2],
}

/// One candidate family's validation scores.
struct Candidate {
    name: String,
    /// The model fit on every training row (early-stopped on the validation rows) without
    /// cross-fitting; `None` when cross-fitted (fit later, if chosen).
    net: Option<(Net, TrainReport)>,
    logits: Vec<f64>,
    epochs: usize,
    seconds: f64,
}

/// Fits the configured family, or (auto) all three, on the training window and chooses one on
/// the validation window. With accounts known, each family is cross-fitted (see [`halves`]);
/// the chosen one is then fit on every training row for the halves' mean early-stopped length.
///
/// The choice: logistic regression, the simplest and most explainable, is kept unless another
/// family's validation ROC AUC beats it by more than the noise: by more than two standard errors
/// of the paired difference (DeLong's method, on the same validation rows) and by at least
/// 0.005. Among the families that clear that bar the best on validation wins.
pub(crate) fn fit_split(opts: &TrainOptions, train: &Dataset, valid: &Dataset) -> Result<Split> {
    let d = train.n_features();
    let families: &[Family] = match opts.family {
        Family::Auto => &[Family::Logistic, Family::Gbdt, Family::Mlp],
        Family::Logistic => &[Family::Logistic],
        Family::Mlp => &[Family::Mlp],
        Family::Gbdt => &[Family::Gbdt],
    };
    let halves = halves(train, valid);
    let scaler = Scaler::fit(train);
    let train_x = scaler.transform(train);
    let valid_x = scaler.transform(valid);
    let mut candidates = Vec::new();
    for family in families {
        let t = std::time::Instant::now();
        let candidate = match &halves {
            None => {
                let valid_opt = (!valid.y.is_empty()).then_some((valid_x.as_slice(), valid.y.as_slice()));
                let (net, report) = fit_one(*family, opts, d, (&train_x, &train.y), valid_opt)?;
                let logits = net.logits(&valid_x)?.into_iter().map(f64::from).collect();
                Candidate {
                    name: net.family().into(),
                    epochs: report.best_epoch,
                    net: Some((net, report)),
                    logits,
                    seconds: 0.0,
                }
            }
            Some(halves) => {
                let mut logits = vec![0.0; valid.n_rows()];
                let mut epochs = 0;
                let mut name = String::new();
                for (fit, rows, check) in halves {
                    let sc = Scaler::fit(fit);
                    let check_x = sc.transform(check);
                    let (net, report) = fit_one(
                        *family,
                        opts,
                        d,
                        (&sc.transform(fit), &fit.y),
                        Some((&check_x, &check.y)),
                    )?;
                    for (row, z) in rows.iter().zip(net.logits(&check_x)?) {
                        logits[*row] = f64::from(z);
                    }
                    epochs += report.best_epoch;
                    name = net.family().into();
                }
                Candidate {
                    name,
                    net: None,
                    logits,
                    epochs: epochs.div_ceil(2),
                    seconds: 0.0,
                }
            }
        };
        candidates.push(Candidate {
            seconds: t.elapsed().as_secs_f64(),
            ..candidate
        });
    }
    let (winner, why) = choose(&candidates, &valid.y, opts.family);
    let fit_seconds = candidates.iter().map(|c| (c.name.clone(), c.seconds)).collect();
    let chosen = candidates.swap_remove(winner);
    let (net, report, logit_map) = match chosen.net {
        Some((net, report)) => (net, report, [1.0, 0.0]),
        None => {
            let epochs = match chosen.name.as_str() {
                "gbdt" => chosen.epochs.max(1),
                _ => chosen.epochs.max(5),
            };
            let net = fit_fixed(&chosen.name, opts, d, &train_x, &train.y, epochs)?;
            let own: Vec<f64> = net.logits(&valid_x)?.into_iter().map(f64::from).collect();
            let map = moment_map(&own, &chosen.logits).ok_or_else(|| {
                Error::Data("the model fit on every training row gives the same score to every row".into())
            })?;
            let z: Vec<f64> = net.logits(&train_x)?.into_iter().map(f64::from).collect();
            let train_loss = crate::metrics::log_loss(&z, &train.y);
            let report = TrainReport {
                epochs,
                best_epoch: epochs,
                train_loss,
                valid_loss: None,
                positive_weight: 1.0,
            };
            (net, report, map)
        }
    };
    Ok(Split {
        net,
        scaler,
        report,
        why,
        fit_seconds,
        valid_logits: chosen.logits,
        logit_map,
    })
}

/// The smallest validation ROC AUC gain for which a more complex family replaces logistic
/// regression, whatever the noise.
const MIN_GAIN: f64 = 0.005;

/// Which candidate wins (see [`fit_split`]), and why in words.
fn choose(candidates: &[Candidate], y: &[f32], family: Family) -> (usize, String) {
    let cross = if candidates.first().is_some_and(|c| c.net.is_none()) {
        ", scored on accounts each model did not fit"
    } else {
        ""
    };
    let labels: Vec<bool> = y.iter().map(|v| *v > 0.5).collect();
    let aucs: Vec<f64> = candidates
        .iter()
        .map(|c| crate::metrics::roc_auc(&c.logits, &labels))
        .collect();
    if family != Family::Auto || candidates.len() == 1 {
        let name = describe(&candidates[0].name);
        return (
            0,
            format!("{name} (configured): validation ROC AUC {:.3}{cross}", aucs[0]),
        );
    }
    // (index, gain over logistic regression, its standard error)
    let gains: Vec<(usize, f64, f64)> = (1..candidates.len())
        .map(|k| {
            let (d, se) = crate::auc_difference(&candidates[0].logits, &candidates[k].logits, y);
            (k, d, se)
        })
        .collect();
    let winner = gains
        .iter()
        .filter(|(_, d, se)| d.is_finite() && *d > MIN_GAIN && *d > 2.0 * se)
        .max_by(|a, b| aucs[a.0].total_cmp(&aucs[b.0]))
        .map(|g| g.0)
        .unwrap_or(0);
    let others: Vec<String> = gains
        .iter()
        .map(|(k, d, se)| {
            format!(
                "{} {:.3} ({d:+.3} ± {:.3})",
                describe(&candidates[*k].name),
                aucs[*k],
                2.0 * se
            )
        })
        .collect();
    let why = if winner == 0 {
        format!(
            "logistic regression: validation ROC AUC {:.3}{cross}; {} (another family is kept only when better by more than two DeLong standard errors and {MIN_GAIN})",
            aucs[0],
            others.join(", ")
        )
    } else {
        format!(
            "{}: validation ROC AUC {:.3} against logistic regression {:.3}{cross}; {} (± two DeLong standard errors)",
            describe(&candidates[winner].name),
            aucs[winner],
            aucs[0],
            others.join(", ")
        )
    };
    (winner, why)
}

/// A family's name as the summary says it.
fn describe(family: &str) -> &str {
    match family {
        "logistic_regression" => "logistic regression",
        "gbdt" => "gradient-boosted trees",
        "mlp" => "mlp",
        other => other,
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
        let split = fit_split(opts, &train, &valid)?;
        let platt = Platt::fit(&split.valid_logits, &valid.y);
        let [s, t] = split.logit_map;
        let test_p: Vec<f64> = split
            .net
            .logits(&split.scaler.transform(&test))?
            .into_iter()
            .map(|z| platt.probability(s * f64::from(z) + t))
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
/// no early stopping, no calibration, trained on the trainer's own training window (dates before
/// `valid_from`; it has no use for a validation window) and scored on the same test window.
/// What the trainer's choices must beat. (Trained on the validation dates too, a reference
/// would fit rows two weeks before the test window whose churn falls inside the test rows'
/// label windows, which rewards recognising accounts rather than predicting churn.)
pub fn reference(
    data: &Dataset,
    dates: &[String],
    opts: &TrainOptions,
    valid_from: &str,
    test_from: &str,
) -> Result<Metrics> {
    let train = data.select(|i| dates[i].as_str() < valid_from);
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

/// The default gradient-boosted trees reference for `cslake evaluate`: perpetual at its default
/// budget, unweighted, no early stopping, no calibration, trained like [`reference`] on the
/// trainer's training window and scored on the test window, as a practitioner's first tree
/// model would be.
pub fn reference_gbdt(
    data: &Dataset,
    dates: &[String],
    opts: &TrainOptions,
    valid_from: &str,
    test_from: &str,
) -> Result<Metrics> {
    let train = data.select(|i| dates[i].as_str() < valid_from);
    let test = data.select(|i| dates[i].as_str() >= test_from);
    if train.n_rows() == 0 || test.n_rows() == 0 {
        return Err(Error::Data(format!(
            "no rows on one side of the test window starting {test_from}"
        )));
    }
    let scaler = Scaler::fit(&train);
    let cfg = GbdtConfig {
        n_features: data.n_features(),
        ..GbdtConfig::default()
    };
    let (model, _) = Gbdt::fit(&cfg, &scaler.transform(&train), &train.y, None)?;
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
        for family in [Family::Logistic, Family::Mlp, Family::Gbdt, Family::Auto] {
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

    /// 600 accounts at 6 dates; churn rises where `a` and `b` share a sign (`interaction`) or
    /// with `a - b` (linear), plus a noise column.
    fn accounts(interaction: bool) -> (Dataset, Vec<String>) {
        let mut seed = 31u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut x, mut y, mut dates, mut groups) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for d in 0..6 {
            for account in 0..600u64 {
                let (a, b, c) = (next() * 2.0 - 1.0, next() * 2.0 - 1.0, next());
                let z = if interaction {
                    if (a > 0.0) == (b > 0.0) { -0.5 } else { -3.5 }
                } else {
                    1.5 * a - 1.5 * b - 2.0
                };
                x.extend([a as f32, b as f32, c as f32]);
                y.push(if next() < sigmoid(z) { 1.0 } else { 0.0 });
                dates.push(format!("2026-0{}-01", d + 1));
                groups.push(account);
            }
        }
        let data = Dataset::new(vec!["a".into(), "b".into(), "noise".into()], x, y)
            .unwrap()
            .with_groups(groups)
            .unwrap();
        (data, dates)
    }

    #[test]
    fn auto_keeps_logistic_regression_on_linear_churn_and_takes_trees_for_an_interaction() {
        let opts = TrainOptions::default();
        let (linear, dates) = accounts(false);
        let m = train_out_of_time(&linear, &dates, &opts, ModelMeta::default()).unwrap();
        assert_eq!(m.meta.family, "logistic_regression", "{}", m.meta.family_choice);
        let (inter, dates) = accounts(true);
        let m = train_out_of_time(&inter, &dates, &opts, ModelMeta::default()).unwrap();
        assert_ne!(m.meta.family, "logistic_regression", "{}", m.meta.family_choice);
        assert!(
            m.meta.family_choice.contains("DeLong"),
            "{}",
            m.meta.family_choice
        );
        // and the plain logistic reference, on the same test window, cannot follow it
        let valid_from = &m.meta.windows["validation"][0];
        let test_from = &m.meta.windows["test"][0];
        let lr = reference(&inter, &dates, &opts, valid_from, test_from).unwrap();
        let trees = reference_gbdt(&inter, &dates, &opts, valid_from, test_from).unwrap();
        assert!(
            trees.roc_auc > lr.roc_auc + 0.1,
            "trees {} against {}",
            trees.roc_auc,
            lr.roc_auc
        );
        assert!(
            m.meta.test_metrics.roc_auc > lr.roc_auc + 0.1,
            "{:?}",
            m.meta.test_metrics
        );
    }

    #[test]
    fn validation_on_other_accounts_does_not_reward_recognising_an_account() {
        // 300 accounts at 10 dates; whether one churns is fixed per account and nothing observed
        // predicts it, but every account carries distinctive constant values a tree can memorise
        let mut seed = 23u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let accounts: Vec<([f32; 2], f32)> = (0..300)
            .map(|_| {
                (
                    [next() as f32, next() as f32],
                    if next() < 0.3 { 1.0 } else { 0.0 },
                )
            })
            .collect();
        let (mut x, mut y, mut dates, mut groups) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for d in 0..10 {
            for (a, (tag, churns)) in accounts.iter().enumerate() {
                x.extend([tag[0], tag[1]]);
                y.push(*churns);
                dates.push(format!("2026-{:02}-01", d + 1));
                groups.push(a as u64);
            }
        }
        let plain = Dataset::new(vec!["tag".into(), "other_tag".into()], x, y).unwrap();
        let grouped = plain.clone().with_groups(groups).unwrap();
        let opts = TrainOptions {
            family: Family::Gbdt,
            refit: false,
            ..Default::default()
        };
        let valid_auc = |data: &Dataset| {
            let m = train_out_of_time(data, &dates, &opts, ModelMeta::default()).unwrap();
            (m.meta.validation_metrics.unwrap().roc_auc, m.meta.family_choice)
        };
        // by date alone the trees recognise the accounts they fit and look skilful
        let (by_date, _) = valid_auc(&plain);
        // cross-fitted by account, they are scored on accounts they never saw: no skill
        let (crossed, why) = valid_auc(&grouped);
        assert!(
            by_date > crossed + 0.1,
            "by date {by_date}, cross-fitted {crossed}"
        );
        assert!((crossed - 0.5).abs() < 0.08, "{crossed}");
        assert!(why.contains("did not fit"), "{why}");
        // and auto keeps logistic regression when nothing beats it beyond the noise
        let auto = TrainOptions {
            family: Family::Auto,
            refit: false,
            ..Default::default()
        };
        let m = train_out_of_time(&grouped, &dates, &auto, ModelMeta::default()).unwrap();
        assert_eq!(m.meta.family, "logistic_regression", "{}", m.meta.family_choice);
        assert_eq!(m.meta.fit_seconds.len(), 3);
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
            Net::Mlp(_) | Net::Gbdt(_) => unreachable!(),
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
