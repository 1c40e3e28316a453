//! `cslake train`: build the training set at past observation dates and train the churn model.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, Utc};
use cslake_features::{LabelSpec, training_set};
use cslake_models::{Dataset, Metrics, ModelMeta, TrainOptions, train_out_of_time};
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::transform::available_registry;
use super::util::{epoch_days, floats, has_table, require_core, sql, strings, with_run_id};
use crate::schema::ColType;
use crate::{Error, Lake, Result, RunContext, Settings};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub version: String,
    pub observation_dates: usize,
    pub rows: usize,
    pub positives: usize,
    pub windows: HashMap<String, [String; 2]>,
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

pub async fn train(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    strict: bool,
    run: &mut RunContext,
) -> Result<TrainReport> {
    let ctx = lake.session().await?;
    let label = settings.label_spec();
    require_core(&ctx, &label)?;
    let registry = available_registry(settings, &ctx)?;
    let c = &settings.file.churn;
    // History starts when every recorded source has begun: subscriptions and usage, where loaded.
    let mut starts = Vec::new();
    if has_table(&ctx, "core.subscriptions") {
        starts.push("(SELECT MIN(start_date) FROM core.subscriptions)");
    }
    if has_table(&ctx, "core.usage_events") {
        starts.push("(SELECT MIN(CAST(event_time AS DATE)) FROM core.usage_events)");
    }
    let q = match starts.as_slice() {
        [one] => format!("SELECT {one} AS d"),
        many => format!("SELECT GREATEST({}) AS d", many.join(", ")),
    };
    let first = sql(&ctx, &q)
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
    let knowledge = super::util::knowledge(&ctx, strict).await?;
    let batches = training_set(&ctx, &registry, &dates, label, &knowledge).await?;
    let features = registry.feature_names();
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut obs = Vec::new();
    for b in &batches {
        let cols: Vec<Vec<f64>> = features.iter().map(|f| floats(b, f)).collect::<Result<_>>()?;
        let labels = floats(b, "label")?;
        let when = strings(b, "as_of_date")?;
        for i in 0..b.num_rows() {
            x.extend(cols.iter().map(|c| c[i] as f32));
            y.push(labels[i] as f32);
            obs.push(when[i].clone().unwrap_or_default());
        }
    }
    let data = Dataset::new(features.clone(), x, y)?;
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

    let previous = if has_table(&ctx, "models.registry") {
        sql(&ctx, "SELECT COUNT(*) AS n FROM models.registry")
            .await?
            .first()
            .map(|b| floats(b, "n"))
            .transpose()?
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0) as usize
    } else {
        0
    };
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
    let artifact = train_out_of_time(&data, &obs, &TrainOptions::default(), meta)?;
    let dir = format!("models/churn/{version}");
    lake.put(&format!("{dir}/model.safetensors"), artifact.weights_bytes()?)
        .await?;
    lake.put(&format!("{dir}/model.json"), artifact.meta_json()?)
        .await?;
    let m = &artifact.meta.test_metrics;
    let ts = Utc::now().timestamp_micros();
    let f = |v: f64| Arc::new(Float64Array::from(vec![v])) as ArrayRef;
    let s = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let schema = Arc::new(Schema::new(vec![
        Field::new("model_name", DataType::Utf8, false),
        Field::new("version", DataType::Utf8, false),
        Field::new("family", DataType::Utf8, false),
        Field::new("created_at", ColType::Timestamp.arrow(), false),
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("training_rows", DataType::Int64, false),
        Field::new("test_rows", DataType::Int64, false),
        Field::new("base_rate", DataType::Float64, false),
        Field::new("roc_auc", DataType::Float64, false),
        Field::new("pr_auc", DataType::Float64, false),
        Field::new("brier", DataType::Float64, false),
        Field::new("top_decile_lift", DataType::Float64, false),
        Field::new("accuracy", DataType::Float64, false),
        Field::new("metrics", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            s("churn"),
            s(&version),
            s(&artifact.meta.family),
            Arc::new(TimestampMicrosecondArray::from(vec![ts]).with_timezone("UTC")),
            Arc::new(Date32Array::from(vec![epoch_days(as_of)])),
            s("current"),
            s(&dir),
            Arc::new(Int64Array::from(vec![data.n_rows() as i64])),
            Arc::new(Int64Array::from(vec![m.rows as i64])),
            f(m.base_rate),
            f(m.roc_auc),
            f(m.pr_auc),
            f(m.brier),
            f(m.top_decile_lift),
            f(m.accuracy),
            s(&serde_json::to_string(m).unwrap_or_default()),
        ],
    )?;
    let batch = with_run_id(&batch, &run.run_id)?;
    let stats = lake
        .target("models", "registry")
        .append(vec![batch], &[], &run.run_id)
        .await?;
    run.wrote("models.registry", 1, stats.version);
    tracing::info!(
        version = version.as_str(),
        roc_auc = m.roc_auc,
        pr_auc = m.pr_auc,
        "model trained"
    );
    Ok(TrainReport {
        version,
        observation_dates: dates.len(),
        rows: data.n_rows(),
        positives,
        windows: artifact.meta.windows.clone(),
        test: m.clone(),
    })
}
