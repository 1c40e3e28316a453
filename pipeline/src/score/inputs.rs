//! What every score of a day is computed from: the day's materialised features of every account
//! (one vector each, in the registry's order) and the account fields the scores show.

use std::collections::HashMap;

use chrono::NaiveDate;
use cslake_features::{Registry, feature_vector};
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{floats, has_table, sql, strings};
use crate::{Error, Result};

/// An account's name, segment and plan.
pub type Info = HashMap<String, (String, Option<String>, Option<String>)>;

/// The day's inputs: per account (in `ids` order) the value of every feature.
pub struct Scoring {
    pub as_of: NaiveDate,
    pub names: Vec<String>,
    pub ids: Vec<String>,
    pub cols: HashMap<String, Vec<f64>>,
    pub info: Info,
}

impl Scoring {
    /// A feature's value for the account in row `i` (NaN when no view provides it).
    pub fn col(&self, name: &str, i: usize) -> f64 {
        self.cols.get(name).map_or(f64::NAN, |c| c[i])
    }

    /// The feature matrix the models read, row by row.
    pub fn matrix(&self) -> Vec<f32> {
        let columns: Vec<&Vec<f64>> = self.names.iter().map(|f| &self.cols[f]).collect();
        (0..self.ids.len())
            .flat_map(|i| columns.iter().map(move |c| c[i] as f32))
            .collect()
    }
}

/// Loads the features of `as_of` (every view must be materialised) and the accounts' fields.
pub async fn load(ctx: &SessionContext, registry: &Registry, as_of: NaiveDate) -> Result<Scoring> {
    // the materialised features of the day
    let not_ready = || {
        Error::Job(format!(
            "features for {as_of} are not materialised: run `cslake features --as-of {as_of}` first"
        ))
    };
    let mut computed = Vec::new();
    for view in &registry.views {
        let table = format!("features.{}", view.name);
        if !has_table(ctx, &table) {
            return Err(not_ready());
        }
        let batches = sql(
            ctx,
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
    let vector = feature_vector(ctx, registry, &computed).await?;

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
    // account attributes
    let mut info: HashMap<String, (String, Option<String>, Option<String>)> = HashMap::new();
    for b in sql(ctx, "SELECT account_id, name, segment, plan FROM core.accounts").await? {
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

    Ok(Scoring {
        as_of,
        names,
        ids,
        cols,
        info,
    })
}
