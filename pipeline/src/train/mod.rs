//! `cslake train`: build the training set at past observation dates and train the churn model.

pub mod challenge;
pub mod health_weights;
pub mod readiness;
pub mod registry;

use std::collections::HashMap;

use chrono::{Duration, NaiveDate, Utc};
use cslake_features::{LabelSpec, training_sets};
use cslake_models::{Dataset, Metrics, ModelMeta, TrainOptions, train_out_of_time};

use crate::features::available_registry;
use crate::lake::query::{epoch_days, floats, has_table, require_core, sql, strings, with_run_id};
use crate::{Error, Lake, Result, RunContext, Settings};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub version: String,
    /// Whether it became the current model, and why (or why not).
    pub promoted: bool,
    pub reason: String,
    pub observation_dates: usize,
    pub rows: usize,
    pub positives: usize,
    pub windows: HashMap<String, [String; 2]>,
    pub test: Metrics,
    /// One model per fold, each tested on dates after all it was trained on.
    pub backtest: Vec<cslake_models::Fold>,
    /// The calibration chosen on the validation window, and why.
    pub calibration: String,
    /// The model family (`logistic_regression`, `gbdt` or `mlp`) and why it was chosen.
    pub family: String,
    pub family_choice: String,
    /// Seconds each family took to fit on the split.
    pub fit_seconds: std::collections::BTreeMap<String, f64>,
    /// Where the time went: `training_sets` (features at every observation date) and `fitting`
    /// (the model, its backtest folds and the expansion model, side by side), in seconds.
    pub seconds: std::collections::BTreeMap<String, f64>,
    /// The expansion propensity model trained with it, when the data supports one.
    pub expansion: Option<ExpansionSummary>,
    /// How many features the model learnt from, the views they came from, and the views
    /// skipped because their source tables are missing (an export without events, say).
    pub features: usize,
    pub views: Vec<String>,
    pub skipped_views: Vec<String>,
    /// The deployed weights' refit on every observation date (the metrics above are the
    /// split model's, out of time); `None` with `[model] refit = false`.
    pub refit: Option<cslake_models::Refit>,
    /// The registry status: `current`, `provisional` (scores; its bands drive no playbook until
    /// confirmed), `unconfirmed` (not ready, kept aside) or `rejected`.
    pub status: String,
    /// Why the model is not ready to drive playbooks (empty: it is).
    pub not_ready: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExpansionSummary {
    pub family: String,
    /// Out-of-time metrics on its own test window.
    pub test: Metrics,
}

/// Observation dates every `every` days, ending at the last date whose label window has closed
/// by `as_of`, and starting once `warmup` days of history exist.
pub fn observation_dates(
    first_data: NaiveDate,
    as_of: NaiveDate,
    label: LabelSpec,
    every: i64,
    warmup: i64,
) -> Vec<NaiveDate> {
    let last = as_of - Duration::days(label.lead_days + label.horizon_days);
    let first = first_data + Duration::days(warmup);
    let mut dates = Vec::new();
    let mut d = last;
    while d >= first {
        dates.push(d);
        d -= Duration::days(every);
    }
    dates.reverse();
    dates
}

/// A training set: one row per (observation date, customer account), features as of that date
/// and the churn label observed after it.
pub struct TrainingSet {
    pub batches: Vec<deltalake::arrow::array::RecordBatch>,
    pub dates: Vec<NaiveDate>,
    pub features: Vec<String>,
    /// The views the features came from, and those skipped for want of their source tables
    /// (`view (missing: table, ...)`).
    pub views: Vec<String>,
    pub skipped_views: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainingSetReport {
    pub as_of: String,
    /// `training.churn` or `training.expansion`
    pub table: String,
    pub observation_dates: usize,
    pub first: String,
    pub last: String,
    pub rows: usize,
    pub positives: usize,
    pub features: usize,
    pub label: String,
    pub version: Option<u64>,
    pub out: Option<String>,
}

/// Builds the training set for a model trained on `as_of`: observation dates every
/// `[churn] observation_every_days` from the warm-up to the last date whose label window has
/// closed by `as_of`, with features as of each date only (and, `strict`, only rows ingested by
/// that date's daily run).
pub async fn build_training_set(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    settings: &Settings,
    label: LabelSpec,
    as_of: NaiveDate,
    strict: bool,
) -> Result<TrainingSet> {
    build_training_sets(ctx, settings, &[label], as_of, strict)
        .await?
        .pop()
        .ok_or_else(|| Error::Job("no training set".into()))?
}

/// [`build_training_set`] for several labels at once (churn and expansion): the features of
/// each observation date are computed once. A label that cannot be built gives its error alone.
pub async fn build_training_sets(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    settings: &Settings,
    labels: &[LabelSpec],
    as_of: NaiveDate,
    strict: bool,
) -> Result<Vec<Result<TrainingSet>>> {
    let Some(&label) = labels.first() else {
        return Ok(Vec::new());
    };
    require_core(ctx, &label)?;
    let registry = available_registry(settings, ctx).await?;
    let skipped_views: Vec<String> = crate::features::lake_registry(settings, ctx)
        .await?
        .views
        .iter()
        .filter(|v| registry.get(&v.name).is_none())
        .map(|v| {
            let missing: Vec<&str> = v
                .sources
                .iter()
                .filter(|s| !has_table(ctx, s))
                .map(String::as_str)
                .collect();
            format!("{} (missing: {})", v.name, missing.join(", "))
        })
        .collect();
    let views: Vec<String> = registry.views.iter().map(|v| v.name.clone()).collect();
    let c = &settings.file.churn;
    // History starts when every recorded source has begun: subscriptions and usage, where loaded.
    let mut starts = Vec::new();
    if has_table(ctx, "core.subscriptions") {
        starts.push("(SELECT MIN(start_date) FROM core.subscriptions)");
    }
    if has_table(ctx, "core.usage_events") {
        starts.push("(SELECT MIN(CAST(event_time AS DATE)) FROM core.usage_events)");
    }
    let q = match starts.as_slice() {
        [one] => format!("SELECT {one} AS d"),
        many => format!("SELECT GREATEST({}) AS d", many.join(", ")),
    };
    let first = sql(ctx, &q)
        .await?
        .first()
        .and_then(|b| strings(b, "d").ok())
        .and_then(|v| v.into_iter().flatten().next());
    let first = first
        .and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
        .ok_or_else(|| Error::Job("the core tables hold no dated history: nothing to train on".into()))?;
    let dates = observation_dates(first, as_of, label, c.observation_every_days, c.warmup_days);
    if dates.len() < 3 {
        return Err(Error::Job(format!(
            "only {} observation date(s) between {first} + {} days of warm-up and {as_of} - {} days of label horizon: \
             an out-of-time evaluation needs at least 3. Load more history or shorten [churn] horizon_days/observation_every_days",
            dates.len(),
            c.warmup_days,
            c.lead_days + c.horizon_days
        )));
    }
    tracing::info!(dates = dates.len(), first = %dates[0], last = %dates[dates.len() - 1], "building training set");
    let knowledge = crate::lake::query::knowledge(ctx, strict).await?;
    let sets = training_sets(ctx, &registry, &dates, labels, &knowledge).await?;
    let features = registry.feature_names();
    Ok(sets
        .into_iter()
        .map(|set| {
            let mut batches = set?;
            if let Some(window) = c.observe_before_renewal_days {
                batches = before_renewal(batches, window)?;
            }
            Ok(TrainingSet {
                batches,
                dates: dates.clone(),
                features: features.clone(),
                views: views.clone(),
                skipped_views: skipped_views.clone(),
            })
        })
        .collect())
}

/// Keeps the rows observed within `window` days before the account's renewal
/// (`[churn] observe_before_renewal_days`): a model of "will this renewal be lost", trained on the
/// moments a renewal conversation happens, from the `days_to_renewal` feature.
fn before_renewal(
    batches: Vec<deltalake::arrow::array::RecordBatch>,
    window: i64,
) -> Result<Vec<deltalake::arrow::array::RecordBatch>> {
    use deltalake::arrow::array::BooleanArray;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        if b.column_by_name("days_to_renewal").is_none() {
            return Err(Error::Config(
                "[churn] observe_before_renewal_days needs the days_to_renewal feature (the subscription view, or a view of yours that provides it)".into(),
            ));
        }
        let days = floats(&b, "days_to_renewal")?;
        let keep = BooleanArray::from(
            days.iter()
                .map(|d| d.is_finite() && *d >= 0.0 && *d <= window as f64)
                .collect::<Vec<_>>(),
        );
        out.push(deltalake::arrow::compute::filter_record_batch(&b, &keep)?);
    }
    Ok(out)
}

/// The file `--out` names and its format, checked before any work is done.
fn export_target(path: &std::path::Path) -> Result<(&std::path::Path, cslake_sinks::FileFormat)> {
    let format = cslake_sinks::FileFormat::from_path(&path.display().to_string()).ok_or_else(|| {
        Error::Config(format!(
            "{}: the file type must be .csv, .ndjson or .parquet",
            path.display()
        ))
    })?;
    Ok((path, format))
}

/// Writes a training set to the `--out` file, if any; returns where it went.
fn export(
    out: Option<(&std::path::Path, cslake_sinks::FileFormat)>,
    batches: &[deltalake::arrow::array::RecordBatch],
) -> Result<Option<String>> {
    let (Some((path, format)), Some(first)) = (out, batches.first()) else {
        return Ok(None);
    };
    let mut w = cslake_sinks::FileWriter::create(path, format, first.schema())?;
    for b in batches {
        w.write(b)?;
    }
    Ok(Some(w.finish()?.display().to_string()))
}

/// `cslake features training-set`: the training set to `training.churn` (and to a file).
pub async fn write_training_set(
    lake: &Lake,
    settings: &Settings,
    target: cslake_features::Target,
    as_of: NaiveDate,
    strict: bool,
    out: Option<&std::path::Path>,
    run: &mut RunContext,
) -> Result<TrainingSetReport> {
    // training sets are built on the configured engine
    let lake = &lake.on_engine(settings);
    let out = out.map(export_target).transpose()?;
    crate::features::prepare(lake, settings, run).await?;
    let ctx = lake.session().await?;
    let label = settings.label_for(target);
    let set = build_training_set(&ctx, settings, label, as_of, strict).await?;
    let table = match target {
        cslake_features::Target::Churn => "churn",
        cslake_features::Target::Expansion => "expansion",
    };
    let rows: usize = set.batches.iter().map(|b| b.num_rows()).sum();
    let mut positives = 0usize;
    for b in &set.batches {
        positives += floats(b, "label")?.iter().filter(|v| **v > 0.5).count();
    }
    let with_id = set
        .batches
        .iter()
        .map(|b| with_run_id(b, &run.run_id))
        .collect::<Result<Vec<_>>>()?;
    let stats = lake
        .target("training", table)
        .overwrite(with_id.clone(), &run.run_id)
        .await?;
    run.wrote(&format!("training.{table}"), rows, stats.version);
    let out = export(out, &with_id)?;
    let l = label;
    Ok(TrainingSetReport {
        as_of: as_of.to_string(),
        table: format!("training.{table}"),
        observation_dates: set.dates.len(),
        first: set.dates.first().map(|d| d.to_string()).unwrap_or_default(),
        last: set.dates.last().map(|d| d.to_string()).unwrap_or_default(),
        rows,
        positives,
        features: set.features.len(),
        label: l.describe(),
        version: stats.version,
        out,
    })
}

/// The trainer's options from `[model]`.
fn train_options(settings: &Settings) -> TrainOptions {
    let mut opts = TrainOptions::default();
    opts.logistic.balance_classes = settings.file.model.balance_classes;
    opts.mlp.balance_classes = settings.file.model.balance_classes;
    opts.family = settings.file.model.family;
    opts.gbdt.budget = settings.file.model.gbdt_budget;
    opts.refit = settings.file.model.refit;
    opts
}

/// The options with the family fixed to the one the split chose (`family` as the model names
/// it): the backtest measures that family over time, not the choice again at every fold.
fn chosen_family(opts: &TrainOptions, family: &str) -> TrainOptions {
    let family = match family {
        "gbdt" => cslake_models::Family::Gbdt,
        "mlp" => cslake_models::Family::Mlp,
        _ => cslake_models::Family::Logistic,
    };
    TrainOptions {
        family,
        ..opts.clone()
    }
}

/// The model's view of a training set: feature matrix and labels, and each row's observation date.
fn to_dataset(
    batches: &[deltalake::arrow::array::RecordBatch],
    features: &[String],
) -> Result<(Dataset, Vec<String>)> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut obs = Vec::new();
    let mut groups = Vec::new();
    for b in batches {
        let cols: Vec<Vec<f64>> = features.iter().map(|f| floats(b, f)).collect::<Result<_>>()?;
        let labels = floats(b, "label")?;
        let when = strings(b, "as_of_date")?;
        let accounts = strings(b, "account_id")?;
        for i in 0..b.num_rows() {
            x.extend(cols.iter().map(|c| c[i] as f32));
            y.push(labels[i] as f32);
            obs.push(when[i].clone().unwrap_or_default());
            groups.push(account_hash(accounts[i].as_deref().unwrap_or_default()));
        }
    }
    Ok((Dataset::new(features.to_vec(), x, y)?.with_groups(groups)?, obs))
}

/// A stable 64-bit hash of an account id (FNV-1a, then a murmur finaliser so that its low bit,
/// which the trainer splits accounts on, depends on every byte): the same halves on every run,
/// machine and release, unlike std's hasher, which does not promise that.
fn account_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvaluateReport {
    pub as_of: String,
    pub rows: usize,
    pub positives: usize,
    pub test_window: [String; 2],
    /// The production trainer (weights, penalty, early stopping, chosen calibration).
    pub model: Metrics,
    pub calibration: String,
    /// A plain logistic regression on the same rows and the same test window.
    pub reference: Metrics,
    /// Default gradient-boosted trees (perpetual, no tuning, no calibration) likewise.
    pub reference_gbdt: Metrics,
    /// The family the trainer chose.
    pub family: String,
    pub backtest: Vec<cslake_models::Fold>,
    pub out: Option<String>,
    /// The model family chosen, and why.
    pub family_choice: String,
    /// Which of the trainer and the references wins, by how much, and against what noise.
    pub verdict: String,
}

/// Hanley & McNeil's standard error of a ROC AUC measured on `pos` churners and `neg` stayers.
fn hanley_mcneil(a: f64, pos: f64, neg: f64) -> f64 {
    let q1 = a / (2.0 - a);
    let q2 = 2.0 * a * a / (1.0 + a);
    if pos > 0.0 && neg > 0.0 {
        ((a * (1.0 - a) + (pos - 1.0) * (q1 - a * a) + (neg - 1.0) * (q2 - a * a)) / (pos * neg)).sqrt()
    } else {
        f64::NAN
    }
}

/// The trainer against the references in words: which wins the test window and by how much,
/// whether that lead is beyond the noise of the window's churners (the Hanley & McNeil standard
/// errors of the two ROC AUCs combined, which ignores that they rank the same rows and so errs
/// towards "within the noise"), and, when a reference is clearly better, what to try.
pub fn verdict(family: &str, model: &Metrics, references: &[(&str, &Metrics)]) -> String {
    let (pos, neg) = (model.positives as f64, (model.rows - model.positives) as f64);
    let se = |m: &Metrics| hanley_mcneil(m.roc_auc, pos, neg);
    let Some((best_name, best)) = references
        .iter()
        .copied()
        .filter(|(_, m)| m.roc_auc.is_finite())
        .max_by(|a, b| a.1.roc_auc.total_cmp(&b.1.roc_auc))
    else {
        return "cannot be compared: the test window has no churners".into();
    };
    let d = model.roc_auc - best.roc_auc;
    let noise = 2.0 * (se(model).powi(2) + se(best).powi(2)).sqrt();
    let others: Vec<String> = references
        .iter()
        .map(|(name, m)| format!("{name} {:.3}", m.roc_auc))
        .collect();
    let scores = format!("ROC AUC {:.3} against {}", model.roc_auc, others.join(", "));
    let family = match family {
        "gbdt" => "gradient-boosted trees",
        "logistic_regression" => "logistic regression",
        other => other,
    };
    if d.is_nan() {
        format!("cannot be compared: {scores}")
    } else if d.abs() <= noise {
        format!(
            "is level with the best reference, {best_name} ({d:+.3}; {scores}): within the noise of {pos:.0} churners in the test window (± {noise:.3}, two Hanley-McNeil standard errors); a longer history or more accounts would separate them"
        )
    } else if d > 0.0 {
        format!(
            "wins ({family}): {d:+.3} ROC AUC over the best reference, {best_name} ({scores}), beyond the test window's noise of ± {noise:.3} (two Hanley-McNeil standard errors)"
        )
    } else {
        let try_this = if best_name.contains("tree") {
            "try [model] family = \"gbdt\" (or \"auto\") and compare again"
        } else {
            "try [model] balance_classes = false or family = \"logistic\", and compare again"
        };
        format!(
            "loses to {best_name} by {:.3} ROC AUC ({scores}), beyond the test window's noise of ± {noise:.3} (two Hanley-McNeil standard errors): {try_this}",
            -d
        )
    }
}

/// `cslake evaluate`: the trainer against a plain logistic-regression reference, on the same
/// training set and test window, without registering anything; the training set can be exported
/// for other tools to compare against.
pub async fn evaluate(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    out: Option<&std::path::Path>,
    run: &mut RunContext,
) -> Result<EvaluateReport> {
    // training sets are built on the configured engine
    let lake = &lake.on_engine(settings);
    let out = out.map(export_target).transpose()?;
    crate::features::prepare(lake, settings, run).await?;
    let ctx = lake.session().await?;
    let set = build_training_set(&ctx, settings, settings.label_spec(), as_of, false).await?;
    let (data, obs) = to_dataset(&set.batches, &set.features)?;
    // the comparison reads the split's out-of-time metrics: no need for the deployed refit
    let opts = TrainOptions {
        refit: false,
        ..train_options(settings)
    };
    let meta = ModelMeta {
        name: "churn".into(),
        version: "evaluation".into(),
        ..Default::default()
    };
    let mut artifact = train_out_of_time(&data, &obs, &opts, meta)?;
    artifact.meta.backtest = cslake_models::backtest(
        &data,
        &obs,
        &chosen_family(&opts, &artifact.meta.family),
        settings.file.model.backtest_folds,
    )?;
    let window = artifact.meta.windows.get("test").cloned().unwrap_or_default();
    let valid_from = artifact
        .meta
        .windows
        .get("validation")
        .map(|w| w[0].clone())
        .unwrap_or_default();
    let reference = cslake_models::reference(&data, &obs, &opts, &valid_from, &window[0])?;
    let reference_gbdt = cslake_models::reference_gbdt(&data, &obs, &opts, &valid_from, &window[0])?;
    let verdict = verdict(
        &artifact.meta.family,
        &artifact.meta.test_metrics,
        &[
            ("plain logistic regression", &reference),
            ("default gradient-boosted trees", &reference_gbdt),
        ],
    );
    let out = export(out, &set.batches)?;
    run.rows_read += data.n_rows() as u64;
    Ok(EvaluateReport {
        as_of: as_of.to_string(),
        rows: data.n_rows(),
        positives: data.positives(),
        test_window: window,
        model: artifact.meta.test_metrics.clone(),
        calibration: artifact.meta.calibration_choice.clone(),
        reference,
        reference_gbdt,
        family: artifact.meta.family.clone(),
        backtest: artifact.meta.backtest.clone(),
        out,
        family_choice: artifact.meta.family_choice.clone(),
        verdict,
    })
}

pub async fn train(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    strict: bool,
    run: &mut RunContext,
    progress: &dyn crate::Progress,
) -> Result<TrainReport> {
    // training sets are built on the configured engine
    let lake = &lake.on_engine(settings);
    progress.phase("usage rollups");
    crate::features::prepare(lake, settings, run).await?;
    progress.phase("training sets (features at every observation date)");
    let ctx = lake.session().await?;
    let label = settings.label_spec();
    // churn and expansion labels on the same observation dates: features computed once
    let t = std::time::Instant::now();
    let mut sets = build_training_sets(
        &ctx,
        settings,
        &[label, settings.label_for(cslake_features::Target::Expansion)],
        as_of,
        strict,
    )
    .await?;
    let expansion_set = sets.pop().ok_or_else(|| Error::Job("no expansion set".into()))?;
    let TrainingSet {
        batches,
        dates,
        features,
        views,
        skipped_views,
    } = sets.pop().ok_or_else(|| Error::Job("no churn set".into()))??;
    let set_seconds = t.elapsed().as_secs_f64();
    tracing::info!(seconds = set_seconds, "training sets built");
    progress.phase(&format!("fitting on {} observation dates", dates.len()));
    let (data, obs) = to_dataset(&batches, &features)?;
    let positives = data.positives();
    tracing::info!(rows = data.n_rows(), positives, "training set built");

    // training set to the lake, for inspection and other tools
    let with_id = batches
        .iter()
        .map(|b| with_run_id(b, &run.run_id))
        .collect::<Result<Vec<_>>>()?;
    let stats = lake
        .target("training", "churn")
        .overwrite(with_id, &run.run_id)
        .await?;
    run.wrote("training.churn", data.n_rows(), stats.version);

    let mut entries = registry::load(&ctx).await?;
    let previous = entries.len();
    let version = format!("churn-v{}", previous + 1);
    let meta = ModelMeta {
        name: "churn".into(),
        version: version.clone(),
        created_at: Utc::now().to_rfc3339(),
        code_version: env!("CARGO_PKG_VERSION").into(),
        label: HashMap::from([
            ("definition".to_string(), label.describe()),
            ("lead_days".to_string(), label.lead_days.to_string()),
            ("horizon_days".to_string(), label.horizon_days.to_string()),
            ("as_of".to_string(), as_of.to_string()),
        ]),
        ..Default::default()
    };
    // The model and the expansion model are independent fits, each seeded: trained side by side.
    // The backtest then retrains the chosen family (not the choice) at each fold, folds in parallel.
    let t = std::time::Instant::now();
    let opts = train_options(settings);
    let (artifact, expansion) = std::thread::scope(|scope| {
        let expansion = scope.spawn(|| train_expansion(settings, expansion_set, as_of, &version));
        let artifact = train_out_of_time(&data, &obs, &opts, meta);
        let panicked = |what: &str| Error::Job(format!("training the {what} panicked"));
        (
            artifact,
            expansion.join().map_err(|_| panicked("expansion model")),
        )
    });
    let mut artifact = artifact?;
    let expansion = expansion?;
    artifact.meta.backtest = cslake_models::backtest(
        &data,
        &obs,
        &chosen_family(&opts, &artifact.meta.family),
        settings.file.model.backtest_folds,
    )?;
    let fit_seconds = t.elapsed().as_secs_f64();
    tracing::info!(seconds = fit_seconds, "models fitted");
    for f in &artifact.meta.backtest {
        tracing::info!(
            test_from = f.test[0].as_str(),
            test_to = f.test[1].as_str(),
            roc_auc = f.metrics.roc_auc,
            pr_auc = f.metrics.pr_auc,
            "backtest fold"
        );
    }
    let dir = format!("models/churn/{version}");
    lake.put(&format!("{dir}/model.safetensors"), artifact.weights_bytes()?)
        .await?;
    lake.put(&format!("{dir}/model.json"), artifact.meta_json()?)
        .await?;
    // the expansion propensity model travels with this version: opportunities use it
    if let Some(x) = &expansion {
        lake.put(&format!("{dir}/expansion.safetensors"), x.weights_bytes()?)
            .await?;
        lake.put(&format!("{dir}/expansion.json"), x.meta_json()?).await?;
    }
    crate::fault_point("train:before-registry");
    let m = &artifact.meta.test_metrics;

    // Challenger against the current model, on the same out-of-time test window.
    let test_from = artifact
        .meta
        .windows
        .get("test")
        .map(|w| w[0].clone())
        .unwrap_or_default();
    let tolerance = settings.file.model.promotion_tolerance;
    let (status, reason) = match registry::current(&entries) {
        None => ("current", "the first model".to_string()),
        Some(cur) => match registry::load_artifact(lake, cur).await {
            Ok(theirs) => challenge::challenge(&artifact, &theirs, &data, &obs, &test_from, tolerance),
            Err(e) => (
                "current",
                format!("promoted: {} cannot be loaded ({e})", cur.version),
            ),
        },
    };
    let reason = match &artifact.meta.refit {
        Some(r) => format!(
            "{reason}; deployed weights refit on all {} observation dates {}..{}",
            r.dates, r.first, r.last
        ),
        None => reason,
    };
    // a model not ready to drive playbooks (few dates or churners, a band off its rates) is
    // provisional when it takes over, and stays aside (`unconfirmed`) when a confirmed model scores
    let test_rows: Vec<(f64, f32)> = (0..obs.len())
        .filter(|i| obs[*i] >= test_from)
        .zip(&artifact.out_of_time)
        .map(|(i, p)| (*p, data.y[i]))
        .collect();
    let problems = readiness::problems(
        &settings.file.model,
        &settings.file.scoring,
        dates.len(),
        positives,
        &test_rows,
    );
    let confirmed_scores = registry::current(&entries).is_some_and(|e| e.status == "current");
    let (status, reason) = match (status, problems.is_empty()) {
        ("current", false) if confirmed_scores => (
            "unconfirmed",
            format!(
                "not promoted, not ready: {}; the confirmed model keeps scoring (`cslake models promote {version}` to use it anyway)",
                problems.join("; ")
            ),
        ),
        ("current", false) => (
            "provisional",
            format!(
                "provisional: {}; it scores, but no playbook acts on its risk bands until `cslake models promote {version}` confirms it ({reason})",
                problems.join("; ")
            ),
        ),
        other => (other.0, reason),
    };
    if !problems.is_empty() {
        tracing::warn!(version = version.as_str(), status, problems = ?problems, "the new model is not ready to drive playbooks");
    }
    let promoted = registry::scores(status);
    if promoted {
        for e in &mut entries {
            if registry::scores(&e.status) {
                e.status = "previous".into();
                e.reason = format!("replaced by {version}");
            }
        }
    }
    entries.push(registry::Entry {
        model_name: "churn".into(),
        version: version.clone(),
        family: artifact.meta.family.clone(),
        created_at: Utc::now().timestamp_micros(),
        as_of_date: epoch_days(as_of),
        status: status.into(),
        path: dir.clone(),
        training_rows: data.n_rows() as i64,
        test_rows: m.rows as i64,
        base_rate: m.base_rate,
        roc_auc: m.roc_auc,
        pr_auc: m.pr_auc,
        brier: m.brier,
        top_decile_lift: m.top_decile_lift,
        accuracy: m.accuracy,
        metrics: serde_json::to_string(m).unwrap_or_default(),
        reason: reason.clone(),
        run_id: run.run_id.clone(),
    });
    registry::save(lake, entries, run).await?;
    tracing::info!(
        version = version.as_str(),
        roc_auc = m.roc_auc,
        pr_auc = m.pr_auc,
        promoted,
        reason = reason.as_str(),
        "model trained"
    );
    Ok(TrainReport {
        version,
        promoted,
        reason,
        observation_dates: dates.len(),
        rows: data.n_rows(),
        positives,
        windows: artifact.meta.windows.clone(),
        test: m.clone(),
        backtest: artifact.meta.backtest.clone(),
        calibration: artifact.meta.calibration_choice.clone(),
        family: artifact.meta.family.clone(),
        family_choice: artifact.meta.family_choice.clone(),
        fit_seconds: artifact.meta.fit_seconds.clone(),
        features: features.len(),
        views,
        skipped_views,
        seconds: [
            ("training_sets".to_string(), set_seconds),
            ("fitting".to_string(), fit_seconds),
        ]
        .into(),
        refit: artifact.meta.refit.clone(),
        status: status.to_string(),
        not_ready: problems,
        expansion: expansion.map(|x| ExpansionSummary {
            family: x.meta.family.clone(),
            test: x.meta.test_metrics.clone(),
        }),
    })
}

/// The expansion propensity model (label: MRR up by `[opportunities] expansion_min_increase_pct`
/// within the horizon), trained like the churn model. `None`, with a warning, when this lake
/// cannot support one (no subscriptions, too few expansions): opportunities then use product fit
/// alone.
fn train_expansion(
    settings: &Settings,
    set: Result<TrainingSet>,
    as_of: NaiveDate,
    version: &str,
) -> Option<cslake_models::ModelArtifact> {
    let label = settings.label_for(cslake_features::Target::Expansion);
    let attempt = || {
        let set = set?;
        let (data, obs) = to_dataset(&set.batches, &set.features)?;
        if data.positives() < 20 {
            return Err(Error::Job(format!(
                "only {} expansions in {} training rows",
                data.positives(),
                data.n_rows()
            )));
        }
        let meta = ModelMeta {
            name: "expansion".into(),
            version: version.to_string(),
            created_at: Utc::now().to_rfc3339(),
            code_version: env!("CARGO_PKG_VERSION").into(),
            label: HashMap::from([
                ("definition".to_string(), label.describe()),
                ("horizon_days".to_string(), label.horizon_days.to_string()),
                ("as_of".to_string(), as_of.to_string()),
            ]),
            ..Default::default()
        };
        Ok::<_, Error>(train_out_of_time(&data, &obs, &train_options(settings), meta)?)
    };
    match attempt() {
        Ok(a) => {
            tracing::info!(
                roc_auc = a.meta.test_metrics.roc_auc,
                family = a.meta.family.as_str(),
                "expansion model trained"
            );
            Some(a)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no expansion propensity model: opportunities use product fit alone");
            None
        }
    }
}
