use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;

use crate::{Error, Result};

/// A file format cslake reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FileFormat {
    Csv,
    Ndjson,
    Parquet,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Ndjson => "ndjson",
            FileFormat::Parquet => "parquet",
        }
    }

    /// The format of a file name, from its extension.
    pub fn from_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        let ext = lower.rsplit('.').next()?;
        match ext {
            "csv" | "tsv" | "txt" => Some(FileFormat::Csv),
            "ndjson" | "jsonl" | "json" => Some(FileFormat::Ndjson),
            "parquet" | "pq" => Some(FileFormat::Parquet),
            _ => None,
        }
    }
}

impl FromStr for FileFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(FileFormat::Csv),
            "ndjson" | "jsonl" | "json" => Ok(FileFormat::Ndjson),
            "parquet" => Ok(FileFormat::Parquet),
            other => Err(format!(
                "unknown file format '{other}' (expected csv, ndjson or parquet)"
            )),
        }
    }
}

enum Inner {
    Csv(Box<deltalake::arrow::csv::Writer<BufWriter<File>>>),
    Ndjson(deltalake::arrow::json::LineDelimitedWriter<BufWriter<File>>),
    Parquet(Box<ArrowWriter<File>>),
}

/// Streams record batches into one local file.
pub struct FileWriter {
    path: PathBuf,
    inner: Inner,
    rows: usize,
}

impl FileWriter {
    pub fn create(path: &Path, format: FileFormat, schema: SchemaRef) -> Result<Self> {
        let err = |message: String| Error::File {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let file = File::create(path).map_err(|e| err(e.to_string()))?;
        let inner = match format {
            FileFormat::Csv => Inner::Csv(Box::new(
                deltalake::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%SZ".to_string())
                    .build(BufWriter::new(file)),
            )),
            FileFormat::Ndjson => Inner::Ndjson(deltalake::arrow::json::LineDelimitedWriter::new(
                BufWriter::new(file),
            )),
            FileFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(128 * 1024))
                    .build();
                Inner::Parquet(Box::new(
                    ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| err(e.to_string()))?,
                ))
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            inner,
            rows: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let err = |e: String| Error::File {
            path: self.path.display().to_string(),
            message: e,
        };
        match &mut self.inner {
            Inner::Csv(w) => w.write(batch).map_err(|e| err(e.to_string()))?,
            Inner::Ndjson(w) => w.write(batch).map_err(|e| err(e.to_string()))?,
            Inner::Parquet(w) => w.write(batch).map_err(|e| err(e.to_string()))?,
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Flushes and closes the file; returns its path.
    pub fn finish(self) -> Result<PathBuf> {
        let err = |e: String| Error::File {
            path: self.path.display().to_string(),
            message: e,
        };
        match self.inner {
            Inner::Csv(w) => {
                w.into_inner().into_inner().map_err(|e| err(e.to_string()))?;
            }
            Inner::Ndjson(mut w) => {
                w.finish().map_err(|e| err(e.to_string()))?;
                w.into_inner().into_inner().map_err(|e| err(e.to_string()))?;
            }
            Inner::Parquet(w) => {
                w.close().map_err(|e| err(e.to_string()))?;
            }
        }
        Ok(self.path)
    }
}
