//! NDJSON and JSON arrays into text batches, nested objects flattened to dotted fields; and API
//! pages into batches the same way ([`page_batch`]).

use std::collections::HashMap;
use std::io::BufRead;

use deltalake::arrow::array::StringBuilder;

use super::shared::{BATCH_BYTES, BATCH_ROWS, skip_bom};
use crate::ingest::batch::{RowError, SourceBatch, text_batch};
use crate::{Error, Result};

/// Text columns being filled from JSON objects, whose fields may differ from one to the next.
struct JsonColumns {
    origin: String,
    header: Vec<String>,
    index: HashMap<String, usize>,
    cols: Vec<StringBuilder>,
    numbers: Vec<usize>,
    errors: HashMap<usize, RowError>,
    bytes: usize,
    row: Vec<Option<String>>,
    /// Arrays of objects flatten too (`associations.companies.results.0.id`), as API responses
    /// nest related records that way; otherwise arrays stay JSON text.
    index_arrays: bool,
}

impl JsonColumns {
    fn new(origin: String) -> Self {
        Self {
            index_arrays: false,
            origin,
            header: Vec::new(),
            index: HashMap::new(),
            cols: Vec::new(),
            numbers: Vec::new(),
            errors: HashMap::new(),
            bytes: 0,
            row: Vec::new(),
        }
    }

    fn push(&mut self, number: usize, value: std::result::Result<serde_json::Value, String>) {
        let rows = self.numbers.len();
        self.numbers.push(number);
        let map = match value {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(other) => {
                self.bad(
                    rows,
                    format!("expected a JSON object, found {}", short(&other.to_string())),
                );
                return;
            }
            Err(reason) => {
                self.bad(rows, reason);
                return;
            }
        };
        let mut fields = Vec::with_capacity(map.len());
        flatten("", map, self.index_arrays, &mut fields);
        self.row.clear();
        self.row.resize(self.header.len(), None);
        for (k, v) in fields {
            let i = match self.index.get(&k) {
                Some(i) => *i,
                None => {
                    // a field first seen here: empty in the rows before it
                    let mut b = StringBuilder::new();
                    b.append_nulls(rows);
                    self.cols.push(b);
                    self.header.push(k.clone());
                    self.index.insert(k, self.header.len() - 1);
                    self.row.push(None);
                    self.header.len() - 1
                }
            };
            self.bytes += v.as_ref().map_or(0, String::len);
            self.row[i] = v;
        }
        for (c, v) in self.cols.iter_mut().zip(self.row.drain(..)) {
            c.append_option(v);
        }
    }

    fn bad(&mut self, row: usize, reason: String) {
        for c in &mut self.cols {
            c.append_null();
        }
        self.errors.insert(row, RowError { reason, raw: None });
    }

    fn full(&self) -> bool {
        self.numbers.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES
    }

    fn take(&mut self, offset: u64) -> Result<SourceBatch> {
        let rows = self.numbers.len();
        let cols = self.cols.iter_mut().map(StringBuilder::finish).collect();
        let batch = text_batch(&self.header, cols, rows)?;
        self.bytes = 0;
        Ok(SourceBatch {
            origin: self.origin.clone(),
            batch,
            first_row: self.numbers.first().copied().unwrap_or(1),
            numbers: Some(std::mem::take(&mut self.numbers)),
            errors: std::mem::take(&mut self.errors),
            meetings: false,
            offset,
        })
    }
}

fn short(s: &str) -> String {
    if s.chars().count() <= 200 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(200).collect::<String>())
    }
}

/// Reads NDJSON (one object per line; a bad line is rejected on its own) or a JSON array of
/// objects (one document: it parses whole or not at all), nested objects flattened to dotted
/// fields.
pub fn json_batches(
    mut input: impl BufRead,
    origin: String,
    emit: &mut dyn FnMut(SourceBatch) -> bool,
) -> Result<()> {
    let io = |e: std::io::Error| Error::Input {
        origin: origin.clone(),
        message: e.to_string(),
    };
    skip_bom(&mut input).map_err(io)?;
    let mut cols = JsonColumns::new(origin.clone());
    // leading blank lines count as lines
    let mut line = 1usize;
    let array = loop {
        let buf = input.fill_buf().map_err(io)?;
        let Some(&b) = buf.first() else {
            return Ok(());
        };
        if !b.is_ascii_whitespace() {
            break b == b'[';
        }
        line += usize::from(b == b'\n');
        input.consume(1);
    };
    let mut offset = 0u64;
    if array {
        let mut de = serde_json::Deserializer::from_reader(input);
        let mut failed: Option<Error> = None;
        let visitor = Elements {
            cols: &mut cols,
            emit,
            failed: &mut failed,
        };
        serde::Deserializer::deserialize_seq(&mut de, visitor)
            .and_then(|()| de.end())
            .map_err(|e| Error::Input {
                origin: origin.clone(),
                message: format!("invalid JSON array: {e}"),
            })?;
        if let Some(e) = failed {
            return Err(e);
        }
        return Ok(());
    }
    let mut text = Vec::with_capacity(4096);
    loop {
        text.clear();
        let n = input.read_until(b'\n', &mut text).map_err(io)?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        if !text.iter().all(u8::is_ascii_whitespace) {
            let parsed = match std::str::from_utf8(&text) {
                Ok(t) => {
                    serde_json::from_str(t).map_err(|e| format!("invalid JSON: {e}: {}", short(t.trim_end())))
                }
                Err(_) => Err("the line is not valid UTF-8".to_string()),
            };
            cols.push(line, parsed);
            if cols.full() && !emit(cols.take(offset)?) {
                return Ok(());
            }
        }
        line += 1;
    }
    if !cols.numbers.is_empty() {
        emit(cols.take(offset)?);
    }
    Ok(())
}

/// The elements of a JSON array, into batches as they are parsed.
struct Elements<'a> {
    cols: &'a mut JsonColumns,
    emit: &'a mut dyn FnMut(SourceBatch) -> bool,
    failed: &'a mut Option<Error>,
}

impl<'de> serde::de::Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of JSON objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let mut number = 0;
        while let Some(v) = seq.next_element::<serde_json::Value>()? {
            number += 1;
            self.cols.push(number, Ok(v));
            if self.cols.full() {
                match self.cols.take(0) {
                    Ok(b) => {
                        if !(self.emit)(b) {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        *self.failed = Some(e);
                        return Ok(());
                    }
                }
            }
        }
        if !self.cols.numbers.is_empty() {
            match self.cols.take(0) {
                Ok(b) => {
                    (self.emit)(b);
                }
                Err(e) => *self.failed = Some(e),
            }
        }
        Ok(())
    }
}

/// The items of an API page (parsed JSON, numbered from 1) as one batch of text columns, nested
/// objects flattened to dotted fields and arrays of objects too
/// (`associations.companies.results.0.id`), as API responses nest related records that way; an
/// item that is not an object is a bad row of the batch.
pub fn page_batch(origin: String, items: Vec<serde_json::Value>) -> Result<SourceBatch> {
    let mut cols = JsonColumns::new(origin);
    cols.index_arrays = true;
    for (i, item) in items.into_iter().enumerate() {
        cols.push(i + 1, Ok(item));
    }
    let mut batch = cols.take(0)?;
    // numbered 1, 2, ...
    batch.numbers = None;
    Ok(batch)
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
