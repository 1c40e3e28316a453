//! One file writer per core table: rows buffered into Arrow batches and written in parts of
//! `events_per_file` rows (CSV, NDJSON or Parquet), stale files of an earlier generation removed.

use std::path::{Path, PathBuf};

use cslake_sinks::{FileFormat, FileWriter};

use crate::Result;
use crate::ingest::records::{BatchBuilder, Value};
use crate::lake::schema::{self, TableSpec};

/// Rows written per table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenStats {
    pub tables: Vec<(String, usize)>,
    pub files: usize,
}

pub(super) struct TableOut {
    spec: &'static TableSpec,
    builder: BatchBuilder,
    writer: Option<FileWriter>,
    part: usize,
    rows_in_part: usize,
    rows: usize,
    split: bool,
}

pub(super) struct Writers {
    out: PathBuf,
    format: FileFormat,
    per_file: usize,
    tables: Vec<TableOut>,
    files: usize,
}

impl Writers {
    /// Removes the files an earlier generation wrote (in any format), so a smaller data set
    /// does not leave stale parts behind for the next ingest.
    pub(super) fn clear(out: &Path) -> Result<()> {
        let io = |path: &Path, source| crate::Error::Io {
            path: path.display().to_string(),
            source,
        };
        for spec in schema::CORE_TABLES {
            for ext in ["csv", "ndjson", "parquet"] {
                let file = out.join(format!("{}.{ext}", spec.name));
                if file.exists() {
                    std::fs::remove_file(&file).map_err(|e| io(&file, e))?;
                }
            }
            let dir = out.join(spec.name);
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
            }
        }
        Ok(())
    }

    pub(super) fn new(out: &Path, format: FileFormat, per_file: usize) -> Self {
        let tables = schema::CORE_TABLES
            .iter()
            .map(|spec| TableOut {
                spec,
                builder: BatchBuilder::new(spec),
                writer: None,
                part: 0,
                rows_in_part: 0,
                rows: 0,
                split: spec.name == "usage_events",
            })
            .collect();
        Self {
            out: out.to_path_buf(),
            format,
            per_file,
            tables,
            files: 0,
        }
    }

    pub(super) fn push(&mut self, table: &str, values: Vec<Value>) -> Result<()> {
        let i = self.tables.iter().position(|t| t.spec.name == table).unwrap_or(0);
        self.tables[i].builder.push(values, None);
        if self.tables[i].builder.len() >= 8192 {
            self.flush(i)?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self, i: usize) -> Result<()> {
        let t = &mut self.tables[i];
        if t.builder.is_empty() {
            return Ok(());
        }
        let mut batch = t.builder.finish_data()?;
        if t.spec.name == "accounts" {
            batch = with_custom_fields(&batch)?;
        }
        if t.split && t.rows_in_part >= self.per_file {
            if let Some(w) = t.writer.take() {
                w.finish()?;
            }
            t.rows_in_part = 0;
        }
        if t.writer.is_none() {
            t.part += 1;
            let ext = self.format.extension();
            let path = if t.split {
                self.out
                    .join(t.spec.name)
                    .join(format!("part-{:05}.{ext}", t.part))
            } else {
                self.out.join(format!("{}.{ext}", t.spec.name))
            };
            t.writer = Some(FileWriter::create(&path, self.format, batch.schema())?);
            self.files += 1;
        }
        if let Some(w) = t.writer.as_mut() {
            w.write(&batch)?;
        }
        t.rows += batch.num_rows();
        t.rows_in_part += batch.num_rows();
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<GenStats> {
        for i in 0..self.tables.len() {
            self.flush(i)?;
        }
        let mut stats = GenStats {
            files: self.files,
            ..Default::default()
        };
        for t in self.tables {
            if let Some(w) = t.writer {
                w.finish()?;
            }
            stats.tables.push((t.spec.name.to_string(), t.rows));
        }
        Ok(stats)
    }
}

/// The CRM's own fields beyond cslake's columns, as a real export has them: the company's
/// headcount and how it was acquired. They land in `core.accounts.attributes` and become features
/// only where `[features.attributes]` declares them. Derived from the account id (not from the
/// simulation's random stream, which stays as it was) and from the segment; they do not drive
/// churn.
pub(super) fn with_custom_fields(
    batch: &deltalake::arrow::array::RecordBatch,
) -> Result<deltalake::arrow::array::RecordBatch> {
    use deltalake::arrow::array::{Array, Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field};
    use std::sync::Arc;
    const CHANNELS: [&str; 4] = ["sales", "self-serve", "partner", "webinar"];
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .cloned()
    };
    let (Some(ids), Some(segments)) = (column("account_id"), column("segment")) else {
        return Ok(batch.clone());
    };
    let mut employees = Vec::with_capacity(ids.len());
    let mut channels = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        // FNV-1a of the id, mixed by splitmix64's finaliser (ids differ in their last digits
        // only, which FNV leaves in the low bits): stable on every platform
        let mut h = ids.value(i).bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let (lo, hi): (u64, u64) = match segments.value(i) {
            "Enterprise" => (1_000, 20_000),
            "Mid-Market" => (200, 1_000),
            _ => (5, 200),
        };
        employees.push((lo + h % (hi - lo)) as i64);
        channels.push(CHANNELS[((h >> 32) % 4) as usize]);
    }
    let with_employees = crate::lake::query::append_column(
        batch,
        Field::new("employees", DataType::Int64, true),
        Arc::new(Int64Array::from(employees)),
    )?;
    crate::lake::query::append_column(
        &with_employees,
        Field::new("acquisition_channel", DataType::Utf8, true),
        Arc::new(StringArray::from(channels)),
    )
}
