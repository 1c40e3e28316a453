//! CSV (or any delimiter) into text batches, with the `csv` crate: a malformed record is kept
//! and marked for the quarantine instead of stopping the file (see [`super`]).

use std::collections::HashMap;
use std::io::{BufReader, Read};

use deltalake::arrow::array::StringBuilder;

use super::shared::{BATCH_BYTES, BATCH_ROWS, skip_bom};
use crate::ingest::batch::{RowError, SourceBatch, text_batch};
use crate::ingest::records::raw_json;
use crate::{Error, Result};

/// Bytes on their way to the CSV parser, watched for a quote that is never closed. Quotes count
/// as RFC 4180 reads them: only at the start of a field, `""` inside a quoted field is a quote.
struct Quotes<R> {
    inner: R,
    delimiter: u8,
    line: usize,
    opened_on: usize,
    inside: bool,
    /// A quote just seen inside a quoted field: it closes the field unless another follows.
    quote: bool,
    field_start: bool,
    last: Option<u8>,
}

impl<R: Read> Read for Quotes<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if self.quote {
                self.quote = false;
                if b == b'"' {
                    // an escaped quote: still inside
                    self.last = Some(b);
                    continue;
                }
                self.inside = false;
            }
            if self.inside {
                if b == b'"' {
                    self.quote = true;
                }
            } else if b == b'"' && self.field_start {
                self.inside = true;
                self.opened_on = self.line;
            }
            if b == b'\n' {
                self.line += 1;
            }
            self.field_start = !self.inside && (b == self.delimiter || b == b'\n' || b == b'\r');
            self.last = Some(b);
        }
        Ok(n)
    }
}

impl<R> Quotes<R> {
    /// At the end of the input: the line the open quote started on and how many lines follow it.
    fn unclosed(&self) -> Option<(usize, usize)> {
        let total = self.line - usize::from(self.last == Some(b'\n'));
        (self.inside && !self.quote).then(|| (self.opened_on, total - self.opened_on))
    }
}

/// Reads CSV (or any delimiter) into text batches. A record with the wrong number of fields or
/// a field that is not UTF-8 is kept, marked, to be quarantined with its text. `emit` returns
/// `false` when nobody wants more.
pub fn csv_batches(
    input: impl Read,
    delimiter: u8,
    origin: String,
    emit: &mut dyn FnMut(SourceBatch) -> bool,
) -> Result<()> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    skip_bom(&mut input).map_err(|e| Error::Input {
        origin: origin.clone(),
        message: e.to_string(),
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .buffer_capacity(1 << 16)
        .from_reader(Quotes {
            inner: input,
            delimiter,
            line: 1,
            opened_on: 0,
            inside: false,
            quote: false,
            field_start: true,
            last: None,
        });
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
    if header.iter().all(String::is_empty) {
        // an empty (or blank) file: nothing to load
        return Ok(());
    }
    let n = header.len();
    let mut record = csv::ByteRecord::new();
    // one record read ahead, so the file's last record is known while its batch is still open
    let mut ahead = false;
    let mut number = 0usize;
    let read = |reader: &mut csv::Reader<_>, record: &mut csv::ByteRecord, number: usize| -> Result<bool> {
        reader.read_byte_record(record).map_err(|e| Error::Input {
            origin: origin.clone(),
            message: format!("record {}: {e}", number + 1),
        })
    };
    let mut emitted = false;
    loop {
        let first_row = number + 1;
        let mut cols: Vec<StringBuilder> = (0..n)
            .map(|_| StringBuilder::with_capacity(4096, 64 << 10))
            .collect();
        let mut errors: HashMap<usize, RowError> = HashMap::new();
        let (mut rows, mut bytes) = (0usize, 0usize);
        let end;
        loop {
            if !ahead && !read(&mut reader, &mut record, number)? {
                end = true;
                break;
            }
            ahead = false;
            number += 1;
            let mut error: Option<String> = None;
            for (i, col) in cols.iter_mut().enumerate() {
                match record.get(i) {
                    Some(v) => match std::str::from_utf8(v) {
                        Ok(s) => col.append_value(s),
                        Err(_) => {
                            error.get_or_insert_with(|| format!("field '{}' is not valid UTF-8", header[i]));
                            col.append_value(String::from_utf8_lossy(v));
                        }
                    },
                    None => col.append_null(),
                }
            }
            if record.len() != n && error.is_none() {
                error = Some(format!("{} fields where the header has {n}", record.len()));
            }
            if let Some(reason) = error {
                // fields beyond the header have no column: the record is kept whole here
                let raw = (record.len() > n).then(|| {
                    let values: Vec<Option<String>> = record
                        .iter()
                        .map(|v| Some(String::from_utf8_lossy(v).into_owned()))
                        .collect();
                    raw_json(&header, &values)
                });
                errors.insert(rows, RowError { reason, raw });
            }
            bytes += record.as_slice().len();
            rows += 1;
            if rows >= BATCH_ROWS || bytes >= BATCH_BYTES {
                ahead = read(&mut reader, &mut record, number)?;
                end = !ahead;
                break;
            }
        }
        if end
            && rows > 0
            && let Some((line, lost)) = reader.get_ref().unclosed()
        {
            // a quote never closed swallows every line after it into one field: say so, and how much
            let quote = if lost > 0 {
                format!(
                    "a quote opened on line {line} is never closed: the rest of the file ({lost} line(s) after it) \
                     was read as one field and is not loaded; fix the quoting and load the file again"
                )
            } else {
                format!("its quote, opened on line {line}, is never closed")
            };
            let e = errors.entry(rows - 1).or_insert(RowError {
                reason: String::new(),
                raw: None,
            });
            e.reason = if e.reason.is_empty() {
                quote
            } else {
                format!("{}; {quote}", e.reason)
            };
        }
        if rows > 0 || !emitted {
            // a file with a header and no records still says which columns it has
            let batch = text_batch(&header, cols.into_iter().map(|mut c| c.finish()).collect(), rows)?;
            let more = emit(SourceBatch {
                origin: origin.clone(),
                batch,
                first_row,
                numbers: None,
                errors,
                meetings: false,
                offset: reader.position().byte(),
            });
            emitted = true;
            if !more {
                return Ok(());
            }
        }
        if end {
            return Ok(());
        }
    }
}
