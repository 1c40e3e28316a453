//! `scores.opportunities`: seats where utilisation is high, and the next tier where the expansion
//! propensity model (trained on past MRR increases) says an upgrade is likely or the account
//! already uses what that tier is for (`[opportunities] tier_features`), each with its expected
//! MRR and the reason in words.

use std::collections::HashMap;
use std::sync::Arc;

use cslake_models::Prediction;
use deltalake::arrow::array::{Date32Array, Float64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;

use crate::Result;
use crate::lake::query::{epoch_days, floats, has_table, sql, strings};
use crate::score::inputs::Scoring;
use crate::settings::OpportunityConfig;

/// The day's opportunities: their rows, and the expected MRR they add up to.
pub async fn opportunities(
    ctx: &SessionContext,
    oc: &OpportunityConfig,
    s: &Scoring,
    predictions: &[Prediction],
    propensity: Option<&[f64]>,
    version: &str,
    run_id: &str,
) -> Result<(RecordBatch, f64)> {
    let (as_of, ids, cols, info) = (s.as_of, &s.ids, &s.cols, &s.info);
    let day = epoch_days(as_of);
    // opportunities: seats where utilisation is high, the next tier where the expansion
    // propensity model (trained on past MRR increases) says an upgrade is likely
    let mut products: Vec<(String, String, f64, f64)> = Vec::new();
    if has_table(ctx, "core.products") {
        for b in sql(
            ctx,
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
    if !types.is_empty() && has_table(ctx, "core.usage_events") {
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
        for b in sql(ctx, &q).await? {
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
        let p_model = propensity.map(|p| p[i]);
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
                        - 0.5 * probs_at(predictions, i),
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
    let expected = (omrr.iter().sum::<f64>() * 100.0).round() / 100.0;
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
            Arc::new(StringArray::from(vec![run_id; m])),
        ],
    )?;
    Ok((opp, expected))
}

fn probs_at(p: &[Prediction], i: usize) -> f64 {
    p.get(i).map_or(0.0, |p| p.probability)
}
