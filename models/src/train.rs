use std::collections::{BTreeSet, HashMap};

use crate::calibration::sigmoid;
use crate::{
    Dataset, Error, LogisticConfig, LogisticRegression, Metrics, ModelArtifact, ModelMeta, Platt, Result,
    Scaler,
};

/// How observation dates are split forward in time.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub logistic: LogisticConfig,
    /// Share of the latest observation dates held out as the test window (never trained on).
    pub test_share: f64,
    /// Share of the dates before the test window used for early stopping and calibration.
    pub validation_share: f64,
    /// Probability threshold for accuracy, precision and recall.
    pub threshold: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            logistic: LogisticConfig::default(),
            test_share: 0.25,
            validation_share: 0.2,
            threshold: 0.5,
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
    let cfg = LogisticConfig {
        n_features: data.n_features(),
        ..opts.logistic.clone()
    };
    let train_x = scaler.transform(&train);
    let valid_x = scaler.transform(&valid);
    let (model, report) = LogisticRegression::fit(&cfg, &train_x, &train.y, Some((&valid_x, &valid.y)))?;

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
    meta.family = "logistic_regression".into();
    meta.features = data.feature_names.clone();
    meta.scaling = scaler;
    meta.calibration = platt;
    meta.isotonic = isotonic.clone();
    meta.calibration_choice = choice;
    meta.config = cfg;
    meta.train_report = report;
    meta.windows = HashMap::from([
        ("train".to_string(), window(0)),
        ("validation".to_string(), window(1)),
        ("test".to_string(), window(2)),
    ]);
    meta.validation_metrics = Some(Metrics::compute(&valid_p, &valid.y, opts.threshold));
    meta.test_metrics = Metrics::compute(&test_p, &test.y, opts.threshold);
    Ok(ModelArtifact::new(meta, model))
}

/// One fold of the forward-in-time backtest.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Fold {
    /// Observation dates trained (and calibrated) on, `[first, last]`.
    pub train: [String; 2],
    /// Observation dates evaluated, `[first, last]`: all later than every training date.
    pub test: [String; 2],
    pub metrics: Metrics,
}

/// An expanding-window backtest: the latest observation dates are cut into `folds` consecutive
/// blocks, and each block is scored by a model trained on every date before it (its own latest
/// dates for early stopping and calibration), as if deployed then. Says how stable the model's
/// quality is across time, which one test window cannot.
pub fn backtest(data: &Dataset, dates: &[String], opts: &TrainOptions, folds: usize) -> Result<Vec<Fold>> {
    let unique: Vec<&String> = dates.iter().collect::<BTreeSet<_>>().into_iter().collect();
    let n = unique.len();
    // each fold tests at least one date and trains on at least two (one to fit, one to calibrate)
    let folds = folds.min(n.saturating_sub(2));
    if folds == 0 {
        return Ok(Vec::new());
    }
    let block = ((n as f64 * opts.test_share) / folds as f64).ceil().max(1.0) as usize;
    let mut out = Vec::new();
    for k in (0..folds).rev() {
        let test_end = n - k * block; // exclusive
        let Some(test_start) = test_end.checked_sub(block).filter(|s| *s >= 2) else {
            continue;
        };
        let before = test_start;
        let n_valid = ((before as f64 * opts.validation_share).round() as usize).clamp(1, before - 1);
        let valid_from = unique[before - n_valid].clone();
        let test_from = unique[test_start].clone();
        let test_to = unique[test_end - 1].clone();
        let train = data.select(|i| dates[i] < valid_from);
        let valid = data.select(|i| dates[i] >= valid_from && dates[i] < test_from);
        let test = data.select(|i| dates[i] >= test_from && dates[i] <= test_to);
        if train.n_rows() == 0 || valid.n_rows() == 0 || test.n_rows() == 0 {
            continue;
        }
        let scaler = Scaler::fit(&train);
        let cfg = LogisticConfig {
            n_features: data.n_features(),
            ..opts.logistic.clone()
        };
        let valid_x = scaler.transform(&valid);
        let (model, _) = LogisticRegression::fit(
            &cfg,
            &scaler.transform(&train),
            &train.y,
            Some((&valid_x, &valid.y)),
        )?;
        let valid_logits: Vec<f64> = model.logits(&valid_x)?.into_iter().map(f64::from).collect();
        let platt = Platt::fit(&valid_logits, &valid.y);
        let test_p: Vec<f64> = model
            .logits(&scaler.transform(&test))?
            .into_iter()
            .map(|z| platt.probability(f64::from(z)))
            .collect();
        out.push(Fold {
            train: [unique[0].clone(), unique[test_start - 1].clone()],
            test: [test_from, test_to],
            metrics: Metrics::compute(&test_p, &test.y, opts.threshold),
        });
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
