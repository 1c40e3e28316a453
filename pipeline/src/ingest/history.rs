//! Attribute history. An entity's `attributes` (the source fields its table keeps as JSON) change
//! over time, and the merge keeps only the latest version: a view reading
//! `accounts.attributes` as of an earlier date would see values from after it (a customer's
//! *last* order date, say). So every ingest that loads accounts or deals appends the versions it
//! sees for the first time to `core.attribute_history`, valid from the as-of date of the run (the
//! day its data completes; the UTC day it ran when it has none), and feature SQL reads the latest
//! version valid on its date. Contacts are people: their attributes are not copied into a history,
//! so an erasure removes them from one place.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::array::{ArrayRef, Date32Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::datafusion::prelude::SessionContext;

use cslake_sinks::WriteStats;

use crate::Result;
use crate::lake::Lake;

/// The tables whose attributes keep a history, with their key.
pub const TABLES: [(&str, &str); 2] = [("accounts", "account_id"), ("deals", "deal_id")];

pub const TABLE: &str = "attribute_history";

pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("valid_from", DataType::Date32, false),
        Field::new("_run_id", DataType::Utf8, false),
        Field::new(
            "_ingested_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// Creates the (empty) history table on a lake's first ingest.
pub async fn create(lake: &Lake, run_id: &str) -> Result<()> {
    lake.target("core", TABLE)
        .create_empty(RecordBatch::new_empty(schema()), &[], run_id)
        .await?;
    Ok(())
}

/// Appends the attributes of `table` that differ from the latest version its history holds (a
/// new entity with attributes, or a change, a removal included). Run
/// after the table's merge; re-running a day adds nothing.
pub async fn record(
    lake: &Lake,
    table: &str,
    key: &str,
    valid_from: NaiveDate,
    run_id: &str,
    ingested_at: DateTime<Utc>,
) -> Result<WriteStats> {
    let ctx: SessionContext = lake.session().await?;
    let has = |t: &str| ctx.table_exist(format!("core.{t}").as_str());
    if !has(table)? || !has(TABLE)? {
        return Ok(WriteStats::default());
    }
    let account = if key == "account_id" {
        format!("t.\"{key}\"")
    } else {
        "t.account_id".to_string()
    };
    let q = format!(
        "SELECT CAST(t.\"{key}\" AS VARCHAR) AS key, CAST({account} AS VARCHAR) AS account_id, t.attributes \
         FROM core.{table} t \
         LEFT JOIN ( \
             SELECT key, attributes FROM ( \
                 SELECT key, attributes, ROW_NUMBER() OVER (PARTITION BY key ORDER BY valid_from DESC, _ingested_at DESC) AS rn \
                 FROM core.{TABLE} WHERE table_name = '{table}' \
             ) v WHERE rn = 1 \
         ) h ON h.key = CAST(t.\"{key}\" AS VARCHAR) \
         WHERE t.\"{key}\" IS NOT NULL AND h.attributes IS DISTINCT FROM t.attributes"
    );
    let batches = ctx.sql(&q).await?.collect().await?;
    let day = (valid_from - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let n = b.num_rows();
        let text = |i: usize| -> Result<ArrayRef> {
            Ok(deltalake::arrow::compute::cast(b.column(i), &DataType::Utf8)?)
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::new_repeated(table, n)),
            text(0)?,
            text(1)?,
            text(2)?,
            Arc::new(Date32Array::from(vec![day; n])),
            Arc::new(StringArray::new_repeated(run_id, n)),
            Arc::new(
                TimestampMicrosecondArray::from(vec![ingested_at.timestamp_micros(); n]).with_timezone("UTC"),
            ),
        ];
        out.push(RecordBatch::try_new(schema(), columns)?);
    }
    let added: usize = out.iter().map(RecordBatch::num_rows).sum();
    if added == 0 {
        return Ok(WriteStats::default());
    }
    let stats = lake.target("core", TABLE).append(out, &[], run_id).await?;
    tracing::info!(table, added, valid_from = %valid_from, "attribute versions recorded");
    Ok(stats)
}
