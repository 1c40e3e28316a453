//! Readers: a source file as a stream of [`SourceBatch`]es of at most [`BATCH_ROWS`] rows, so no
//! file is ever held whole. Each reader runs on its own task (a blocking thread for CSV and JSON,
//! an async task for Parquet) and hands its batches over a channel two deep: reading overlaps with
//! casting, and memory stays at a few batches whatever the size of the file.
//!
//! CSV and JSON are parsed by the `csv` crate (the parser arrow's CSV reader is built on) and
//! `serde_json` straight into Arrow string builders, not by arrow's CSV and JSON readers: those
//! stop at the first malformed record (a short row, a broken line) and want one schema for the
//! whole file, while an export with a few bad records must land the good ones and quarantine the
//! others with their numbers, and JSON events flatten nested objects into fields that vary from
//! line to line. Parquet is read by the parquet crate's async reader, row group by row group,
//! through object_store, so a file on `s3://` streams like a local one.

use std::io::{BufReader, Read};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use tokio::sync::mpsc;

use crate::ingest::batch::SourceBatch;
use crate::{Error, Result};

mod csv;
mod json;
mod parquet;
mod shared;

pub use self::csv::csv_batches;
pub use self::json::{json_batches, page_batch};
pub use self::shared::{BATCH_ROWS, Location};

/// The formats a file drop holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv { delimiter: u8 },
    Json,
    Parquet,
}

/// The batches of one file, as its reader produces them.
pub struct FileBatches {
    rx: mpsc::Receiver<Result<SourceBatch>>,
    task: Option<tokio::task::JoinHandle<()>>,
    origin: String,
    what: &'static str,
}

impl FileBatches {
    /// The next batch; `None` at the end of the file.
    pub async fn next(&mut self) -> Result<Option<SourceBatch>> {
        if let Some(b) = self.rx.recv().await {
            return b.map(Some);
        }
        // the reader ended: cleanly, or by a panic (some corrupt files make parsers panic)
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
            && e.is_panic()
        {
            let panic = e.into_panic();
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "the reader failed".into());
            return Err(Error::Input {
                origin: self.origin.clone(),
                message: format!("not a readable {} file: {why}", self.what),
            });
        }
        Ok(None)
    }
}

impl Drop for FileBatches {
    fn drop(&mut self) {
        // a run that stops early stops its readers too
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Starts reading `file`.
pub async fn open(file: Location, format: Format, origin: String) -> Result<FileBatches> {
    let (tx, rx) = mpsc::channel::<Result<SourceBatch>>(2);
    let task = match format {
        Format::Parquet => {
            let origin = origin.clone();
            tokio::spawn(async move {
                let sender = tx.clone();
                if let Err(e) = parquet::parquet_batches(file, origin, &sender).await {
                    let _ = tx.send(Err(e)).await;
                }
            })
        }
        Format::Csv { .. } | Format::Json => {
            let input: Box<dyn Read + Send> = match &file.local {
                Some(path) => Box::new(std::fs::File::open(path).map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })?),
                None => {
                    let stream = file
                        .store
                        .get(&file.path)
                        .await?
                        .into_stream()
                        .map_err(std::io::Error::other);
                    Box::new(tokio_util::io::SyncIoBridge::new(
                        tokio_util::io::StreamReader::new(stream),
                    ))
                }
            };
            let origin = origin.clone();
            tokio::task::spawn_blocking(move || {
                let mut emit = |b: SourceBatch| tx.blocking_send(Ok(b)).is_ok();
                let read = match format {
                    Format::Csv { delimiter } => csv_batches(input, delimiter, origin, &mut emit),
                    _ => json_batches(BufReader::with_capacity(1 << 20, input), origin, &mut emit),
                };
                if let Err(e) = read {
                    let _ = tx.blocking_send(Err(e));
                }
            })
        }
    };
    Ok(FileBatches {
        rx,
        task: Some(task),
        origin,
        what: match format {
            Format::Parquet => "Parquet",
            Format::Csv { .. } => "CSV",
            Format::Json => "JSON",
        },
    })
}

/// Everything a reader gives, for tests and the fuzzer: the batches of `bytes`.
#[cfg(test)]
pub fn all_batches(bytes: &[u8], format: Format, origin: &str) -> Result<Vec<SourceBatch>> {
    let mut out = Vec::new();
    let mut emit = |b: SourceBatch| {
        out.push(b);
        true
    };
    match format {
        Format::Csv { delimiter } => csv_batches(bytes, delimiter, origin.into(), &mut emit)?,
        Format::Json => json_batches(bytes, origin.into(), &mut emit)?,
        Format::Parquet => {
            let store: std::sync::Arc<dyn object_store::ObjectStore> =
                std::sync::Arc::new(object_store::memory::InMemory::new());
            let path = object_store::path::Path::from("file.parquet");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Job(e.to_string()))?;
            rt.block_on(async {
                store
                    .put(&path, bytes::Bytes::copy_from_slice(bytes).into())
                    .await?;
                let mut r = open(
                    Location {
                        store,
                        path,
                        size: bytes.len() as u64,
                        local: None,
                    },
                    format,
                    origin.into(),
                )
                .await?;
                while let Some(b) = r.next().await? {
                    out.push(b);
                }
                Ok::<_, Error>(())
            })?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{
        Array, ArrayRef, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder, StructArray,
    };
    use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema};

    use super::*;

    type Rows = Vec<Vec<Option<String>>>;

    /// Every row of the batches as text, and the reader's errors by record number.
    fn text_rows(batches: &[SourceBatch]) -> (Rows, Vec<(usize, String)>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for b in batches {
            let cols: Vec<StringArray> = (0..b.batch.num_columns())
                .map(|i| b.text_column(i).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                out.push(
                    cols.iter()
                        .map(|c| (!c.is_null(r)).then(|| c.value(r).to_string()))
                        .collect(),
                );
                if let Some(e) = b.errors.get(&r) {
                    errors.push((b.number(r), e.reason.clone()));
                }
            }
        }
        errors.sort();
        (out, errors)
    }

    #[test]
    fn nested_parquet_columns_land_as_json_text() {
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("a");
        tags.values().append_value("b");
        tags.append(true);
        tags.append(false);
        let tags = tags.finish();
        let ctx = StructArray::new(
            Fields::from(vec![Field::new("page", DataType::Utf8, true)]),
            vec![Arc::new(StringArray::from(vec![Some("/x"), None])) as ArrayRef],
            None,
        );
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("tags", tags.data_type().clone(), true),
                Field::new("context", ctx.data_type().clone(), true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(tags),
                Arc::new(ctx),
            ],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.parquet");
        let mut w =
            cslake_sinks::FileWriter::create(&path, cslake_sinks::FileFormat::Parquet, batch.schema())
                .unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let b = all_batches(&std::fs::read(&path).unwrap(), Format::Parquet, "n.parquet").unwrap();
        assert_eq!(b[0].header(), ["id", "tags", "context"]);
        let (rows, _) = text_rows(&b);
        assert_eq!(
            rows[0],
            [
                Some("1".into()),
                Some("[\"a\",\"b\"]".into()),
                Some("{\"page\":\"/x\"}".into())
            ]
        );
        assert_eq!(rows[1][1], None);
        // a corrupt file is named, not a crash
        let e = all_batches(b"PAR1 not really", Format::Parquet, "bad.parquet").unwrap_err();
        assert!(
            e.to_string().contains("bad.parquet") && e.to_string().contains("not a readable Parquet file"),
            "{e}"
        );
    }

    #[test]
    fn an_unclosed_quote_says_how_much_it_swallowed_and_a_bom_is_dropped() {
        let mut csv = String::from("\u{feff}account_id,name\nA1,Acme\nA2,\"Bolt\n");
        for k in 3..23 {
            csv.push_str(&format!("A{k},Name {k}\n"));
        }
        let b = all_batches(csv.as_bytes(), Format::Csv { delimiter: b',' }, "x.csv").unwrap();
        assert_eq!(b[0].header(), ["account_id", "name"]);
        let (rows, errors) = text_rows(&b);
        assert_eq!(rows.len(), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 2);
        assert!(
            errors[0].1.contains("a quote opened on line 3 is never closed")
                && errors[0].1.contains("20 line(s) after it"),
            "{errors:?}"
        );
        // quotes that close, doubled quotes and quoted newlines are fine
        let ok = "a,b\n\"x \"\"y\"\"\",\"two\nlines\"\n1,2\n";
        let b = all_batches(ok.as_bytes(), Format::Csv { delimiter: b',' }, "ok.csv").unwrap();
        let (rows, errors) = text_rows(&b);
        assert_eq!(rows[0], [Some("x \"y\"".into()), Some("two\nlines".into())]);
        assert_eq!((rows.len(), errors.len()), (2, 0));
    }

    #[test]
    fn csv_quoting_bom_embedded_newlines_and_short_rows() {
        let data = "\u{feff}id,name,note\n1,\"Acme, Inc.\",\"two\nlines\"\n2,Short\n3,a,b,extra\n";
        let b = all_batches(data.as_bytes(), Format::Csv { delimiter: b',' }, "f.csv").unwrap();
        assert_eq!(b[0].header(), ["id", "name", "note"]);
        let (rows, errors) = text_rows(&b);
        assert_eq!(rows[0][1].as_deref(), Some("Acme, Inc."));
        assert_eq!(rows[0][2].as_deref(), Some("two\nlines"));
        assert_eq!(
            errors,
            [
                (2, "2 fields where the header has 3".to_string()),
                (3, "4 fields where the header has 3".to_string())
            ]
        );
        // the extra field is not lost: the quarantine keeps the whole record
        let raw = b[0].errors[&2].raw.clone().unwrap();
        assert_eq!(raw, r#"{"field_4":"extra","id":"3","name":"a","note":"b"}"#);
    }

    #[test]
    fn ndjson_with_a_bom_blank_lines_and_a_broken_line_in_the_middle() {
        let nd = "\u{feff}{\"a\":1}\n\n{\"a\":\n{\"a\":3,\"b\":{\"c\":true}}\n[1]\n";
        let b = all_batches(nd.as_bytes(), Format::Json, "x.ndjson").unwrap();
        let (rows, errors) = text_rows(&b);
        assert_eq!(b[0].header(), ["a", "b.c"]);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0], [Some("1".into()), None]);
        assert_eq!(rows[2], [Some("3".into()), Some("true".into())]);
        // numbers are lines: the blank line counts
        assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 5]);
        assert!(errors[0].1.starts_with("invalid JSON: "), "{errors:?}");
        assert_eq!(errors[1].1, "expected a JSON object, found [1]");
        // an array is one document
        let b = all_batches(b" [{\"a\":1},{\"a\":2}]", Format::Json, "x.json").unwrap();
        assert_eq!(text_rows(&b).0.len(), 2);
        let e = all_batches(b"[{\"a\":1},{\"a\":", Format::Json, "x.json").unwrap_err();
        assert!(e.to_string().contains("invalid JSON array"), "{e}");
    }

    #[test]
    fn large_files_come_in_batches_with_their_bad_rows_numbered_across_them() {
        let n = BATCH_ROWS * 2 + 10;
        let bad = [5, BATCH_ROWS, BATCH_ROWS + 1, 2 * BATCH_ROWS + 7];
        let mut csv = String::from("id,v\n");
        let mut nd = String::new();
        for i in 1..=n {
            if bad.contains(&i) {
                csv.push_str(&format!("{i}\n"));
                nd.push_str("{\"id\":\n");
            } else {
                csv.push_str(&format!("{i},x\n"));
                nd.push_str(&format!("{{\"id\":{i}}}\n"));
            }
        }
        for (bytes, format) in [(csv, Format::Csv { delimiter: b',' }), (nd, Format::Json)] {
            let b = all_batches(bytes.as_bytes(), format, "big").unwrap();
            assert_eq!(b.len(), 3);
            assert!(b.iter().all(|b| b.num_rows() <= BATCH_ROWS));
            let (rows, errors) = text_rows(&b);
            assert_eq!(rows.len(), n);
            assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), bad);
            assert_eq!(b[2].first_row, 2 * BATCH_ROWS + 1);
        }
    }
}
