//! What readers hand to ingest: a [`SourceBatch`], the source's own columns as an Arrow batch
//! (text for CSV and JSON, their own types for Parquet) with the rows the reader could not split
//! into fields already marked, and where they came from. Mapping, casting and checks then work on
//! whole columns ([`super::cast`]), never on rows of strings.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, StringBuilder};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use crate::Result;
use crate::ingest::records::RawRecords;
use crate::settings::TableMapping;

/// Rows of one source file (or API page), in the source's columns.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// Where they came from, e.g. `file:///data/accounts.csv`.
    pub origin: String,
    pub batch: RecordBatch,
    /// The record number (1-based, the header not counted) of the batch's first row.
    pub first_row: usize,
    /// Record numbers of each row, when they are not consecutive from `first_row` (NDJSON counts
    /// lines, and blank lines are not records).
    pub numbers: Option<Vec<usize>>,
    /// Rows the reader could not split into fields (wrong field count, invalid JSON or UTF-8),
    /// by their index in the batch: rejected with this reason.
    pub errors: HashMap<usize, RowError>,
    /// Calendar events: their account comes from the attendees.
    pub meetings: bool,
    /// How far into the file the reader is after this batch, in bytes (for progress).
    pub offset: u64,
}

/// A record the reader could not split into the header's fields.
#[derive(Debug, Clone)]
pub struct RowError {
    pub reason: String,
    /// The record as the quarantine keeps it, when the columns cannot hold all of it (extra fields).
    pub raw: Option<String>,
}

impl SourceBatch {
    /// The source's field names.
    pub fn header(&self) -> Vec<String> {
        self.batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().trim_start_matches('\u{feff}').to_string())
            .collect()
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The record number of row `i` of the batch.
    pub fn number(&self, i: usize) -> usize {
        match &self.numbers {
            Some(n) => n[i],
            None => self.first_row + i,
        }
    }

    /// Text records (API pages, calendar events) as a batch of text columns.
    pub fn from_records(records: RawRecords) -> Result<Self> {
        let first_row = records.rows.first().map_or(1, |r| r.number);
        let mut builders: Vec<StringBuilder> = records.header.iter().map(|_| StringBuilder::new()).collect();
        let mut errors = HashMap::new();
        for (i, row) in records.rows.iter().enumerate() {
            for (k, b) in builders.iter_mut().enumerate() {
                b.append_option(row.values.get(k).and_then(|v| v.as_deref()));
            }
            if let Some(e) = &row.error {
                let raw = (row.values.len() > records.header.len())
                    .then(|| crate::ingest::records::raw_json(&records.header, &row.values));
                errors.insert(
                    i,
                    RowError {
                        reason: e.clone(),
                        raw,
                    },
                );
            }
        }
        let consecutive = records
            .rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.number == first_row + i);
        let numbers = (!consecutive).then(|| records.rows.iter().map(|r| r.number).collect());
        let batch = text_batch(
            &records.header,
            builders.into_iter().map(|mut b| b.finish()).collect(),
            records.rows.len(),
        )?;
        Ok(Self {
            origin: records.origin,
            batch,
            first_row,
            numbers,
            errors,
            meetings: records.meetings,
            offset: 0,
        })
    }

    /// One column as text (`None` for a null), whatever its type.
    pub fn text_column(&self, i: usize) -> Result<StringArray> {
        let col = self.batch.column(i);
        Ok(match col.data_type() {
            DataType::Utf8 => col.as_string::<i32>().clone(),
            t if t.is_nested() => {
                let field = self.batch.schema().field(i).clone();
                json_text(&field, col)?
            }
            _ => cast(col, &DataType::Utf8)?.as_string::<i32>().clone(),
        })
    }

    /// The row as the quarantine keeps it: a JSON object of field → text.
    pub fn raw_json(&self, row: usize, text: &[StringArray]) -> String {
        if let Some(raw) = self.errors.get(&row).and_then(|e| e.raw.clone()) {
            return raw;
        }
        let header = self.header();
        let values: Vec<Option<String>> = text
            .iter()
            .map(|c| (!c.is_null(row)).then(|| c.value(row).to_string()))
            .collect();
        crate::ingest::records::raw_json(&header, &values)
    }

    /// Column mappings that combine fields, like `name = "{firstname} {lastname}"`: each becomes a
    /// column of that name, filled per row (a missing field counts as empty; all empty is null).
    pub fn with_templates(mut self, config: &TableMapping) -> Result<Self> {
        let mut templates: Vec<&String> = config
            .columns
            .values()
            .filter(|t| t.contains('{') && t.contains('}'))
            .collect();
        templates.sort();
        templates.dedup();
        for t in templates {
            let header = self.header();
            if header.contains(t) {
                continue;
            }
            // literal text and field references
            let mut parts: Vec<(bool, String)> = Vec::new();
            let mut rest = t.as_str();
            while let Some(open) = rest.find('{') {
                let Some(close) = rest[open..].find('}') else {
                    break;
                };
                parts.push((false, rest[..open].to_string()));
                parts.push((true, rest[open + 1..open + close].trim().to_string()));
                rest = &rest[open + close + 1..];
            }
            parts.push((false, rest.to_string()));
            let columns: Vec<Option<StringArray>> = parts
                .iter()
                .map(|(field, name)| {
                    if *field {
                        header
                            .iter()
                            .position(|h| h == name)
                            .map(|i| self.text_column(i))
                            .transpose()
                    } else {
                        Ok(None)
                    }
                })
                .collect::<Result<_>>()?;
            let mut out = StringBuilder::new();
            let mut buf = String::new();
            for row in 0..self.num_rows() {
                buf.clear();
                let mut any = false;
                for ((field, text), col) in parts.iter().zip(&columns) {
                    if !*field {
                        buf.push_str(text);
                    } else if let Some(c) = col.as_ref().filter(|c| !c.is_null(row)) {
                        let v = c.value(row);
                        any |= !v.trim().is_empty();
                        buf.push_str(v);
                    }
                }
                if any {
                    out.append_value(buf.split_whitespace().collect::<Vec<_>>().join(" "));
                } else {
                    out.append_null();
                }
            }
            let mut fields: Vec<Arc<Field>> = self.batch.schema().fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new(t.as_str(), DataType::Utf8, true)));
            let mut arrays: Vec<ArrayRef> = self.batch.columns().to_vec();
            arrays.push(Arc::new(out.finish()));
            self.batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        }
        Ok(self)
    }
}

/// A batch of text columns named by `header` (names may repeat: they are made unique by position,
/// as Arrow schemas need).
pub fn text_batch(header: &[String], columns: Vec<StringArray>, rows: usize) -> Result<RecordBatch> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let fields: Vec<Field> = header
        .iter()
        .map(|h| {
            let n = seen.entry(h.as_str()).or_insert(0);
            *n += 1;
            let name = if *n == 1 { h.clone() } else { format!("{h}#{n}") };
            Field::new(name, DataType::Utf8, true)
        })
        .collect();
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|c| Arc::new(c) as ArrayRef).collect();
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &deltalake::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

/// A nested column (struct, list, map) as one JSON text per row, as NDJSON files keep nested
/// fields: the column lands as an attribute (or a mapped column) instead of the file being refused.
fn json_text(field: &Field, col: &ArrayRef) -> Result<StringArray> {
    let fail = |e: String| crate::Error::Job(format!("column '{}' as JSON: {e}", field.name()));
    let one = RecordBatch::try_new(Arc::new(Schema::new(vec![field.clone()])), vec![col.clone()])?;
    let mut w = deltalake::arrow::json::LineDelimitedWriter::new(Vec::new());
    w.write(&one)?;
    w.finish()?;
    let text = String::from_utf8(w.into_inner()).map_err(|e| fail(e.to_string()))?;
    let values: Vec<Option<String>> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get(field.name()).cloned())
                .filter(|v| !v.is_null())
                .map(|v| v.to_string())
        })
        .collect();
    if values.len() != col.len() {
        return Err(fail(format!(
            "{} JSON values for {} rows",
            values.len(),
            col.len()
        )));
    }
    Ok(StringArray::from(values))
}
