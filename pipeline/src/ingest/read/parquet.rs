//! Parquet through object_store, row group by row group, in the file's own column types.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::arrow::array::RecordBatch;
use deltalake::parquet::arrow::ParquetRecordBatchStreamBuilder;
use deltalake::parquet::arrow::arrow_reader::ArrowReaderOptions;
use deltalake::parquet::arrow::async_reader::AsyncFileReader;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;

use super::shared::{BATCH_ROWS, Location};
use crate::ingest::batch::SourceBatch;
use crate::{Error, Result};

/// A Parquet file in an object store, read by byte ranges.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    size: u64,
}

fn parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, deltalake::parquet::errors::Result<Bytes>> {
        async move { self.store.get_range(&self.path, range).await.map_err(parquet_err) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, deltalake::parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, deltalake::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Reads Parquet row group by row group, in the file's own column types.
pub(super) async fn parquet_batches(
    file: Location,
    origin: String,
    tx: &mpsc::Sender<Result<SourceBatch>>,
) -> Result<()> {
    let err = |e: ParquetError| Error::Input {
        origin: origin.clone(),
        message: format!("not a readable Parquet file: {e}"),
    };
    let size = file.size;
    let reader = StoreReader {
        store: file.store,
        path: file.path,
        size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(err)?;
    let total = builder.metadata().file_metadata().num_rows().max(1) as u64;
    let schema = builder.schema().clone();
    let mut stream = builder.with_batch_size(BATCH_ROWS).build().map_err(err)?;
    let mut first_row = 1usize;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(err)?;
        let n = batch.num_rows();
        let done = (first_row - 1 + n) as u64;
        let b = SourceBatch {
            origin: origin.clone(),
            batch,
            first_row,
            numbers: None,
            errors: HashMap::new(),
            meetings: false,
            offset: size.saturating_mul(done) / total,
        };
        first_row += n;
        if tx.send(Ok(b)).await.is_err() {
            return Ok(());
        }
    }
    if first_row == 1 && !schema.fields().is_empty() {
        // no rows: the columns still count
        let _ = tx
            .send(Ok(SourceBatch {
                origin: origin.clone(),
                batch: RecordBatch::new_empty(schema),
                first_row,
                numbers: None,
                errors: HashMap::new(),
                meetings: false,
                offset: size,
            }))
            .await;
    }
    Ok(())
}
