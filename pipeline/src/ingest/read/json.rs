//! NDJSON and JSON arrays into text batches, nested objects flattened to dotted fields; and API
//! pages into batches the same way ([`page_batch`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;

use deltalake::arrow::array::{AsArray, StringArray, StringBuilder};

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
        self.fill(
            rows,
            fields
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), v.map(Cow::Owned))),
        );
    }

    /// One NDJSON line: parsed straight into its fields (no `serde_json::Value` in between) when
    /// it is an object; anything else goes the general way, which words the reason.
    fn push_line(&mut self, number: usize, line: &str) {
        if !self.index_arrays {
            let mut fields = Vec::new();
            let mut de = serde_json::Deserializer::from_str(line);
            let parsed = serde::Deserializer::deserialize_map(
                &mut de,
                Flat {
                    prefix: None,
                    out: &mut fields,
                },
            )
            .and_then(|_| de.end());
            if parsed.is_ok() {
                let rows = self.numbers.len();
                self.numbers.push(number);
                self.fill(rows, fields.into_iter());
                return;
            }
        }
        let parsed =
            serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}: {}", short(line.trim_end())));
        self.push(number, parsed);
    }

    /// Row `rows`' fields (dotted names, text values) into their columns; a field seen twice
    /// keeps its last value.
    fn fill<'a>(&mut self, rows: usize, fields: impl Iterator<Item = (Cow<'a, str>, Option<Cow<'a, str>>)>) {
        let mut row: Vec<Option<Cow<'a, str>>> = vec![None; self.header.len()];
        for (k, v) in fields {
            let i = match self.index.get(k.as_ref()) {
                Some(i) => *i,
                None => {
                    // a field first seen here: empty in the rows before it
                    let mut b = StringBuilder::new();
                    b.append_nulls(rows);
                    self.cols.push(b);
                    self.header.push(k.to_string());
                    self.index.insert(k.into_owned(), self.header.len() - 1);
                    row.push(None);
                    self.header.len() - 1
                }
            };
            self.bytes += v.as_ref().map_or(0, |v| v.len());
            row[i] = v;
        }
        for (c, v) in self.cols.iter_mut().zip(row) {
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
    // NDJSON: the lines are cut into chunks of a batch each, and two chunks are parsed at a
    // time, on this thread and one more (parsing is most of the work of reading); each batch
    // then takes the columns the file has shown so far, in the order they first appeared
    let mut columns = Columns::default();
    loop {
        let first = read_chunk(&mut input, &mut line, &mut offset).map_err(io)?;
        if first.lines.is_empty() {
            return Ok(());
        }
        let second = read_chunk(&mut input, &mut line, &mut offset).map_err(io)?;
        let (a, b) = std::thread::scope(|s| {
            let b = (!second.lines.is_empty()).then(|| s.spawn(|| parse_chunk(&origin, &second)));
            let a = parse_chunk(&origin, &first);
            (a, b.map(|h| h.join()))
        });
        if !emit(columns.align(a?)?) {
            return Ok(());
        }
        match b {
            None => return Ok(()),
            Some(Ok(b)) => {
                if !emit(columns.align(b?)?) {
                    return Ok(());
                }
            }
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }
}

/// NDJSON lines, read but not parsed: the text, and each non-blank line's number and span.
struct Chunk {
    text: Vec<u8>,
    lines: Vec<(usize, std::ops::Range<usize>)>,
    /// How far into the file the chunk ends, in bytes.
    offset: u64,
}

/// Up to a batch of lines (by count or by bytes); `line` is the number of the next line.
fn read_chunk(input: &mut impl BufRead, line: &mut usize, offset: &mut u64) -> std::io::Result<Chunk> {
    let mut chunk = Chunk {
        text: Vec::with_capacity(1 << 20),
        lines: Vec::new(),
        offset: *offset,
    };
    while chunk.lines.len() < BATCH_ROWS && chunk.text.len() < BATCH_BYTES {
        let start = chunk.text.len();
        let n = input.read_until(b'\n', &mut chunk.text)?;
        if n == 0 {
            break;
        }
        *offset += n as u64;
        if chunk.text[start..].iter().all(u8::is_ascii_whitespace) {
            chunk.text.truncate(start);
        } else {
            chunk.lines.push((*line, start..chunk.text.len()));
        }
        *line += 1;
    }
    chunk.offset = *offset;
    Ok(chunk)
}

/// A chunk's lines as one batch, with the columns its lines have.
fn parse_chunk(origin: &str, chunk: &Chunk) -> Result<SourceBatch> {
    let mut cols = JsonColumns::new(origin.to_string());
    for (number, span) in &chunk.lines {
        match std::str::from_utf8(&chunk.text[span.clone()]) {
            Ok(t) => cols.push_line(*number, t),
            Err(_) => cols.push(*number, Err("the line is not valid UTF-8".to_string())),
        }
    }
    cols.take(chunk.offset)
}

/// The columns of a file so far, in the order they first appeared.
#[derive(Default)]
struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Columns {
    /// `b` with every column seen so far (null where its lines had none), in the file's order:
    /// what one reader of the whole file would have made.
    fn align(&mut self, mut b: SourceBatch) -> Result<SourceBatch> {
        let header = b.header();
        for h in &header {
            if !self.index.contains_key(h) {
                self.index.insert(h.clone(), self.names.len());
                self.names.push(h.clone());
            }
        }
        if header == self.names {
            return Ok(b);
        }
        let rows = b.num_rows();
        let at: HashMap<&str, usize> = header.iter().enumerate().map(|(i, h)| (h.as_str(), i)).collect();
        let cols = self
            .names
            .iter()
            .map(|n| match at.get(n.as_str()) {
                Some(&i) => b.batch.column(i).as_string::<i32>().clone(),
                None => StringArray::new_null(rows),
            })
            .collect();
        b.batch = text_batch(&self.names, cols, rows)?;
        Ok(b)
    }
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

/// An object's fields, flattened to dotted names as [`flatten`] does (without indexing arrays),
/// read straight from the text: names and values borrow from it unless they hold escapes.
struct Flat<'a, 'de> {
    prefix: Option<&'a str>,
    out: &'a mut Vec<(Cow<'de, str>, Option<Cow<'de, str>>)>,
}

/// Text as borrowed from the input where it can be.
struct Text<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::Visitor<'de> for Flat<'_, 'de> {
    /// How many fields the object has.
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<usize, A::Error> {
        let mut n = 0;
        while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
            n += 1;
            let key = match self.prefix {
                None => k,
                Some(p) => Cow::Owned(format!("{p}.{k}")),
            };
            map.next_value_seed(Leaf {
                key,
                out: &mut *self.out,
            })?;
        }
        Ok(n)
    }
}

/// One field's value: text, a number or a boolean as its JSON text, null as nothing, a
/// non-empty object flattened under the field's name, anything else (arrays, `{}`) as JSON text.
struct Leaf<'a, 'de> {
    key: Cow<'de, str>,
    out: &'a mut Vec<(Cow<'de, str>, Option<Cow<'de, str>>)>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Leaf<'_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Leaf<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<(), E> {
        self.out.push((self.key, Some(Cow::Borrowed(v))));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<(), E> {
        self.out.push((self.key, Some(Cow::Owned(v.to_string()))));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<(), E> {
        self.out.push((self.key, Some(Cow::Owned(v))));
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<(), E> {
        self.out
            .push((self.key, Some(Cow::Borrowed(if v { "true" } else { "false" }))));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<(), E> {
        self.out.push((self.key, Some(Cow::Owned(v.to_string()))));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<(), E> {
        self.out.push((self.key, Some(Cow::Owned(v.to_string()))));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<(), E> {
        // as serde_json writes it (`1.0`, not `1`)
        let text = serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string());
        self.out.push((self.key, Some(Cow::Owned(text))));
        Ok(())
    }

    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        self.out.push((self.key, None));
        Ok(())
    }

    fn visit_none<E>(self) -> std::result::Result<(), E> {
        self.out.push((self.key, None));
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> std::result::Result<(), A::Error> {
        let n = Flat {
            prefix: Some(&self.key),
            out: &mut *self.out,
        }
        .visit_map(map)?;
        if n == 0 {
            self.out.push((self.key, Some(Cow::Borrowed("{}"))));
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<serde_json::Value>()? {
            items.push(v);
        }
        self.out.push((
            self.key,
            Some(Cow::Owned(serde_json::Value::Array(items).to_string())),
        ));
        Ok(())
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

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Array, AsArray};

    use super::*;

    fn columns(lines: &[&str], fast: bool) -> Vec<(String, Vec<Option<String>>)> {
        let mut cols = JsonColumns::new("x.ndjson".into());
        for (i, line) in lines.iter().enumerate() {
            if fast {
                cols.push_line(i + 1, line);
            } else {
                let parsed =
                    serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}: {}", short(line)));
                cols.push(i + 1, parsed);
            }
        }
        let b = cols.take(0).unwrap();
        let mut errors: Vec<_> = b.errors.iter().map(|(k, v)| (*k, v.reason.clone())).collect();
        errors.sort();
        let mut out: Vec<(String, Vec<Option<String>>)> = b
            .header()
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let c = b.batch.column(i).as_string::<i32>();
                (
                    h,
                    (0..c.len())
                        .map(|r| (!c.is_null(r)).then(|| c.value(r).to_string()))
                        .collect(),
                )
            })
            .collect();
        // the general way lists an object's fields in name order, the straight way as written
        out.sort();
        out.push((
            "errors".into(),
            errors
                .into_iter()
                .map(|(k, r)| Some(format!("{k}: {r}")))
                .collect(),
        ));
        out
    }

    #[test]
    fn lines_parsed_straight_into_fields_match_the_general_way() {
        let lines = [
            r#"{"id":"e1","n":1,"f":1.0,"big":18446744073709551615,"neg":-0.5,"exp":1e20,"ok":true,"no":null}"#,
            r#"{"id":"e\"2\u00e9","ctx":{"group":{"id":"g1"},"empty":{},"list":[1,{"a":2}]},"n":-7}"#,
            r#"{"id":"e3","dup":"first","dup":"last","ctx.group.id":"flat"}"#,
            r#"["not", "an object"]"#,
            r#"{"id":"e5","broken":"#,
            r#"{"id":"e6"} trailing"#,
            r#"  {"id":"e7","ünï":"cödé"}  "#,
        ];
        assert_eq!(columns(&lines, true), columns(&lines, false));
    }

    #[test]
    fn chunks_parsed_side_by_side_keep_the_files_columns() {
        // a field of the first line only, and one first seen in the third batch
        let mut nd = String::from("{\"id\":0,\"a\":\"x\"}\n");
        for i in 1..2 * BATCH_ROWS + 3 {
            if i > 2 * BATCH_ROWS {
                nd.push_str(&format!("{{\"b\":\"y\",\"id\":{i}}}\n"));
            } else {
                nd.push_str(&format!("{{\"id\":{i}}}\n"));
            }
        }
        let batches =
            crate::ingest::read::all_batches(nd.as_bytes(), crate::ingest::read::Format::Json, "x").unwrap();
        let headers: Vec<Vec<String>> = batches.iter().map(SourceBatch::header).collect();
        assert_eq!(headers, [vec!["id", "a"], vec!["id", "a"], vec!["id", "a", "b"]]);
        let last = &batches[2];
        assert_eq!(last.first_row, 2 * BATCH_ROWS + 1);
        assert_eq!(last.batch.column(1).null_count(), last.num_rows());
        assert_eq!(
            last.batch.column(2).null_count(),
            1,
            "line {} has no b",
            2 * BATCH_ROWS + 1
        );
    }
}
