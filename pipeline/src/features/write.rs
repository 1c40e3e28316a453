//! Writing dated feature tables (views and their states), whose columns can change.

use deltalake::datafusion::prelude::SessionContext;

use crate::{Lake, Result};

/// Replaces the rows of `features.<table>` matching `predicate` (dates) with `batches`. When
/// the batches' columns differ from the table's (a view or state whose SQL changed, a new choice
/// of event types), the table is replaced whole: its other dates hold the old columns, and
/// `cslake backfill` recomputes them with the new ones.
pub async fn replace_dated(
    lake: &Lake,
    table: &str,
    batches: Vec<deltalake::arrow::array::RecordBatch>,
    predicate: &str,
    run_id: &str,
) -> Result<cslake_sinks::WriteStats> {
    let target = lake.target("features", table);
    let same_columns = match (target.open().await?, batches.first()) {
        (Some(t), Some(b)) => {
            let old: Vec<String> = t
                .snapshot()?
                .schema()
                .fields()
                .map(|f| f.name().to_string())
                .collect();
            let new: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
            old == new
        }
        _ => true,
    };
    if same_columns {
        return Ok(target
            .replace_where(batches, predicate, &["as_of_date"], run_id)
            .await?);
    }
    tracing::warn!(
        table = format!("features.{table}").as_str(),
        "columns changed: the table is replaced and keeps only this run's dates (backfill recomputes the others)"
    );
    let ctx = SessionContext::new();
    let df = ctx.read_batches(batches)?;
    Ok(target
        .replace_partitions_df(df, &ctx, &["as_of_date"], None, run_id)
        .await?)
}
