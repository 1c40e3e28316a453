//! `scores.health_scores`: each account's health (0-100), its band, one score per measure group,
//! the trend over 7 and 30 days and the measure that weighs most, as its segment's profile says.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Duration;
use cslake_features::HealthProfiles;
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Builder, RecordBatch, StringArray, StringBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{epoch_days, floats, has_table, sql, strings};
use crate::score::inputs::Scoring;
use crate::{Error, Result};

/// The day's health rows and how many accounts each band holds.
pub async fn health(
    ctx: &SessionContext,
    profiles: &HealthProfiles,
    s: &Scoring,
    run_id: &str,
) -> Result<(RecordBatch, BTreeMap<String, usize>)> {
    let (as_of, ids, cols, info) = (s.as_of, &s.ids, &s.cols, &s.info);
    let n = ids.len();
    let day = epoch_days(as_of);
    let mut bands: BTreeMap<String, usize> = BTreeMap::new();
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
            *bands.entry(b.to_string()).or_default() += 1;
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
    arrays.push(Arc::new(StringArray::from(vec![run_id; n])));
    let health = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    Ok((health, bands))
}
