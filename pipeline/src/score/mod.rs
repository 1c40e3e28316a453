//! `cslake score`: risk, health and opportunities for every customer as of a date.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use cslake_features::{HealthProfiles, feature_vector};
use cslake_models::{Dataset, ModelArtifact};
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Float64Builder, Int32Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, StructBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema};

use crate::features::{available_registry, load_registry};
use crate::lake::query::{epoch_days, floats, has_table, sql, strings};
use crate::{Error, Lake, Result, RunContext, Settings};

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

fn factor_fields() -> Fields {
    Fields::from(vec![
        Field::new("feature", DataType::Utf8, true),
        Field::new("contribution", DataType::Float64, true),
        Field::new("value", DataType::Float64, true),
        Field::new("reason", DataType::Utf8, true),
    ])
}

fn fmt_num(v: f64) -> String {
    let v = v + 0.0; // no "-0"
    if !v.is_finite() {
        "missing".into()
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// The current churn model and, when one was trained with it, its expansion propensity model.
async fn current_model(
    lake: &Lake,
    ctx: &deltalake::datafusion::prelude::SessionContext,
) -> Result<(ModelArtifact, Option<ModelArtifact>)> {
    let entries = crate::train::registry::load(ctx).await?;
    let current = crate::train::registry::current(&entries).ok_or(Error::NoModel)?;
    let churn = crate::train::registry::load_artifact(lake, current).await?;
    let expansion = match (
        lake.get(&format!("{}/expansion.json", current.path)).await,
        lake.get(&format!("{}/expansion.safetensors", current.path)).await,
    ) {
        (Ok(meta), Ok(weights)) => Some(ModelArtifact::from_bytes(&meta, &weights)?),
        _ => None,
    };
    Ok((churn, expansion))
}

fn band(score: f64, s: &crate::settings::ScoringConfig) -> &'static str {
    if score >= s.band_critical {
        "critical"
    } else if score >= s.band_high {
        "high"
    } else if score >= s.band_medium {
        "medium"
    } else {
        "low"
    }
}

/// The configured health profiles (or the built-in ones), checked against the known features.
pub(crate) fn health_profiles(settings: &Settings) -> Result<HealthProfiles> {
    let all_features = load_registry(settings)?.feature_names();
    Ok(match &settings.file.health.profiles {
        Some(p) => {
            let path = settings.config_path(p);
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            HealthProfiles::parse(&text, &path.display().to_string(), &all_features)?
        }
        None => HealthProfiles::parse(cslake_features::DEFAULT_PROFILES, "built-in", &all_features)?,
    })
}

#[allow(clippy::too_many_lines)]
pub async fn score(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    run: &mut RunContext,
) -> Result<ScoreReport> {
    // health profiles first: a mistake in them is found before any work is done
    let profiles = health_profiles(settings)?;
    let ctx = lake.session().await?;
    let registry = available_registry(settings, &ctx)?;
    let (model, expansion_model) = current_model(lake, &ctx).await?;
    let version = model.meta.version.clone();

    // the materialised features of the day
    let not_ready = || {
        Error::Job(format!(
            "features for {as_of} are not materialised: run `cslake features --as-of {as_of}` first"
        ))
    };
    let mut computed = Vec::new();
    for view in &registry.views {
        let table = format!("features.{}", view.name);
        if !has_table(&ctx, &table) {
            return Err(not_ready());
        }
        let batches = sql(
            &ctx,
            &format!("SELECT * FROM {table} WHERE as_of_date = DATE '{as_of}'"),
        )
        .await?;
        if batches.iter().map(RecordBatch::num_rows).sum::<usize>() == 0 {
            return Err(not_ready());
        }
        computed.push((view.name.clone(), batches));
    }
    let first = &registry.views[0].name;
    ctx.deregister_table("spine")?;
    let spine = ctx
        .sql(&format!(
            "SELECT account_id, as_of_date FROM features.{first} WHERE as_of_date = DATE '{as_of}'"
        ))
        .await?;
    ctx.register_table("spine", spine.into_view())?;
    let vector = feature_vector(&ctx, &registry, &computed).await?;

    let names = registry.feature_names();
    let mut ids: Vec<String> = Vec::new();
    let mut cols: HashMap<String, Vec<f64>> = names.iter().map(|n| (n.clone(), Vec::new())).collect();
    for b in &vector {
        ids.extend(
            strings(b, "account_id")?
                .into_iter()
                .map(Option::unwrap_or_default),
        );
        for n in &names {
            let v = floats(b, n)?;
            cols.entry(n.clone()).or_default().extend(v);
        }
    }
    let n = ids.len();
    let columns: Vec<&Vec<f64>> = names.iter().map(|f| &cols[f]).collect();
    let x: Vec<f32> = (0..n)
        .flat_map(|i| columns.iter().map(move |c| c[i] as f32))
        .collect();
    let d = names.len();
    let input_hashes: Vec<String> = (0..n)
        .map(|i| inputs_hash(&names, &x[i * d..(i + 1) * d]))
        .collect();
    let dataset = Dataset::new(names.clone(), x, Vec::new())?;
    let predictions = model.predict(&dataset)?;
    let propensity: Option<Vec<f64>> = match &expansion_model {
        Some(m) => Some(m.predict(&dataset)?.iter().map(|p| p.probability).collect()),
        None => None,
    };

    // account attributes
    let mut info: HashMap<String, (String, Option<String>, Option<String>)> = HashMap::new();
    for b in sql(&ctx, "SELECT account_id, name, segment, plan FROM core.accounts").await? {
        let (a, nm, seg, plan) = (
            strings(&b, "account_id")?,
            strings(&b, "name")?,
            strings(&b, "segment")?,
            strings(&b, "plan")?,
        );
        for i in 0..b.num_rows() {
            info.insert(
                a[i].clone().unwrap_or_default(),
                (nm[i].clone().unwrap_or_default(), seg[i].clone(), plan[i].clone()),
            );
        }
    }

    // each feature 30 days earlier, so that reasons can say "down 62%" of an account's own trend
    let month_ago = as_of - Duration::days(30);
    let mut before: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for view in &registry.views {
        let cols: Vec<&str> = view.features.iter().map(|(f, _)| f.as_str()).collect();
        let q = format!(
            "SELECT account_id, {} FROM features.{} WHERE as_of_date = DATE '{month_ago}'",
            cols.join(", "),
            view.name
        );
        for b in sql(&ctx, &q).await? {
            let ids = strings(&b, "account_id")?;
            for f in &cols {
                let v = floats(&b, f)?;
                let m = before.entry((*f).to_string()).or_default();
                for (i, id) in ids.iter().enumerate() {
                    if let Some(id) = id
                        && v[i].is_finite()
                    {
                        m.insert(id.clone(), v[i]);
                    }
                }
            }
        }
    }

    let sc = &settings.file.scoring;
    let day = epoch_days(as_of);
    let mut report = ScoreReport {
        as_of: as_of.to_string(),
        model_version: version.clone(),
        accounts: n,
        ..Default::default()
    };

    // risk_scores
    let mut factors = ListBuilder::new(StructBuilder::from_fields(factor_fields(), n));
    let mut probs = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut bands = Vec::with_capacity(n);
    let mut ranked: Vec<(usize, f64)> = Vec::with_capacity(n);
    let mut reasons_of: Vec<Vec<String>> = Vec::with_capacity(n);
    for (i, p) in predictions.iter().enumerate() {
        let score = (p.probability * 100.0).round();
        probs.push(p.probability);
        scores.push(score as i32);
        let b = band(score, sc);
        *report.risk_bands.entry(b.to_string()).or_default() += 1;
        bands.push(b);
        ranked.push((i, p.probability));
        let mut reasons = Vec::new();
        let sb = factors.values();
        for c in p
            .contributions
            .iter()
            .filter(|c| c.contribution > 0.0)
            .take(sc.top_factors)
        {
            let label = registry.label(&c.feature).unwrap_or(&c.feature);
            let earlier = before.get(&c.feature).and_then(|m| m.get(&ids[i])).copied();
            let reason = readable_reason(label, c.value, c.typical, earlier);
            if let Some(f) = sb.field_builder::<StringBuilder>(0) {
                f.append_value(&c.feature);
            }
            if let Some(f) = sb.field_builder::<Float64Builder>(1) {
                f.append_value(c.contribution);
            }
            if let Some(f) = sb.field_builder::<Float64Builder>(2) {
                f.append_option(c.value.is_finite().then_some(c.value));
            }
            if let Some(f) = sb.field_builder::<StringBuilder>(3) {
                f.append_value(&reason);
            }
            sb.append(true);
            reasons.push(reason);
        }
        factors.append(true);
        reasons_of.push(reasons);
    }
    let risk_schema = Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("churn_probability", DataType::Float64, false),
        Field::new("risk_score", DataType::Int32, false),
        Field::new("risk_band", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new(
            "top_factors",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(factor_fields()),
                true,
            ))),
            true,
        ),
        Field::new("_run_id", DataType::Utf8, false),
    ]));
    let risk = RecordBatch::try_new(
        risk_schema,
        vec![
            Arc::new(StringArray::from(ids.clone())),
            Arc::new(Date32Array::from(vec![day; n])),
            Arc::new(Float64Array::from(probs)),
            Arc::new(Int32Array::from(scores.clone())),
            Arc::new(StringArray::from(bands)),
            Arc::new(StringArray::from(vec![version.as_str(); n])),
            Arc::new(factors.finish()) as ArrayRef,
            Arc::new(StringArray::from(vec![run.run_id.as_str(); n])),
        ],
    )?;
    let pred = format!("as_of_date = '{as_of}'");
    let stats = lake
        .target("scores", "risk_scores")
        .replace_where(vec![risk], &pred, &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("scores.risk_scores", n, stats.version);
    crate::fault_point("score:mid-write");

    // prediction_log: every prediction ever made, with the model and a hash of its inputs
    let log_schema = Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new("churn_probability", DataType::Float64, false),
        Field::new("risk_score", DataType::Int32, false),
        Field::new("inputs_hash", DataType::Utf8, false),
        Field::new(
            "scored_at",
            crate::lake::schema::ColType::Timestamp.arrow(),
            false,
        ),
        Field::new("_run_id", DataType::Utf8, false),
    ]));
    let log = RecordBatch::try_new(
        log_schema,
        vec![
            Arc::new(StringArray::from(ids.clone())),
            Arc::new(Date32Array::from(vec![day; n])),
            Arc::new(StringArray::from(vec![version.as_str(); n])),
            Arc::new(Float64Array::from_iter_values(
                predictions.iter().map(|p| p.probability),
            )),
            Arc::new(Int32Array::from(scores.clone())),
            Arc::new(StringArray::from(input_hashes)),
            Arc::new(
                deltalake::arrow::array::TimestampMicrosecondArray::from(vec![
                    chrono::Utc::now()
                        .timestamp_micros();
                    n
                ])
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec![run.run_id.as_str(); n])),
        ],
    )?;
    let stats = lake
        .target("scores", "prediction_log")
        .append(vec![log], &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("scores.prediction_log", n, stats.version);

    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(ids[a.0].cmp(&ids[b.0])));
    report.top_at_risk = ranked
        .iter()
        .take(5)
        .map(|(i, _)| TopAccount {
            account_id: ids[*i].clone(),
            name: info.get(&ids[*i]).map(|x| x.0.clone()).unwrap_or_default(),
            risk_score: scores[*i],
            mrr: cols.get("mrr").map_or(f64::NAN, |m| m[*i]),
            reasons: reasons_of[*i].clone(),
        })
        .collect();

    // health_scores
    let groups = profiles.group_names();
    let history = |days: i64| {
        let ctx = ctx.clone();
        async move {
            let mut out: HashMap<String, f64> = HashMap::new();
            if has_table(&ctx, "scores.health_scores") {
                let d = as_of - Duration::days(days);
                for b in sql(&ctx, &format!("SELECT account_id, health_score FROM scores.health_scores WHERE as_of_date = DATE '{d}'")).await? {
                    let (a, s) = (strings(&b, "account_id")?, floats(&b, "health_score")?);
                    for i in 0..b.num_rows() {
                        out.insert(a[i].clone().unwrap_or_default(), s[i]);
                    }
                }
            }
            Ok::<_, Error>(out)
        }
    };
    let (h7, h30) = (history(7).await?, history(30).await?);
    let mut hs = Float64Builder::new();
    let mut hb = StringBuilder::new();
    let mut t7 = Float64Builder::new();
    let mut t30 = Float64Builder::new();
    let mut most = StringBuilder::new();
    let mut prof = StringBuilder::new();
    let mut group_cols: Vec<Float64Builder> = groups.iter().map(|_| Float64Builder::new()).collect();
    for (i, id) in ids.iter().enumerate() {
        let segment = info.get(id).and_then(|x| x.1.as_deref());
        let r = profiles
            .for_segment(segment)
            .score(|f| cols.get(f).map(|c| c[i]).filter(|v| v.is_finite()));
        let rounded = r.score.map(|s| (s * 10.0).round() / 10.0);
        hs.append_option(rounded);
        hb.append_option(r.band);
        if let Some(b) = r.band {
            *report.health_bands.entry(b.to_string()).or_default() += 1;
        }
        t7.append_option(
            rounded
                .zip(h7.get(id).filter(|v| v.is_finite()))
                .map(|(a, b)| ((a - b) * 10.0).round() / 10.0),
        );
        t30.append_option(
            rounded
                .zip(h30.get(id).filter(|v| v.is_finite()))
                .map(|(a, b)| ((a - b) * 10.0).round() / 10.0),
        );
        most.append_option(r.most_impactful_measure.as_deref());
        prof.append_value(&r.profile);
        for (g, b) in groups.iter().zip(group_cols.iter_mut()) {
            b.append_option(
                r.groups
                    .get(g)
                    .copied()
                    .flatten()
                    .map(|s| (s * 10.0).round() / 10.0),
            );
        }
    }
    let mut fields = vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("health_score", DataType::Float64, true),
        Field::new("band", DataType::Utf8, true),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids.clone())),
        Arc::new(Date32Array::from(vec![day; n])),
        Arc::new(hs.finish()),
        Arc::new(hb.finish()),
    ];
    for (g, mut b) in groups.iter().zip(group_cols) {
        fields.push(Field::new(format!("{g}_score"), DataType::Float64, true));
        arrays.push(Arc::new(b.finish()));
    }
    for (name, a) in [("trend_7d", t7.finish()), ("trend_30d", t30.finish())] {
        fields.push(Field::new(name, DataType::Float64, true));
        arrays.push(Arc::new(a));
    }
    fields.push(Field::new("most_impactful_measure", DataType::Utf8, true));
    arrays.push(Arc::new(most.finish()));
    fields.push(Field::new("profile", DataType::Utf8, false));
    arrays.push(Arc::new(prof.finish()));
    fields.push(Field::new("_run_id", DataType::Utf8, false));
    arrays.push(Arc::new(StringArray::from(vec![run.run_id.as_str(); n])));
    let health = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let stats = lake
        .target("scores", "health_scores")
        .replace_where(vec![health], &pred, &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("scores.health_scores", n, stats.version);

    // opportunities: seats where utilisation is high, the next tier where the expansion
    // propensity model (trained on past MRR increases) says an upgrade is likely
    let oc = &settings.file.opportunities;
    let mut products: Vec<(String, String, f64, f64)> = Vec::new();
    if has_table(&ctx, "core.products") {
        for b in sql(
            &ctx,
            "SELECT product_id, name, tier_rank, price_per_seat FROM core.products",
        )
        .await?
        {
            let (id, nm, rank, price) = (
                strings(&b, "product_id")?,
                strings(&b, "name")?,
                floats(&b, "tier_rank")?,
                floats(&b, "price_per_seat")?,
            );
            for i in 0..b.num_rows() {
                if let Some(id) = &id[i]
                    && rank[i].is_finite()
                    && price[i].is_finite()
                {
                    products.push((id.clone(), nm[i].clone().unwrap_or_default(), rank[i], price[i]));
                }
            }
        }
    }
    let product_of = |plan: &str| {
        products
            .iter()
            .find(|p| p.0.eq_ignore_ascii_case(plan) || p.1.eq_ignore_ascii_case(plan))
    };
    // events of the types a higher tier is for, per account, in the last 30 days
    let mut adoption: HashMap<(String, String), i64> = HashMap::new();
    let types: Vec<String> = oc.tier_features.values().flatten().cloned().collect();
    if !types.is_empty() && has_table(&ctx, "core.usage_events") {
        let list = types
            .iter()
            .map(|t| format!("'{}'", t.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let q = format!(
            "SELECT account_id, event_type, COUNT(*) AS n FROM core.usage_events \
             WHERE event_type IN ({list}) AND event_time <= CAST(DATE '{as_of}' + INTERVAL '1' DAY AS TIMESTAMP) \
             AND event_time > CAST(DATE '{as_of}' - INTERVAL '29' DAY AS TIMESTAMP) GROUP BY account_id, event_type"
        );
        for b in sql(&ctx, &q).await? {
            let (a, t, n) = (
                strings(&b, "account_id")?,
                strings(&b, "event_type")?,
                floats(&b, "n")?,
            );
            for i in 0..b.num_rows() {
                if let (Some(a), Some(t)) = (&a[i], &t[i]) {
                    adoption.insert((a.clone(), t.clone()), n[i] as i64);
                }
            }
        }
    }
    let (mut oid, mut oacc, mut okind, mut oprod, mut oprob, mut omrr, mut ofit, mut oreason) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::<String>::new(),
    );
    let col = |name: &str, i: usize| cols.get(name).map_or(f64::NAN, |c| c[i]);
    for (i, id) in ids.iter().enumerate() {
        let (seats, users, mrr, trend) = (
            col("seats", i),
            col("active_users_30d", i),
            col("mrr", i),
            col("events_trend_30d", i),
        );
        if seats.is_nan() || mrr.is_nan() || seats <= 0.0 || mrr <= 0.0 {
            continue;
        }
        let util = users / seats;
        let fit = if util.is_finite() {
            (util.min(1.5) / 1.5 * 1000.0).round() / 1000.0
        } else {
            0.0
        };
        let p_model = propensity.as_ref().map(|p| p[i]);
        let model_note = p_model
            .map(|p| format!("; expansion propensity {:.0}% ({version})", p * 100.0))
            .unwrap_or_default();
        let price = mrr / seats;
        if util.is_finite() && util >= oc.seat_utilisation_min {
            let wanted = (users * (1.0 + oc.seat_headroom)).ceil();
            let added = (wanted - seats).max(1.0);
            let growth = if trend.is_finite() {
                trend.clamp(-0.5, 0.5)
            } else {
                0.0
            };
            // the model's probability when there is one; else a product-fit heuristic
            let probability = p_model
                .unwrap_or(
                    0.3 + 1.5 * (util - oc.seat_utilisation_min) + 0.3 * growth
                        - 0.5 * probs_at(&predictions, i),
                )
                .clamp(0.01, 0.95);
            oid.push(format!("{id}-seat_expansion-{as_of}"));
            oacc.push(id.clone());
            okind.push("seat_expansion");
            oprod.push(info.get(id).and_then(|x| x.2.clone()));
            oprob.push((probability * 1000.0).round() / 1000.0);
            omrr.push((probability * added * price * 100.0).round() / 100.0);
            ofit.push(fit);
            oreason.push(format!(
                "{users:.0} of {seats:.0} seats active in the last 30 days ({:.0}% utilisation): room for {added:.0} more seats at {price:.0}/seat{model_note}",
                util * 100.0
            ));
        }
        // the next tier up: when the model finds an upgrade likely, or the account already uses
        // what that tier is for ([opportunities.tier_features])
        let Some(plan) = info.get(id).and_then(|x| x.2.as_deref()) else {
            continue;
        };
        let Some(current) = product_of(plan) else { continue };
        let Some(next) = products
            .iter()
            .filter(|x| x.2 > current.2)
            .min_by(|a, b| a.2.total_cmp(&b.2))
        else {
            continue;
        };
        let used: Vec<&String> = oc
            .tier_features
            .get(&next.0)
            .map(|types| {
                types
                    .iter()
                    .filter(|t| adoption.get(&(id.clone(), (*t).clone())).is_some_and(|n| *n > 0))
                    .collect()
            })
            .unwrap_or_default();
        let likely = p_model.is_some_and(|p| p >= oc.upgrade_min_probability);
        if !likely && used.is_empty() {
            continue;
        }
        let p = p_model.unwrap_or((0.25 + 0.1 * used.len() as f64).min(0.6));
        let difference = ((next.3 - current.3) * seats).max(0.0);
        let adoption_note = if used.is_empty() {
            String::new()
        } else {
            format!(
                "; already uses {} of {}'s features in the last 30 days ({})",
                used.len(),
                next.1,
                used.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )
        };
        oid.push(format!("{id}-tier_upgrade-{as_of}"));
        oacc.push(id.clone());
        okind.push("tier_upgrade");
        oprod.push(Some(next.0.clone()));
        oprob.push((p * 1000.0).round() / 1000.0);
        omrr.push((p * difference * 100.0).round() / 100.0);
        ofit.push(fit);
        oreason.push(format!(
            "{}on {} with {users:.0} of {seats:.0} seats active: {} costs {difference:.0}/month more{adoption_note}",
            p_model
                .map(|p| format!("expansion propensity {:.0}% ({version}); ", p * 100.0))
                .unwrap_or_default(),
            current.1,
            next.1
        ));
    }
    let m = oid.len();
    report.opportunities = m;
    report.expansion_mrr = (omrr.iter().sum::<f64>() * 100.0).round() / 100.0;
    report.expansion_model = expansion_model.is_some();
    let opp_schema = Arc::new(Schema::new(vec![
        Field::new("opportunity_id", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("product_id", DataType::Utf8, true),
        Field::new("probability", DataType::Float64, false),
        Field::new("expected_mrr", DataType::Float64, false),
        Field::new("product_fit", DataType::Float64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("_run_id", DataType::Utf8, false),
    ]));
    let opp = RecordBatch::try_new(
        opp_schema,
        vec![
            Arc::new(StringArray::from(oid)),
            Arc::new(StringArray::from(oacc)),
            Arc::new(Date32Array::from(vec![day; m])),
            Arc::new(StringArray::from(okind)),
            Arc::new(StringArray::from(oprod)),
            Arc::new(Float64Array::from(oprob)),
            Arc::new(Float64Array::from(omrr)),
            Arc::new(Float64Array::from(ofit)),
            Arc::new(StringArray::from(oreason)),
            Arc::new(StringArray::from(vec![run.run_id.as_str(); m])),
        ],
    )?;
    let stats = lake
        .target("scores", "opportunities")
        .replace_where(vec![opp], &pred, &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("scores.opportunities", m, stats.version);
    Ok(report)
}

/// One factor as a sentence: the value, its change over the last 30 days when large enough to
/// matter ("down 62% from 29 30 days earlier"), and the typical value. Features that are already a
/// change ("(ratio - 1)" in their label) read as "down 62%".
pub(crate) fn readable_reason(label: &str, value: f64, typical: f64, month_ago: Option<f64>) -> String {
    let direction = |change: f64| {
        let pct = (change.abs() * 100.0).round();
        if change < 0.0 {
            format!("down {pct:.0}%")
        } else {
            format!("up {pct:.0}%")
        }
    };
    if let Some(base) = label.strip_suffix(" (ratio - 1)")
        && value.is_finite()
    {
        return format!("{base}: {}", direction(value));
    }
    let mut out = format!("{label}: {}", fmt_num(value));
    if let Some(b) = month_ago
        && value.is_finite()
        && b.abs() > 1e-9
    {
        let change = (value - b) / b.abs();
        if change.abs() >= 0.1 {
            out.push_str(&format!(
                ", {} from {} 30 days earlier",
                direction(change),
                fmt_num(b)
            ));
        }
    }
    out.push_str(&format!(" (typical {})", fmt_num(typical)));
    out
}

/// FNV-1a over the feature names and the bits of their values: equal inputs, equal hash, on
/// every platform and version (unlike `DefaultHasher`).
fn inputs_hash(names: &[String], values: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (n, v) in names.iter().zip(values) {
        eat(n.as_bytes());
        // all NaNs hash alike
        eat(&if v.is_nan() {
            f32::NAN.to_bits()
        } else {
            v.to_bits()
        }
        .to_le_bytes());
    }
    format!("{h:016x}")
}

fn probs_at(p: &[cslake_models::Prediction], i: usize) -> f64 {
    p.get(i).map_or(0.0, |p| p.probability)
}

#[cfg(test)]
mod tests {
    use super::readable_reason;

    #[test]
    fn reasons_read_like_sentences() {
        assert_eq!(
            readable_reason("logins in the last 30 days", 11.0, 138.0, Some(29.0)),
            "logins in the last 30 days: 11, down 62% from 29 30 days earlier (typical 138)"
        );
        // a small change is not worth saying
        assert_eq!(
            readable_reason("seats", 10.0, 12.0, Some(10.5)),
            "seats: 10 (typical 12)"
        );
        assert_eq!(
            readable_reason(
                "change in events, last 30 days against the 30 before (ratio - 1)",
                -0.62,
                0.0,
                None
            ),
            "change in events, last 30 days against the 30 before: down 62%"
        );
        assert_eq!(
            readable_reason("days since the last event", f64::NAN, 2.0, Some(3.0)),
            "days since the last event: missing (typical 2)"
        );
    }
}
