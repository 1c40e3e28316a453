//! `ops/source_state`: which files of a source were loaded, so the next run reads only new or
//! changed ones. Written after the core tables are committed: a run that fails never advances it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;
use object_store::ObjectMeta;

use crate::ingest::connectors::FileDrop;
use crate::lake::query::{floats, has_table, sql, strings};
use crate::lake::schema::ColType;
use crate::{Lake, Result};

/// What identifies one version of a file, as loaded into one table (one file can feed several
/// tables, e.g. a Segment export with track, identify and group calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub table: String,
    /// Path relative to the source root.
    pub object: String,
    pub size: i64,
    /// Last modification, microseconds since the epoch.
    pub modified: i64,
    pub e_tag: Option<String>,
}

impl FileState {
    pub fn of(drop: &FileDrop, meta: &ObjectMeta, table: &str) -> Self {
        Self {
            table: table.to_string(),
            object: drop.relative_name(meta),
            size: meta.size as i64,
            modified: meta.last_modified.timestamp_micros(),
            e_tag: meta.e_tag.clone(),
        }
    }
}

/// The files of `source` loaded so far, by table and relative path.
pub async fn load(ctx: &SessionContext, source: &str) -> Result<HashMap<(String, String), FileState>> {
    let mut out = HashMap::new();
    if !has_table(ctx, "ops.source_state") {
        return Ok(out);
    }
    let q = format!(
        "SELECT table_name, object, size, CAST(last_modified AS BIGINT) AS modified, e_tag FROM ops.source_state \
         WHERE source = '{}'",
        source.replace('\'', "''")
    );
    for b in sql(ctx, &q).await? {
        let (tables, objects, sizes, modified, tags) = (
            strings(&b, "table_name")?,
            strings(&b, "object")?,
            floats(&b, "size")?,
            strings(&b, "modified")?,
            strings(&b, "e_tag")?,
        );
        for i in 0..b.num_rows() {
            let object = objects[i].clone().unwrap_or_default();
            let table = tables[i].clone().unwrap_or_default();
            let state = FileState {
                table: table.clone(),
                object: object.clone(),
                size: sizes[i] as i64,
                modified: modified[i]
                    .as_deref()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or_default(),
                e_tag: tags[i].clone(),
            };
            out.insert((table, object), state);
        }
    }
    Ok(out)
}

/// The columns of `ops.source_state`.
pub fn state_schema() -> Arc<Schema> {
    let ts = ColType::Timestamp.arrow();
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("object", DataType::Utf8, false),
        Field::new("size", DataType::Int64, false),
        Field::new("last_modified", ts.clone(), false),
        Field::new("e_tag", DataType::Utf8, true),
        Field::new("_run_id", DataType::Utf8, false),
        Field::new("loaded_at", ts, false),
    ]))
}

/// Upserts the state of the files this run loaded.
pub async fn record(lake: &Lake, source: &str, files: &[FileState], run_id: &str) -> Result<Option<u64>> {
    if files.is_empty() {
        return Ok(None);
    }
    let n = files.len();
    let schema = state_schema();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![source; n])),
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|f| f.table.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|f| f.object.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.size))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(files.iter().map(|f| f.modified))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter(files.iter().map(|f| f.e_tag.as_deref()))),
            Arc::new(StringArray::from(vec![run_id; n])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros(); n]).with_timezone("UTC"),
            ),
        ],
    )?;
    let stats = lake
        .target("ops", "source_state")
        .upsert(
            vec![batch],
            &["source", "table_name", "object"],
            &["size", "last_modified", "e_tag"],
            &["_run_id", "loaded_at"],
            run_id,
        )
        .await?;
    Ok(stats.version)
}

/// The cursors of an API source's streams (`ops.source_cursors`): the newest change loaded.
pub async fn load_cursors(ctx: &SessionContext, source: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    if !has_table(ctx, "ops.source_cursors") {
        return Ok(out);
    }
    let q = format!(
        "SELECT stream, cursor FROM ops.source_cursors WHERE source = '{}'",
        source.replace('\'', "''")
    );
    for b in sql(ctx, &q).await? {
        let (streams, cursors) = (strings(&b, "stream")?, strings(&b, "cursor")?);
        for (s, c) in streams.into_iter().zip(cursors) {
            if let (Some(s), Some(c)) = (s, c) {
                out.insert(s, c);
            }
        }
    }
    Ok(out)
}

/// The columns of `ops.source_cursors`.
pub fn cursors_schema() -> Arc<Schema> {
    let ts = ColType::Timestamp.arrow();
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("cursor", DataType::Utf8, false),
        Field::new("_run_id", DataType::Utf8, false),
        Field::new("updated_at", ts, false),
    ]))
}

/// Upserts the cursors a run reached. Called only after the core tables are committed.
pub async fn record_cursors(
    lake: &Lake,
    source: &str,
    cursors: &[(String, String)],
    run_id: &str,
) -> Result<Option<u64>> {
    if cursors.is_empty() {
        return Ok(None);
    }
    let n = cursors.len();
    let schema = cursors_schema();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![source; n])),
            Arc::new(StringArray::from_iter_values(
                cursors.iter().map(|c| c.0.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                cursors.iter().map(|c| c.1.as_str()),
            )),
            Arc::new(StringArray::from(vec![run_id; n])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros(); n]).with_timezone("UTC"),
            ),
        ],
    )?;
    let stats = lake
        .target("ops", "source_cursors")
        .upsert(
            vec![batch],
            &["source", "stream"],
            &["cursor"],
            &["_run_id", "updated_at"],
            run_id,
        )
        .await?;
    Ok(stats.version)
}
