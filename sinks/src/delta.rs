use std::collections::HashMap;

use deltalake::arrow::array::RecordBatch;
use std::sync::Arc;

use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, FieldRef, Schema};
use deltalake::datafusion::common::Column;
use deltalake::datafusion::prelude::{DataFrame, Expr, SessionContext};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use url::Url;

use crate::{Error, Result};

/// A Delta table location and the storage options to reach it.
#[derive(Debug, Clone)]
pub struct DeltaTarget {
    pub name: String,
    pub url: Url,
    pub storage_options: HashMap<String, String>,
    /// Lineage: the versions of the tables the writing job could read, recorded with each
    /// commit as `cslake_inputs` (`{"features.billing": 12, ...}`).
    pub inputs: Option<serde_json::Value>,
    /// Columns whose values are (nearly) all different, written without a Parquet dictionary:
    /// building one for a key only to drop it costs more than the rest of the write.
    pub unique: Vec<String>,
    /// `Some`: only these columns get a Parquet dictionary (the few low-cardinality labels of a
    /// large derived table); every other column is written plain.
    pub dictionary_only: Option<Vec<String>>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteStats {
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
    /// The table version after the commit (`None` when nothing was committed).
    pub version: Option<u64>,
}

impl DeltaTarget {
    pub fn new(name: impl Into<String>, url: Url, storage_options: HashMap<String, String>) -> Self {
        Self {
            name: name.into(),
            url,
            storage_options,
            inputs: None,
            unique: Vec::new(),
            dictionary_only: None,
        }
    }

    /// Gives only `columns` a Parquet dictionary (see [`DeltaTarget::dictionary_only`]).
    pub fn with_dictionary_only(mut self, columns: &[&str]) -> Self {
        self.dictionary_only = Some(columns.iter().map(|c| (*c).to_string()).collect());
        self
    }

    /// Writes `columns` without a dictionary (see [`DeltaTarget::unique`]).
    pub fn with_unique(mut self, columns: &[&str]) -> Self {
        self.unique = columns.iter().map(|c| (*c).to_string()).collect();
        self
    }

    /// delta-rs's writer properties (Snappy), without dictionaries for the unique columns.
    fn writer_properties(&self) -> WriterProperties {
        let mut props = WriterProperties::builder()
            .set_created_by(format!("cslake {}", env!("CARGO_PKG_VERSION")))
            .set_compression(Compression::SNAPPY);
        for c in &self.unique {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c.as_str()), false);
        }
        if let Some(only) = &self.dictionary_only {
            props = props.set_dictionary_enabled(false);
            for c in only {
                props = props.set_column_dictionary_enabled(ColumnPath::from(c.as_str()), true);
            }
        }
        props.build()
    }

    /// Records `inputs` (table → version) with every commit this target makes.
    pub fn with_inputs(mut self, inputs: serde_json::Value) -> Self {
        self.inputs = Some(inputs);
        self
    }

    fn err(&self, source: DeltaTableError) -> Error {
        Error::Delta {
            table: self.name.clone(),
            source,
        }
    }

    /// Opens the table; an uninitialised table (no `_delta_log` yet) is returned as well, ready
    /// for its first write.
    pub async fn handle(&self) -> Result<DeltaTable> {
        let (mut table, exists) = self.unloaded().await?;
        // Only load what exists: loading a missing table makes the kernel log an error.
        if exists {
            table.load().await.map_err(|e| self.err(e))?;
        }
        Ok(table)
    }

    /// The table's handle without its log read, and whether the table exists (one listing).
    async fn unloaded(&self) -> Result<(DeltaTable, bool)> {
        if self.url.scheme() == "file"
            && let Ok(path) = self.url.to_file_path()
        {
            std::fs::create_dir_all(&path).map_err(|e| Error::Table {
                table: self.name.clone(),
                message: format!("creating {}: {e}", path.display()),
            })?;
        }
        let table = DeltaTableBuilder::from_url(self.url.clone())
            .map_err(|e| self.err(e))?
            .with_storage_options(self.storage_options.clone())
            .build()
            .map_err(|e| self.err(e))?;
        let exists = table
            .verify_deltatable_existence()
            .await
            .map_err(|e| self.err(e))?;
        Ok((table, exists))
    }

    /// The table if it exists.
    pub async fn open(&self) -> Result<Option<DeltaTable>> {
        let table = self.handle().await?;
        Ok(table.version().is_some().then_some(table))
    }

    /// The commit metadata: the run, and the input versions when known.
    pub fn commit(&self, run_id: &str) -> CommitProperties {
        let mut meta = vec![(
            "cslake_run_id".to_string(),
            serde_json::Value::String(run_id.to_string()),
        )];
        if let Some(inputs) = &self.inputs {
            meta.push(("cslake_inputs".to_string(), inputs.clone()));
        }
        CommitProperties::default().with_metadata(meta)
    }

    /// Creates the table, empty, with the schema of `example` (its rows are ignored) when it does
    /// not exist yet: a documented table exists before its first row, so readers find it. Another
    /// writer creating it at the same moment is not an error. True when this call created it.
    pub async fn create_empty(
        &self,
        example: RecordBatch,
        partition_by: &[&str],
        run_id: &str,
    ) -> Result<bool> {
        use deltalake::kernel::StructType;
        use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
        // called on every ingest and act: an existing table costs one listing, not a log replay
        let (table, exists) = self.unloaded().await?;
        if exists {
            return Ok(false);
        }
        let example = signed_batches(vec![example])?.remove(0);
        let schema: StructType = example
            .schema()
            .as_ref()
            .try_into_kernel()
            .map_err(|e| self.err(e.into()))?;
        let created = table
            .create()
            .with_columns(schema.fields().cloned())
            .with_partition_columns(partition_by.iter().map(|s| s.to_string()))
            .with_save_mode(SaveMode::Ignore)
            .with_commit_properties(self.commit(run_id))
            .await;
        match created {
            Ok(_) => Ok(true),
            Err(_) if self.unloaded().await?.1 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Adds the columns of `schema` an existing table lacks, as nullable columns (their value is
    /// null in the rows already written), in one commit that changes no data: a table written by
    /// an older cslake takes the columns a newer one writes. Returns the columns added (none when
    /// the table does not exist or has them all).
    pub async fn add_missing_columns(&self, schema: &Schema, run_id: &str) -> Result<Vec<String>> {
        use deltalake::kernel::StructField;
        use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
        let Some(table) = self.open().await? else {
            return Ok(Vec::new());
        };
        let have: Vec<String> = table
            .snapshot()
            .map_err(|e| self.err(e))?
            .schema()
            .fields()
            .map(|f| f.name().clone())
            .collect();
        let missing: Vec<FieldRef> = schema
            .fields()
            .iter()
            .filter(|f| !have.contains(f.name()))
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let signed = signed_batches(vec![RecordBatch::new_empty(Arc::new(Schema::new(missing)))])?.remove(0);
        let fields: Vec<StructField> = signed
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().try_into_kernel())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e: deltalake::arrow::error::ArrowError| self.err(e.into()))?;
        let names = fields.iter().map(|f| f.name().clone()).collect();
        table
            .add_columns()
            .with_fields(fields)
            .with_commit_properties(self.commit(run_id))
            .await
            .map_err(|e| self.err(e))?;
        Ok(names)
    }

    /// Appends rows (creating the table on first write).
    pub async fn append(
        &self,
        batches: Vec<RecordBatch>,
        partition_by: &[&str],
        run_id: &str,
    ) -> Result<WriteStats> {
        let batches = signed_batches(batches)?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let table = self
            .handle()
            .await?
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(partition_by.iter().map(|s| s.to_string()))
            .with_commit_properties(self.commit(run_id))
            .with_writer_properties(self.writer_properties())
            .await
            .map_err(|e| self.err(e))?;
        Ok(WriteStats {
            inserted: rows,
            version: table.version(),
            ..Default::default()
        })
    }

    /// Replaces the rows matching `predicate` (e.g. `as_of_date = '2026-01-31'`) with `batches`
    /// in one commit: re-running a day replaces its partition instead of duplicating it.
    pub async fn replace_where(
        &self,
        batches: Vec<RecordBatch>,
        predicate: &str,
        partition_by: &[&str],
        run_id: &str,
    ) -> Result<WriteStats> {
        let table = self.handle().await?;
        if table.version().is_none() {
            return self.append(batches, partition_by, run_id).await;
        }
        let batches = signed_batches(batches)?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let table = table
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate.to_string())
            .with_partition_columns(partition_by.iter().map(|s| s.to_string()))
            .with_commit_properties(self.commit(run_id))
            .with_writer_properties(self.writer_properties())
            .await
            .map_err(|e| self.err(e))?;
        Ok(WriteStats {
            inserted: rows,
            version: table.version(),
            ..Default::default()
        })
    }

    /// Upserts on `keys`: new keys are inserted whole; an existing row is updated only when one
    /// of the `compare` columns differs, so re-loading unchanged data rewrites nothing. An update
    /// sets the `compare` columns and `also_update` (audit columns) and leaves every other column
    /// as it was, so an export that lacks a column does not erase what an earlier one loaded.
    pub async fn upsert(
        &self,
        batches: Vec<RecordBatch>,
        keys: &[&str],
        compare: &[&str],
        also_update: &[&str],
        run_id: &str,
    ) -> Result<WriteStats> {
        if batches.is_empty() {
            let version = self.open().await?.and_then(|t| t.version());
            return Ok(WriteStats {
                version,
                ..Default::default()
            });
        }
        let ctx = SessionContext::new();
        let source = ctx.read_batches(batches)?;
        self.upsert_df(source, keys, compare, also_update, &ctx, run_id)
            .await
    }

    /// Like [`upsert`](Self::upsert) for rows that need not fit in memory: `source` runs in
    /// `ctx`, its memory pool and spilling apply; one commit.
    pub async fn upsert_df(
        &self,
        source: DataFrame,
        keys: &[&str],
        compare: &[&str],
        also_update: &[&str],
        ctx: &SessionContext,
        run_id: &str,
    ) -> Result<WriteStats> {
        let source = signed_df(source)?;
        let Some(table) = self.open().await? else {
            return self.write_df(source, ctx, SaveMode::Append, run_id).await;
        };
        let on = keys
            .iter()
            .map(|k| format!("target.{k} = source.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let changed = compare
            .iter()
            .map(|c| format!("(target.{c} IS DISTINCT FROM source.{c})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let columns = column_names(&source);
        let (table, m) = table
            .merge(source, on)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_session_state(delta_state(ctx))
            .with_commit_properties(self.commit(run_id))
            .with_writer_properties(self.writer_properties())
            .when_matched_update(|u| {
                compare
                    .iter()
                    .chain(also_update)
                    .fold(u.predicate(changed.clone()), |u, c| {
                        u.update(*c, format!("source.{c}"))
                    })
            })
            .map_err(|e| self.err(e))?
            .when_not_matched_insert(|i| {
                columns
                    .iter()
                    .fold(i, |i, c| i.set(c.as_str(), format!("source.{c}")))
            })
            .map_err(|e| self.err(e))?
            .await
            .map_err(|e| self.err(e))?;
        Ok(WriteStats {
            inserted: m.num_target_rows_inserted,
            updated: m.num_target_rows_updated,
            deleted: 0,
            version: table.version(),
        })
    }

    /// Inserts only rows whose `key` is not in the table yet (append with de-duplication).
    pub async fn insert_new(&self, batches: Vec<RecordBatch>, key: &str, run_id: &str) -> Result<WriteStats> {
        let Some(table) = self.open().await? else {
            return self.append(batches, &[], run_id).await;
        };
        if batches.is_empty() {
            return Ok(WriteStats {
                version: table.version(),
                ..Default::default()
            });
        }
        let ctx = SessionContext::new();
        let source = ctx.read_batches(batches)?;
        self.merge_new(table, source, key, &ctx, run_id).await
    }

    /// Like [`insert_new`](Self::insert_new) for rows that need not fit in memory: `source` is
    /// planned and executed in `ctx` (its memory pool and spilling apply) and streamed into the
    /// table; one commit, as for batches.
    pub async fn insert_new_df(
        &self,
        source: DataFrame,
        key: &str,
        ctx: &SessionContext,
        run_id: &str,
    ) -> Result<WriteStats> {
        match self.open().await? {
            Some(table) => self.merge_new(table, source, key, ctx, run_id).await,
            None => self.write_df(source, ctx, SaveMode::Append, run_id).await,
        }
    }

    /// Appends the rows of `df`, streamed (see [`insert_new_df`](Self::insert_new_df)); one
    /// commit, creating the table when missing.
    pub async fn append_df(&self, df: DataFrame, ctx: &SessionContext, run_id: &str) -> Result<WriteStats> {
        self.write_df(df, ctx, SaveMode::Append, run_id).await
    }

    /// Replaces the whole table's content with the rows of `df`, streamed (see
    /// [`insert_new_df`](Self::insert_new_df)); one commit.
    pub async fn overwrite_df(
        &self,
        df: DataFrame,
        ctx: &SessionContext,
        run_id: &str,
    ) -> Result<WriteStats> {
        self.write_df(df, ctx, SaveMode::Overwrite, run_id).await
    }

    /// Streams the rows of `df` into a table partitioned by `partition_by`, in one commit:
    /// `replace: Some(predicate)` replaces the rows matching it (give the partition values, e.g.
    /// `event_date IN (...)`, and only those partitions' files are rewritten); `None` replaces
    /// the whole table, its schema and partitioning included (a rebuild, or a layout change).
    pub async fn replace_partitions_df(
        &self,
        df: DataFrame,
        ctx: &SessionContext,
        partition_by: &[&str],
        replace: Option<&str>,
        run_id: &str,
    ) -> Result<WriteStats> {
        let exists = self.open().await?.is_some();
        let layout = Layout {
            partition_by,
            replace_where: replace.filter(|_| exists),
            new_schema: replace.is_none(),
        };
        let mode = if replace.is_some() && !exists {
            SaveMode::Append
        } else {
            SaveMode::Overwrite
        };
        self.write_df_with(df, ctx, mode, &layout, run_id).await
    }

    async fn write_df(
        &self,
        df: DataFrame,
        ctx: &SessionContext,
        mode: SaveMode,
        run_id: &str,
    ) -> Result<WriteStats> {
        self.write_df_with(df, ctx, mode, &Layout::default(), run_id)
            .await
    }

    async fn write_df_with(
        &self,
        df: DataFrame,
        ctx: &SessionContext,
        mode: SaveMode,
        layout: &Layout<'_>,
        run_id: &str,
    ) -> Result<WriteStats> {
        let df = signed_df(df)?;
        let mut write = self
            .handle()
            .await?
            .write(Vec::<RecordBatch>::new())
            .with_input_plan(df.logical_plan().clone())
            .with_session_state(delta_state(ctx))
            .with_save_mode(mode)
            .with_commit_properties(self.commit(run_id))
            .with_writer_properties(self.writer_properties());
        if !layout.partition_by.is_empty() {
            write = write.with_partition_columns(layout.partition_by.iter().map(|s| s.to_string()));
        }
        if let Some(p) = layout.replace_where {
            write = write.with_replace_where(p.to_string());
        }
        if layout.new_schema {
            write = write.with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite);
        }
        let table = write.await.map_err(|e| self.err(e))?;
        // the rows written, from the commit's own metrics (counting first would run the plan twice)
        let info: Vec<_> = table
            .history(Some(1))
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        let inserted = info
            .first()
            .and_then(|c| c.info.get("operationMetrics"))
            .and_then(|m| m.get("num_added_rows"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as usize;
        Ok(WriteStats {
            inserted,
            version: table.version(),
            ..Default::default()
        })
    }

    async fn merge_new(
        &self,
        table: DeltaTable,
        source: DataFrame,
        key: &str,
        ctx: &SessionContext,
        run_id: &str,
    ) -> Result<WriteStats> {
        let source = signed_df(source)?;
        let columns = column_names(&source);
        let (table, m) = table
            .merge(source, format!("target.{key} = source.{key}"))
            .with_source_alias("source")
            .with_target_alias("target")
            .with_session_state(delta_state(ctx))
            .with_commit_properties(self.commit(run_id))
            .with_writer_properties(self.writer_properties())
            .when_not_matched_insert(|i| {
                columns
                    .iter()
                    .fold(i, |i, c| i.set(c.as_str(), format!("source.{c}")))
            })
            .map_err(|e| self.err(e))?
            .await
            .map_err(|e| self.err(e))?;
        Ok(WriteStats {
            inserted: m.num_target_rows_inserted,
            version: table.version(),
            ..Default::default()
        })
    }
}

/// How a streamed write lays the table out.
#[derive(Default)]
struct Layout<'a> {
    partition_by: &'a [&'a str],
    replace_where: Option<&'a str>,
    /// The write replaces the schema and partitioning as well as the rows.
    new_schema: bool,
}

/// The type a column is written as: Delta has no unsigned integers, and delta-rs records an
/// unsigned column under the signed type of its width while the Parquet files keep the unsigned
/// one, which readers such as polars refuse. Values that do not fit fail the cast (an error,
/// never a wrapped number).
fn signed(t: &DataType) -> Option<DataType> {
    let field = |f: &FieldRef| -> Option<FieldRef> {
        signed(f.data_type()).map(|t| Arc::new(f.as_ref().clone().with_data_type(t)))
    };
    match t {
        DataType::UInt8 => Some(DataType::Int8),
        DataType::UInt16 => Some(DataType::Int16),
        DataType::UInt32 => Some(DataType::Int32),
        DataType::UInt64 => Some(DataType::Int64),
        DataType::List(f) => field(f).map(DataType::List),
        DataType::LargeList(f) => field(f).map(DataType::LargeList),
        DataType::Struct(fields) => {
            let changed: Vec<Option<FieldRef>> = fields.iter().map(field).collect();
            changed.iter().any(Option::is_some).then(|| {
                DataType::Struct(
                    fields
                        .iter()
                        .zip(changed)
                        .map(|(f, c)| c.unwrap_or_else(|| f.clone()))
                        .collect(),
                )
            })
        }
        _ => None,
    }
}

/// `batches` with every unsigned column cast to its signed type (see [`signed`]).
fn signed_batches(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    let schema = first.schema();
    if !schema.fields().iter().any(|f| signed(f.data_type()).is_some()) {
        return Ok(batches);
    }
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match signed(f.data_type()) {
            Some(t) => Arc::new(f.as_ref().clone().with_data_type(t)),
            None => f.clone(),
        })
        .collect();
    let target = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    batches
        .into_iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(target.fields())
                .map(|(c, f)| cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(target.clone(), columns)?)
        })
        .collect()
}

/// `df` with every unsigned column cast to its signed type (see [`signed`]).
fn signed_df(df: DataFrame) -> Result<DataFrame> {
    if !df
        .schema()
        .fields()
        .iter()
        .any(|f| signed(f.data_type()).is_some())
    {
        return Ok(df);
    }
    let exprs: Vec<Expr> = df
        .schema()
        .iter()
        .map(|(q, f)| {
            let c = Expr::Column(Column::from((q, f)));
            match signed(f.data_type()) {
                Some(t) => deltalake::datafusion::prelude::cast(c, t).alias(f.name()),
                None => c,
            }
        })
        .collect();
    Ok(df.select(exprs)?)
}

fn column_names(df: &DataFrame) -> Vec<String> {
    df.schema().fields().iter().map(|f| f.name().clone()).collect()
}

/// `ctx`'s session (its memory pool, spilling and object stores) with delta-rs's planner, which
/// knows the plan nodes its writers add.
fn delta_state(ctx: &SessionContext) -> Arc<dyn deltalake::datafusion::catalog::Session> {
    let state = deltalake::datafusion::execution::SessionStateBuilder::new_from_existing(ctx.state())
        .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
        .build();
    Arc::new(state)
}

impl DeltaTarget {
    /// Replaces the whole table's content in one commit (creating it when missing), its
    /// columns included: a training set whose features changed replaces the old one whole.
    pub async fn overwrite(&self, batches: Vec<RecordBatch>, run_id: &str) -> Result<WriteStats> {
        let batches = signed_batches(batches)?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let table = self
            .handle()
            .await?
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
            .with_commit_properties(self.commit(run_id))
            .with_writer_properties(self.writer_properties())
            .await
            .map_err(|e| self.err(e))?;
        Ok(WriteStats {
            inserted: rows,
            version: table.version(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    //! Every write mode against a real local table, read back through DataFusion.
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::arrow::util::pretty::pretty_format_batches;
    use deltalake::datafusion::prelude::SessionContext;

    use super::*;

    fn batch(rows: &[(&str, &str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("day", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    async fn read(t: &DeltaTarget) -> String {
        let table = t.open().await.unwrap().unwrap();
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let rows = ctx
            .sql("SELECT id, day, v FROM t ORDER BY id, day")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        pretty_format_batches(&rows).unwrap().to_string()
    }

    fn target(dir: &tempfile::TempDir) -> DeltaTarget {
        DeltaTarget::new("t", Url::from_directory_path(dir.path()).unwrap(), HashMap::new())
    }

    #[tokio::test]
    async fn upsert_inserts_updates_changed_rows_only_and_keeps_other_columns() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(&dir);
        assert!(
            t.open().await.unwrap().is_none(),
            "no table before the first write"
        );
        let s = t
            .upsert(
                vec![batch(&[("a", "d1", 1), ("b", "d1", 2)])],
                &["id"],
                &["v"],
                &[],
                "r1",
            )
            .await
            .unwrap();
        assert_eq!((s.inserted, s.version), (2, Some(0)));
        // a unchanged, b changed, c new; `day` is not updated (not in compare/also_update)
        let s = t
            .upsert(
                vec![batch(&[("a", "d2", 1), ("b", "d2", 5), ("c", "d2", 3)])],
                &["id"],
                &["v"],
                &[],
                "r2",
            )
            .await
            .unwrap();
        assert_eq!((s.inserted, s.updated), (1, 1));
        assert_eq!(
            read(&t).await,
            "+----+-----+---+\n| id | day | v |\n+----+-----+---+\n| a  | d1  | 1 |\n| b  | d1  | 5 |\n| c  | d2  | 3 |\n+----+-----+---+"
        );
    }

    #[tokio::test]
    async fn insert_new_never_duplicates_and_replace_where_replaces_one_partition() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(&dir);
        t.insert_new(vec![batch(&[("a", "d1", 1)])], "id", "r1")
            .await
            .unwrap();
        let s = t
            .insert_new(vec![batch(&[("a", "d1", 9), ("b", "d1", 2)])], "id", "r2")
            .await
            .unwrap();
        assert_eq!(s.inserted, 1);
        let other = tempfile::tempdir().unwrap();
        let p = target(&other);
        p.replace_where(
            vec![batch(&[("a", "d1", 1), ("b", "d2", 2)])],
            "day = 'd1'",
            &["day"],
            "r1",
        )
        .await
        .unwrap();
        p.replace_where(vec![batch(&[("a", "d1", 7)])], "day = 'd1'", &["day"], "r2")
            .await
            .unwrap();
        p.replace_where(vec![batch(&[("a", "d1", 7)])], "day = 'd1'", &["day"], "r3")
            .await
            .unwrap();
        assert_eq!(
            read(&p).await,
            "+----+-----+---+\n| id | day | v |\n+----+-----+---+\n| a  | d1  | 7 |\n| b  | d2  | 2 |\n+----+-----+---+"
        );
        assert_eq!(
            read(&t).await,
            "+----+-----+---+\n| id | day | v |\n+----+-----+---+\n| a  | d1  | 1 |\n| b  | d1  | 2 |\n+----+-----+---+"
        );
    }

    /// The Parquet files' own column types, as a reader that trusts them (polars) sees them.
    fn file_types(dir: &std::path::Path) -> Vec<(String, DataType)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "parquet") {
                let f = std::fs::File::open(e.path()).unwrap();
                let r = deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                    .unwrap();
                for fl in r.schema().fields() {
                    out.push((fl.name().clone(), fl.data_type().clone()));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup();
        out
    }

    #[tokio::test]
    async fn unsigned_columns_are_written_as_the_signed_types_the_schema_records() {
        use deltalake::arrow::array::{UInt32Array, UInt64Array};
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path().join("ranks")).unwrap();
        let t = DeltaTarget::new("analytics.ranks", url, HashMap::new());
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("rank", DataType::UInt32, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(UInt32Array::from(vec![Some(1), None])),
            ],
        )
        .unwrap();
        t.append(vec![b], &[], "r1").await.unwrap();
        assert_eq!(
            file_types(&dir.path().join("ranks")),
            vec![("id".into(), DataType::Utf8), ("rank".into(), DataType::Int32)]
        );
        // and from SQL, whose ROW_NUMBER() is unsigned
        let ctx = SessionContext::new();
        let df = ctx
            .sql("SELECT 'x' AS id, ROW_NUMBER() OVER (ORDER BY 1) AS n")
            .await
            .unwrap();
        let url = Url::from_directory_path(dir.path().join("numbered")).unwrap();
        let t = DeltaTarget::new("analytics.numbered", url, HashMap::new());
        t.append_df(df, &ctx, "r2").await.unwrap();
        let types = file_types(&dir.path().join("numbered"));
        assert!(types.contains(&("n".into(), DataType::Int64)), "{types:?}");
        // a value that does not fit is an error, not a wrapped number
        let big = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::UInt64, false)])),
            vec![Arc::new(UInt64Array::from(vec![u64::MAX]))],
        )
        .unwrap();
        assert!(signed_batches(vec![big]).is_err());
    }
}
