//! The file-drop connector: CSV, NDJSON/JSON and Parquet files from any object-store URL.

use std::collections::HashMap;
use std::sync::Arc;

use cslake_sinks::FileFormat;
use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use url::Url;

use crate::ingest::records::{RawRecords, RawRow};
use crate::lake::schema::TableSpec;
use crate::settings::TableMapping;
use crate::{Error, Result};

/// A folder or object-store prefix holding exported files.
pub struct FileDrop {
    pub url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    tables: HashMap<String, TableMapping>,
}

impl FileDrop {
    pub fn open(
        location: &str,
        storage: &HashMap<String, String>,
        tables: HashMap<String, TableMapping>,
    ) -> Result<Self> {
        let url = crate::lake::location_url(location, false)?;
        if url.scheme() == "file" && url.to_file_path().is_ok_and(|p| !p.is_dir()) {
            return Err(Error::Config(format!(
                "source folder '{location}' does not exist"
            )));
        }
        let (store, prefix) = crate::lake::storage::open(&url, storage)
            .map_err(|e| Error::Config(format!("source '{location}': {e}")))?;
        Ok(Self {
            url,
            store,
            prefix,
            tables,
        })
    }

    pub fn mapping(&self, table: &str) -> Option<&TableMapping> {
        self.tables.get(table)
    }

    /// The files that hold `table`: those matching its configured glob, or by default files
    /// named after the table (`accounts.csv`, `accounts-2026-01.csv`, `usage_events/part-1.csv`).
    pub async fn files_for(&self, table: &TableSpec) -> Result<Vec<ObjectMeta>> {
        let all: Vec<ObjectMeta> = self.store.list(Some(&self.prefix)).try_collect().await?;
        let glob = self.tables.get(table.name).and_then(|m| m.files.clone());
        let mut files: Vec<ObjectMeta> = all
            .into_iter()
            .filter(|m| {
                let rel = self.relative(&m.location);
                if FileFormat::from_path(&rel).is_none() && !is_calendar(&rel) {
                    return false;
                }
                match &glob {
                    Some(g) => glob_match(g, &rel),
                    None => default_match(table.name, &rel),
                }
            })
            .collect();
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    fn relative(&self, loc: &StorePath) -> String {
        let prefix: Vec<_> = self.prefix.parts().collect();
        loc.parts()
            .skip(prefix.len())
            .map(|p| p.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The file's path relative to the source root.
    pub fn relative_name(&self, meta: &ObjectMeta) -> String {
        self.relative(&meta.location)
    }

    pub fn origin(&self, meta: &ObjectMeta) -> String {
        format!("{}{}", self.url, self.relative(&meta.location))
    }

    /// Reads one file into raw records.
    pub async fn read(&self, table: &TableSpec, meta: &ObjectMeta) -> Result<RawRecords> {
        let origin = self.origin(meta);
        let bytes = self.store.get(&meta.location).await?.bytes().await?;
        if is_calendar(&origin) {
            return Ok(crate::ingest::calendar::read_ics(&bytes, origin));
        }
        let format = FileFormat::from_path(&origin).ok_or_else(|| Error::Input {
            origin: origin.clone(),
            message: "unknown file type".into(),
        })?;
        let delimiter = self
            .tables
            .get(table.name)
            .and_then(|m| m.delimiter.as_deref())
            .map(|d| {
                if d == "\\t" {
                    b'\t'
                } else {
                    d.as_bytes().first().copied().unwrap_or(b',')
                }
            })
            .unwrap_or(if origin.to_ascii_lowercase().ends_with(".tsv") {
                b'\t'
            } else {
                b','
            });
        match format {
            FileFormat::Csv => read_csv(&bytes, delimiter, origin),
            FileFormat::Ndjson => read_json(&bytes, origin),
            FileFormat::Parquet => read_parquet(bytes, origin),
        }
    }
}

/// iCalendar files: meetings, read by [`crate::ingest::calendar`].
pub fn is_calendar(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".ics")
}

/// A file belongs to a table by a folder named after the table anywhere in its path
/// (`usage_events/part-1.csv`, `2026-03-31/usage_events/part-1.csv`), or else by its file name
/// (`accounts.csv`, `accounts-2026-01.csv`, `2026-03-31/accounts.csv`).
fn default_match(table: &str, rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let (file, dirs) = parts.split_last().unwrap_or((&"", &[]));
    if let Some(dir) = dirs
        .iter()
        .rev()
        .find(|d| crate::lake::schema::core_table(d).is_some())
    {
        return *dir == table;
    }
    let stem = file.split('.').next().unwrap_or_default();
    stem == table
        || stem.strip_prefix(table).is_some_and(|rest| {
            rest.starts_with('-') || rest.starts_with('_') && !rest[1..].starts_with(char::is_alphabetic)
        })
}

/// `*` matches within a path segment, `**` across segments, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) if p.get(1) == Some(&b'*') => {
                let rest = if p.get(2) == Some(&b'/') { &p[3..] } else { &p[2..] };
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            (Some(b'*'), _) => (0..=t.len())
                .take_while(|i| *i == 0 || t[*i - 1] != b'/')
                .any(|i| go(&p[1..], &t[i..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// A UTF-8 byte-order mark is not data (spreadsheets write one): dropped before parsing.
fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)
}

pub(crate) fn read_csv(bytes: &[u8], delimiter: u8, origin: String) -> Result<RawRecords> {
    let bytes = without_bom(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(RawRecords {
            origin,
            ..Default::default()
        });
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .byte_headers()
        .map_err(|e| Error::Input {
            origin: origin.clone(),
            message: format!("unreadable header: {e}"),
        })?
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string()
        })
        .collect();
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut number = 0;
    loop {
        number += 1;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let mut error = None;
                let values: Vec<Option<String>> = record
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        Some(match std::str::from_utf8(v) {
                            Ok(s) => s.to_string(),
                            Err(_) => {
                                let name = header
                                    .get(i)
                                    .map_or_else(|| format!("#{}", i + 1), |h| format!("'{h}'"));
                                error.get_or_insert(format!("field {name} is not valid UTF-8"));
                                String::from_utf8_lossy(v).into_owned()
                            }
                        })
                    })
                    .collect();
                // A row with the wrong number of fields is rejected as a whole, with its text.
                if values.len() != header.len() && error.is_none() {
                    error = Some(format!(
                        "{} fields where the header has {}",
                        values.len(),
                        header.len()
                    ));
                }
                rows.push(RawRow {
                    number,
                    values,
                    error,
                });
            }
            Err(e) => {
                return Err(Error::Input {
                    origin,
                    message: format!("record {number}: {e}"),
                });
            }
        }
    }
    // a quote never closed swallows every line after it into one field: say so, and how much
    if let Some((line, lost)) = unclosed_quote(bytes, delimiter)
        && let Some(last) = rows.last_mut()
    {
        let quote = if lost > 0 {
            format!(
                "a quote opened on line {line} is never closed: the rest of the file ({lost} line(s) after it) \
                 was read as one field and is not loaded; fix the quoting and load the file again"
            )
        } else {
            format!("its quote, opened on line {line}, is never closed")
        };
        last.error = Some(match last.error.take() {
            Some(e) => format!("{e}; {quote}"),
            None => quote,
        });
    }
    Ok(RawRecords {
        origin,
        header,
        rows,
        meetings: false,
    })
}

/// Whether the file ends inside a quoted field: the line the quote opened on, and how many lines
/// follow it. Quotes count as RFC 4180 reads them (only at the start of a field; `""` inside a
/// quoted field is a quote).
fn unclosed_quote(bytes: &[u8], delimiter: u8) -> Option<(usize, usize)> {
    let (mut line, mut opened_on) = (1usize, 0usize);
    let (mut inside, mut field_start) = (false, true);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if inside {
            if b == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    inside = false;
                }
            }
        } else if b == b'"' && field_start {
            inside = true;
            opened_on = line;
        }
        if b == b'\n' {
            line += 1;
        }
        field_start = !inside && (b == delimiter || b == b'\n' || b == b'\r');
        i += 1;
    }
    let total = line - usize::from(bytes.last() == Some(&b'\n'));
    inside.then(|| (opened_on, total - opened_on))
}

pub(crate) fn read_json(bytes: &[u8], origin: String) -> Result<RawRecords> {
    let bytes = without_bom(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let objects: Vec<(usize, Result<serde_json::Value, String>)> = if first == Some(&b'[') {
        // a JSON array is one document: it parses whole or not at all
        let arr: Vec<serde_json::Value> = serde_json::from_slice(bytes).map_err(|e| Error::Input {
            origin: origin.clone(),
            message: format!("invalid JSON array: {e}"),
        })?;
        arr.into_iter().enumerate().map(|(i, v)| (i + 1, Ok(v))).collect()
    } else {
        // NDJSON: a bad line (invalid JSON or UTF-8) is rejected on its own
        bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| {
                let parsed = match std::str::from_utf8(l) {
                    Ok(text) => serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}: {text}")),
                    Err(_) => Err("the line is not valid UTF-8".to_string()),
                };
                (i + 1, parsed)
            })
            .collect()
    };
    Ok(records_from_json(origin, objects, false))
}

/// A nested column (struct, list, map) as one JSON text per row, as NDJSON files keep nested
/// fields: the column lands as an attribute (or a mapped column) instead of the file being refused.
fn json_text(
    field: &deltalake::arrow::datatypes::Field,
    col: &Arc<dyn Array>,
) -> std::result::Result<Arc<dyn Array>, String> {
    use deltalake::arrow::datatypes::Schema;
    let one = RecordBatch::try_new(Arc::new(Schema::new(vec![field.clone()])), vec![col.clone()])
        .map_err(|e| e.to_string())?;
    let mut w = deltalake::arrow::json::LineDelimitedWriter::new(Vec::new());
    w.write(&one).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    let text = String::from_utf8(w.into_inner()).map_err(|e| e.to_string())?;
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
        return Err(format!("{} JSON values for {} rows", values.len(), col.len()));
    }
    Ok(Arc::new(deltalake::arrow::array::StringArray::from(values)))
}

/// Records from parsed JSON objects, numbered, nested objects flattened to dotted fields. With
/// `index_arrays`, arrays of objects flatten too (`associations.companies.results.0.id`), as API
/// responses nest related records that way; otherwise arrays stay JSON text.
pub fn records_from_json(
    origin: String,
    objects: Vec<(usize, Result<serde_json::Value, String>)>,
    index_arrays: bool,
) -> RawRecords {
    let mut header: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut rows = Vec::with_capacity(objects.len());
    for (number, obj) in objects {
        let mut values: Vec<Option<String>> = vec![None; header.len()];
        let obj = match obj {
            Ok(v) => v,
            Err(error) => {
                rows.push(RawRow {
                    number,
                    values,
                    error: Some(error),
                });
                continue;
            }
        };
        let error = (!obj.is_object()).then(|| format!("expected a JSON object, found {obj}"));
        if let serde_json::Value::Object(map) = obj {
            let mut fields = Vec::with_capacity(map.len());
            flatten("", map, index_arrays, &mut fields);
            for (k, v) in fields {
                let i = *index.entry(k.clone()).or_insert_with(|| {
                    header.push(k);
                    header.len() - 1
                });
                if values.len() <= i {
                    values.resize(i + 1, None);
                }
                values[i] = v;
            }
        }
        rows.push(RawRow {
            number,
            values,
            error,
        });
    }
    for r in &mut rows {
        r.values.resize(header.len(), None);
    }
    RawRecords {
        origin,
        header,
        rows,
        meetings: false,
    }
}

/// Nested objects become dotted fields (`context.groupId`, `traits.plan`), as warehouse exports
/// of event streams (Segment, RudderStack, Snowplow) nest them; arrays stay JSON text.
fn flatten(
    prefix: &str,
    map: serde_json::Map<String, serde_json::Value>,
    index_arrays: bool,
    out: &mut Vec<(String, Option<String>)>,
) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::Object(inner) if !inner.is_empty() => flatten(&key, inner, index_arrays, out),
            serde_json::Value::Array(items)
                if index_arrays && !items.is_empty() && items.iter().all(serde_json::Value::is_object) =>
            {
                for (i, item) in items.into_iter().enumerate() {
                    if let serde_json::Value::Object(inner) = item {
                        flatten(&format!("{key}.{i}"), inner, index_arrays, out);
                    }
                }
            }
            serde_json::Value::Null => out.push((key, None)),
            serde_json::Value::String(s) => out.push((key, Some(s))),
            other => out.push((key, Some(other.to_string()))),
        }
    }
}

/// Reads a Parquet file. The parquet crate panics on some corrupt files (an unknown logical
/// type, say) instead of returning an error: such a file is bad input, named, not a crash.
pub(crate) fn read_parquet(bytes: bytes::Bytes, origin: String) -> Result<RawRecords> {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        parquet_records(bytes, origin.clone())
    }));
    attempt.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "the reader failed".into());
        Err(Error::Input {
            origin,
            message: format!("not a readable Parquet file: {why}"),
        })
    })
}

fn parquet_records(bytes: bytes::Bytes, origin: String) -> Result<RawRecords> {
    let err = |e: String| Error::Input {
        origin: origin.clone(),
        message: e,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| err(format!("not a readable Parquet file: {e}")))?
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut header = Vec::new();
    let mut rows = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| err(e.to_string()))?;
        if header.is_empty() {
            header = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        }
        let cols: Vec<Arc<dyn Array>> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| {
                if f.data_type().is_nested() {
                    json_text(f, c).map_err(|e| err(format!("column '{}': {e}", f.name())))
                } else {
                    cast(c, &DataType::Utf8).map_err(|e| err(format!("column '{}': {e}", f.name())))
                }
            })
            .collect::<Result<_>>()?;
        let strings: Vec<&deltalake::arrow::array::StringArray> = cols
            .iter()
            .map(|c| {
                c.as_any()
                    .downcast_ref()
                    .ok_or_else(|| err("column did not cast to text".into()))
            })
            .collect::<Result<_>>()?;
        for i in 0..batch.num_rows() {
            let number = rows.len() + 1;
            rows.push(RawRow {
                number,
                values: strings
                    .iter()
                    .map(|c| (!c.is_null(i)).then(|| c.value(i).to_string()))
                    .collect(),
                error: None,
            });
        }
    }
    Ok(RawRecords {
        origin,
        header,
        rows,
        meetings: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_parquet_columns_land_as_json_text() {
        use deltalake::arrow::array::{Int64Array, ListBuilder, StringArray, StringBuilder, StructArray};
        use deltalake::arrow::datatypes::{Field, Fields, Schema};
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("a");
        tags.values().append_value("b");
        tags.append(true);
        tags.append(false);
        let tags = tags.finish();
        let ctx = StructArray::new(
            Fields::from(vec![Field::new("page", DataType::Utf8, true)]),
            vec![Arc::new(StringArray::from(vec![Some("/x"), None])) as Arc<dyn Array>],
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
        let mut w = cslake_sinks::FileWriter::create(&path, FileFormat::Parquet, batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let r = read_parquet(std::fs::read(&path).unwrap().into(), "n.parquet".into()).unwrap();
        assert_eq!(r.header, ["id", "tags", "context"]);
        assert_eq!(
            r.rows[0].values,
            [
                Some("1".into()),
                Some("[\"a\",\"b\"]".into()),
                Some("{\"page\":\"/x\"}".into())
            ]
        );
        assert_eq!(r.rows[1].values[1], None);
    }

    #[test]
    fn an_unclosed_quote_says_how_much_it_swallowed_and_a_bom_is_dropped() {
        let mut csv = String::from("\u{feff}account_id,name\nA1,Acme\nA2,\"Bolt\n");
        for k in 3..23 {
            csv.push_str(&format!("A{k},Name {k}\n"));
        }
        let r = read_csv(csv.as_bytes(), b',', "x.csv".into()).unwrap();
        assert_eq!(r.header, ["account_id", "name"]);
        assert_eq!(r.rows.len(), 2);
        assert!(r.rows[0].error.is_none());
        let e = r.rows[1].error.clone().unwrap();
        assert!(
            e.contains("a quote opened on line 3 is never closed") && e.contains("20 line(s) after it"),
            "{e}"
        );
        // quotes that close, doubled quotes and quoted newlines are fine
        let ok = "a,b\n\"x \"\"y\"\"\",\"two\nlines\"\n1,2\n";
        let r = read_csv(ok.as_bytes(), b',', "ok.csv".into()).unwrap();
        assert_eq!(r.rows.len(), 2);
        assert!(r.rows.iter().all(|row| row.error.is_none()), "{:?}", r.rows);
        // NDJSON with a BOM and a broken line in the middle: the good lines land
        let nd = "\u{feff}{\"a\":1}\n{\"a\":\n{\"a\":3}\n";
        let r = read_json(nd.as_bytes(), "x.ndjson".into()).unwrap();
        assert_eq!(r.rows.len(), 3);
        assert!(r.rows[0].error.is_none() && r.rows[1].error.is_some() && r.rows[2].error.is_none());
    }

    #[test]
    fn globs_and_default_file_names() {
        assert!(glob_match("exports/*.csv", "exports/a.csv"));
        assert!(!glob_match("exports/*.csv", "exports/x/a.csv"));
        assert!(glob_match("exports/**/*.csv", "exports/x/a.csv"));
        assert!(glob_match("crm_??.csv", "crm_01.csv"));
        assert!(default_match("accounts", "accounts.csv"));
        assert!(default_match("accounts", "accounts-2026-01.csv"));
        assert!(default_match("usage_events", "usage_events/part-00001.parquet"));
        assert!(!default_match("accounts", "accounts_extra.csv"));
        assert!(!default_match("contacts", "accounts.csv"));
        assert!(default_match("accounts", "2026-03-31/accounts.csv"));
        assert!(default_match(
            "usage_events",
            "2026-03-31/usage_events/part-1.csv"
        ));
        assert!(!default_match("contacts", "2026-03-31/usage_events/contacts.csv"));
    }

    #[test]
    fn csv_quoting_bom_embedded_newlines_and_short_rows() {
        let data = "\u{feff}id,name,note\n1,\"Acme, Inc.\",\"two\nlines\"\n2,Short\n";
        let r = read_csv(data.as_bytes(), b',', "f.csv".into()).unwrap();
        assert_eq!(r.header, ["id", "name", "note"]);
        assert_eq!(r.rows[0].values[1].as_deref(), Some("Acme, Inc."));
        assert_eq!(r.rows[0].values[2].as_deref(), Some("two\nlines"));
        assert_eq!(
            r.rows[1].error.as_deref(),
            Some("2 fields where the header has 3")
        );
    }
}
