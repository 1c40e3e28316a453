//! De-duplication of a load whose keys alone outgrow memory (the usual large load is
//! de-duplicated a hash partition of keys at a time, `ingest::spill`): the rows are sorted on
//! their key and on the order that decides which row wins (DataFusion's sort, which spills to
//! disk within the memory budget), then the first row of each key is kept as the sorted rows
//! stream past, by comparing each key with the one before it, a column at a time.
//!
//! Written here rather than as SQL: `row_number() OVER (PARTITION BY key ...)` does the same in
//! DataFusion 55, but it keeps state per partition, and with a partition per event (keys are
//! unique but for the odd duplicate delivery) it spent more time than reading, casting and
//! writing the rows together (measured with `benches/ingest.rs`).

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::compute::kernels::boolean::and;
use deltalake::arrow::compute::kernels::cmp::distinct;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use futures::{StreamExt, TryStreamExt};

use crate::{Error, Result};

/// Of `sorted` (rows ordered on `key`, then on what decides the winner), the first row of each
/// key, as a DataFrame that streams: nothing is collected. With `keep_if`, a first row is kept
/// only when that boolean column is true (rows that only say a key exists sort first and are
/// dropped with their key). The columns in `drop` are left out.
pub fn first_per_key(
    ctx: &SessionContext,
    sorted: DataFrame,
    key: &str,
    keep_if: Option<&str>,
    drop: &[&str],
) -> Result<DataFrame> {
    let input = sorted.schema().as_arrow().clone();
    let key_at = input
        .index_of(key)
        .map_err(|_| Error::Job(format!("de-duplication: no key column {key}")))?;
    let keep_at = keep_if
        .map(|c| {
            input
                .index_of(c)
                .map_err(|_| Error::Job(format!("de-duplication: no column {c}")))
        })
        .transpose()?;
    let kept: Vec<usize> = (0..input.fields().len())
        .filter(|&i| !drop.contains(&input.field(i).name().as_str()))
        .collect();
    let schema: SchemaRef = Arc::new(input.project(&kept)?);
    let firsts = Firsts {
        schema: schema.clone(),
        sorted,
        key_at,
        keep_at,
        kept,
    };
    let table = StreamingTable::try_new(schema, vec![Arc::new(firsts)])?;
    Ok(ctx.read_table(Arc::new(table))?)
}

/// The first rows of each key of a sorted DataFrame, as a table DataFusion (and delta-rs's
/// writers) can plan. Each execution sorts again: a merge may read its source more than once.
struct Firsts {
    schema: SchemaRef,
    sorted: DataFrame,
    key_at: usize,
    keep_at: Option<usize>,
    kept: Vec<usize>,
}

impl std::fmt::Debug for Firsts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firsts").field("schema", &self.schema).finish()
    }
}

impl PartitionStream for Firsts {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (key_at, keep_at, kept) = (self.key_at, self.keep_at, self.kept.clone());
        let sorted = self.sorted.clone();
        let mut last: Option<ArrayRef> = None;
        let rows = futures::stream::once(async move { sorted.execute_stream().await })
            .try_flatten()
            .map(move |batch| {
                let batch = batch?;
                let mask = first_rows(batch.column(key_at), &mut last)?;
                let mask = match keep_at {
                    Some(i) => and(&mask, batch.column(i).as_boolean())?,
                    None => mask,
                };
                Ok(filter_record_batch(&batch.project(&kept)?, &mask)?)
            });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), rows))
    }
}

/// Which rows of `keys` start a new key, given the last key of the batch before (`last`, which
/// is updated).
fn first_rows(keys: &ArrayRef, last: &mut Option<ArrayRef>) -> std::result::Result<BooleanArray, ArrowError> {
    let n = keys.len();
    if n == 0 {
        return Ok(BooleanArray::from(Vec::<bool>::new()));
    }
    let first = match last.as_ref() {
        Some(prev) => distinct(&keys.slice(0, 1), prev)?.value(0),
        None => true,
    };
    let rest = distinct(&keys.slice(1, n - 1), &keys.slice(0, n - 1))?;
    let mut mask = BooleanBuilder::with_capacity(n);
    mask.append_value(first);
    mask.append_array(&rest);
    *last = Some(keys.slice(n - 1, 1));
    Ok(mask.finish())
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{RecordBatch, StringArray, UInt64Array};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn a_key_that_spans_two_batches_starts_once() {
        let mut last = None;
        let a: ArrayRef = Arc::new(StringArray::from(vec!["a", "a", "b"]));
        let b: ArrayRef = Arc::new(StringArray::from(vec!["b", "c", "c"]));
        let empty: ArrayRef = Arc::new(StringArray::from(Vec::<&str>::new()));
        let flags = |m: BooleanArray| m.iter().map(|v| v == Some(true)).collect::<Vec<_>>();
        assert_eq!(flags(first_rows(&a, &mut last).unwrap()), [true, false, true]);
        assert_eq!(flags(first_rows(&empty, &mut last).unwrap()), Vec::<bool>::new());
        assert_eq!(flags(first_rows(&b, &mut last).unwrap()), [false, true, false]);
    }

    #[tokio::test]
    async fn keeps_the_first_row_of_each_key_across_batches_and_drops_known_keys() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("new", DataType::Boolean, false),
            Field::new("ord", DataType::UInt64, false),
        ]));
        let batch = |ids: &[&str], new: &[bool], ord: &[u64]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(ids.to_vec())),
                    Arc::new(BooleanArray::from(new.to_vec())),
                    Arc::new(UInt64Array::from(ord.to_vec())),
                ],
            )
            .unwrap()
        };
        let ctx = SessionContext::new();
        // "b" ends one batch and starts the next; "c" is in the table already
        let df = ctx
            .read_batches(vec![
                batch(&["b", "a", "b"], &[true, true, true], &[5, 1, 2]),
                batch(&["c", "b", "c", "d"], &[false, true, true, true], &[0, 7, 3, 4]),
            ])
            .unwrap()
            .sort_by(vec![
                deltalake::datafusion::prelude::col("id"),
                deltalake::datafusion::prelude::col("new"),
                deltalake::datafusion::prelude::col("ord"),
            ])
            .unwrap();
        let out = first_per_key(&ctx, df, "id", Some("new"), &["new"])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows: Vec<(String, u64)> = out
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_string::<i32>().clone();
                let ord = b
                    .column(1)
                    .as_primitive::<deltalake::arrow::datatypes::UInt64Type>()
                    .clone();
                (0..b.num_rows()).map(move |i| (ids.value(i).to_string(), ord.value(i)))
            })
            .collect();
        assert_eq!(
            rows,
            [("a".to_string(), 1), ("b".to_string(), 2), ("d".to_string(), 4)]
        );
        assert_eq!(out[0].schema().fields().len(), 2, "the flag column is dropped");
    }
}
