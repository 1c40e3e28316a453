//! A Delta table as the plain Parquet files of one snapshot, for plans that run on a cluster.
//!
//! delta-rs's own scan (`DeltaScanExec`) cannot be sent to Ballista's executors: it is not a plan
//! node DataFusion's protocol knows. The files of a snapshot are plain Parquet (cslake writes no
//! deletion vectors and no column mapping), so the client resolves the snapshot here and scans
//! exactly those files with DataFusion's Parquet source, which every executor can run: partition
//! values come from the log (not from the folder names), files of partitions a filter excludes are
//! left out before the plan leaves this process, and the filters prune row groups on the executors.
//! The table's version is what the session records as read, as for a local run.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use deltalake::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::{DFSchema, ScalarValue, Statistics};
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::datasource::listing::PartitionedFile;
use deltalake::datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use deltalake::datafusion::datasource::source::DataSourceExec;
use deltalake::datafusion::error::{DataFusionError, Result as DFResult};
use deltalake::datafusion::execution::object_store::ObjectStoreUrl;
use deltalake::datafusion::logical_expr::utils::conjunction;
use deltalake::datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::empty::EmptyExec;
use object_store::ObjectMeta;
use object_store::path::Path as StorePath;
use url::Url;

use crate::{Error, Result};

/// The files of one Delta snapshot, scanned as Parquet.
#[derive(Debug)]
pub struct SnapshotScan {
    /// `zone.name`, for messages.
    table: String,
    /// The table's columns as delta-rs shows them (the same names, types and order as locally).
    schema: SchemaRef,
    /// The store the files are in (`file:///`, `s3://bucket`).
    store: ObjectStoreUrl,
    /// The columns stored in the files, then the partition columns: what the Parquet source reads.
    scan_schema: SchemaRef,
    file_columns: usize,
    /// For each column of `schema`, its position in `scan_schema`.
    scan_index: Vec<usize>,
    files: Vec<PartitionedFile>,
    /// One row per file: its partition values (to leave files out by a filter).
    partitions: Option<RecordBatch>,
}

/// The object store URL and the path inside it of a table (or a file) at `url`.
fn store_and_path(url: &Url) -> Result<(ObjectStoreUrl, StorePath)> {
    let store = if url.scheme() == "file" {
        ObjectStoreUrl::local_filesystem()
    } else {
        ObjectStoreUrl::parse(format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")))?
    };
    let path = StorePath::from_url_path(url.path())
        .map_err(|e| Error::Job(format!("'{url}' is not a usable object store path: {e}")))?;
    Ok((store, path))
}

impl SnapshotScan {
    /// The current snapshot of `table` (at `url`, named `name`), with the columns `schema` (delta-rs's
    /// own provider's schema, so a query sees the same types on both engines).
    pub fn new(name: &str, table: &DeltaTable, url: &Url, schema: SchemaRef) -> Result<Self> {
        let state = table.snapshot()?;
        let partition_columns: Vec<String> = state.metadata().partition_columns().to_vec();
        let file_fields: Vec<FieldRef> = schema
            .fields()
            .iter()
            .filter(|f| !partition_columns.contains(f.name()))
            .cloned()
            .collect();
        let mut partition_fields: Vec<FieldRef> = Vec::with_capacity(partition_columns.len());
        for p in &partition_columns {
            let field = schema.field_with_name(p).map_err(|_| {
                Error::Job(format!(
                    "{name}: partition column '{p}' is not among the table's columns"
                ))
            })?;
            partition_fields.push(Arc::new(field.clone()));
        }
        let scan_fields: Vec<FieldRef> = file_fields.iter().chain(&partition_fields).cloned().collect();
        let scan_schema = Arc::new(Schema::new(scan_fields));
        let scan_index = schema
            .fields()
            .iter()
            .map(|f| scan_schema.index_of(f.name()).map_err(DataFusionError::from))
            .collect::<DFResult<Vec<usize>>>()?;
        let (store, base) = store_and_path(url)?;
        let mut files = Vec::new();
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); partition_fields.len()];
        for f in state.log_data().iter() {
            if f.deletion_vector_descriptor().is_some() {
                return Err(Error::Job(format!(
                    "{name}: a file has a deletion vector ({}); the cluster engine reads plain Parquet files \
                     only (cslake writes none: the tool that wrote it can purge them), or use --engine local",
                    f.path()
                )));
            }
            let rel = f.path().into_owned();
            let location = if rel.contains("://") {
                let u = Url::parse(&rel).map_err(|e| Error::Job(format!("{name}: file '{rel}': {e}")))?;
                store_and_path(&u)?.1
            } else {
                StorePath::from_iter(base.parts().chain(f.object_store_path().parts()))
            };
            let raw = f.partition_values_map();
            let mut file_values = Vec::with_capacity(partition_fields.len());
            for (i, field) in partition_fields.iter().enumerate() {
                let v = match raw.get(field.name()).cloned().flatten() {
                    Some(text) => {
                        ScalarValue::try_from_string(text.clone(), field.data_type()).map_err(|e| {
                            Error::Job(format!(
                                "{name}: partition value {}='{text}' of {rel}: {e}",
                                field.name()
                            ))
                        })?
                    }
                    None => ScalarValue::try_new_null(field.data_type())?,
                };
                values[i].push(v.clone());
                file_values.push(v);
            }
            let meta = ObjectMeta {
                location,
                last_modified: f.modification_datetime()?,
                size: u64::try_from(f.size()).unwrap_or(0),
                e_tag: None,
                version: None,
            };
            files.push(PartitionedFile::new_from_meta(meta).with_partition_values(file_values));
        }
        let partitions = if partition_fields.is_empty() || files.is_empty() {
            None
        } else {
            let columns = values
                .into_iter()
                .map(ScalarValue::iter_to_array)
                .collect::<DFResult<Vec<ArrayRef>>>()?;
            Some(RecordBatch::try_new(
                Arc::new(Schema::new(partition_fields.clone())),
                columns,
            )?)
        };
        Ok(Self {
            table: name.to_string(),
            schema,
            store,
            scan_schema,
            file_columns: file_fields.len(),
            scan_index,
            files,
            partitions,
        })
    }

    /// The files whose partition values pass every filter that reads only partition columns.
    fn files_passing(&self, state: &dyn Session, filters: &[Expr]) -> DFResult<Vec<PartitionedFile>> {
        let Some(batch) = &self.partitions else {
            return Ok(self.files.clone());
        };
        let partition_schema = batch.schema();
        let only_partitions: Vec<Expr> = filters
            .iter()
            .filter(|f| {
                f.column_refs()
                    .iter()
                    .all(|c| partition_schema.field_with_name(&c.name).is_ok())
            })
            .cloned()
            .collect();
        let Some(predicate) = conjunction(only_partitions) else {
            return Ok(self.files.clone());
        };
        let df_schema = DFSchema::try_from(partition_schema.as_ref().clone())?;
        let expr = state.create_physical_expr(predicate, &df_schema)?;
        let keep = expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let keep = keep.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
            DataFusionError::Internal(format!("{}: a partition filter is not boolean", self.table))
        })?;
        Ok(self
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| keep.is_valid(*i) && keep.value(*i))
            .map(|(_, f)| f.clone())
            .collect())
    }
}

#[async_trait::async_trait]
impl TableProvider for SnapshotScan {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // used to leave files and row groups out; DataFusion still filters the rows
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let indices: Vec<usize> = match projection {
            Some(p) => p.iter().map(|i| self.scan_index[*i]).collect(),
            None => self.scan_index.clone(),
        };
        let files = self.files_passing(state, filters)?;
        if files.is_empty() {
            let projected = Arc::new(self.scan_schema.project(&indices)?);
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let file_schema = Arc::new(Schema::new(
            self.scan_schema.fields()[..self.file_columns].to_vec(),
        ));
        let partition_fields = self.scan_schema.fields()[self.file_columns..].to_vec();
        let table_schema = deltalake::datafusion::datasource::table_schema::TableSchema::builder(file_schema)
            .with_table_partition_cols(partition_fields)
            .build();
        let mut source = ParquetSource::new(table_schema);
        if let Some(predicate) = conjunction(filters.to_vec()) {
            let df_schema = DFSchema::try_from(self.scan_schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let groups =
            FileGroup::new(files).split_files(state.config_options().execution.target_partitions.max(1));
        let config = FileScanConfigBuilder::new(self.store.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(Statistics::new_unknown(&self.scan_schema))
            .with_projection_indices(Some(indices))?
            // the filters above this scan are applied after it: a limit here would cut rows first
            .with_limit(limit.filter(|_| filters.is_empty()))
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::physical_plan::displayable;
    use deltalake::datafusion::prelude::SessionContext;

    use super::SnapshotScan;

    #[tokio::test]
    async fn a_snapshot_reads_as_its_parquet_files_with_partitions_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::Lake::open(
            &dir.path().display().to_string(),
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("account_id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("day", DataType::Date32, true),
        ]));
        let batch = |ids: Vec<&str>, n: Vec<i64>, days: Vec<i32>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(ids)),
                    Arc::new(Int64Array::from(n)),
                    Arc::new(Date32Array::from(days)),
                ],
            )
            .unwrap()
        };
        let target = lake.target("features", "t");
        target
            .append(
                vec![batch(
                    vec!["a", "b", "a"],
                    vec![1, 2, 3],
                    vec![20000, 20000, 20001],
                )],
                &["day"],
                "r1",
            )
            .await
            .unwrap();
        // a second commit, and a file the third one removes: the scan reads the current snapshot
        target
            .append(vec![batch(vec!["c"], vec![4], vec![20002])], &["day"], "r2")
            .await
            .unwrap();
        target
            .replace_where(
                vec![batch(vec!["c"], vec![5], vec![20002])],
                "day = '2024-10-06'",
                &["day"],
                "r3",
            )
            .await
            .unwrap();

        let table = lake.open_table("features", "t").await.unwrap().unwrap();
        let delta = table.table_provider().await.unwrap();
        let scan = SnapshotScan::new(
            "features.t",
            &table,
            &lake.table_url("features", "t"),
            delta.schema(),
        )
        .unwrap();
        assert_eq!(scan.files.len(), 3, "one file per day, the replaced one gone");
        let ctx = SessionContext::new();
        ctx.register_table("delta", delta).unwrap();
        ctx.register_table("files", Arc::new(scan)).unwrap();
        let rows = |q: String| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(&q).await.unwrap().collect().await.unwrap();
                deltalake::arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string()
            }
        };
        for q in [
            "SELECT * FROM {t} ORDER BY n",
            "SELECT day, SUM(n) AS n FROM {t} GROUP BY day ORDER BY day",
            "SELECT account_id FROM {t} WHERE day >= DATE '2024-10-05' AND n > 1 ORDER BY 1",
        ] {
            let (a, b) = (
                rows(q.replace("{t}", "delta")).await,
                rows(q.replace("{t}", "files")).await,
            );
            assert_eq!(a, b, "{q}");
        }
        assert!(
            rows("SELECT * FROM files ORDER BY n".into())
                .await
                .contains("| c          | 5 | 2024-10-06 |")
        );
        // a filter on the partition column leaves the other days' files out of the plan
        let plan = ctx
            .sql("SELECT n FROM files WHERE day = DATE '2024-10-05'")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert_eq!(shown.matches(".parquet").count(), 1, "{shown}");
        assert!(shown.contains("day=2024-10-05"), "{shown}");
    }
}
