//! Raw records from any source, validated and cast into canonical Arrow batches. Rows that fail
//! go to quarantine with the file, row, field and reason; nothing is silently dropped.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};

pub use crate::lake::ops::Rejected;
use crate::lake::schema::{ColType, Kind, TableSpec};
use crate::settings::TableMapping;
use crate::{Error, Result};

/// Records read from one source file (or page), as text.
#[derive(Debug, Clone, Default)]
pub struct RawRecords {
    /// Where they came from, e.g. `file:///data/accounts.csv`.
    pub origin: String,
    pub header: Vec<String>,
    pub rows: Vec<RawRow>,
    /// Calendar events (`ingest::calendar::HEADER`): their account comes from the attendees.
    pub meetings: bool,
}

#[derive(Debug, Clone)]
pub struct RawRow {
    /// 1-based record number in the origin (the header is not counted).
    pub number: usize,
    pub values: Vec<Option<String>>,
    /// Set when the record could not even be split into fields (wrong field count, bad JSON).
    pub error: Option<String>,
}

/// How source headers map to canonical columns.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// For each canonical column, the index of its source field.
    pub columns: Vec<Option<usize>>,
    /// Source fields mapped to nothing: kept as attributes where the table keeps them.
    pub unmapped: Vec<usize>,
    /// (source field index or `None` when absent, wanted value lower-cased): records that do not
    /// match belong to another table and are skipped, not rejected.
    pub filter: Vec<(Option<usize>, String)>,
}

fn normalise(s: &str) -> String {
    s.trim_start_matches('\u{feff}')
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .flat_map(char::to_lowercase)
        .collect()
}

impl Mapping {
    /// Maps a header: explicit `columns` of the table's configuration (canonical column → source
    /// field name) first, then the column's own name, then its aliases, ignoring case and
    /// punctuation. A required column may be missing when the configuration gives it a constant.
    pub fn resolve(spec: &TableSpec, header: &[String], config: &TableMapping, origin: &str) -> Result<Self> {
        Self::resolve_present(spec, header, &vec![true; header.len()], config, origin)
    }

    /// Like [`resolve`](Self::resolve), where only the fields marked `present` may map.
    pub fn resolve_present(
        spec: &TableSpec,
        header: &[String],
        present: &[bool],
        config: &TableMapping,
        origin: &str,
    ) -> Result<Self> {
        let overrides = &config.columns;
        // `ignore`d fields are neither mapped nor kept as attributes, as an API connector drops them
        let present: Vec<bool> = header
            .iter()
            .zip(present)
            .map(|(h, p)| *p && !ignored(h, &config.ignore))
            .collect();
        let norm: Vec<String> = header.iter().map(|h| normalise(h)).collect();
        let mut used = vec![false; header.len()];
        let mut columns = Vec::with_capacity(spec.columns.len());
        for c in spec.columns {
            let wanted: Vec<String> = match overrides.get(c.name) {
                Some(src) => vec![normalise(src)],
                None => std::iter::once(c.name)
                    .chain(c.aliases.iter().copied())
                    .map(normalise)
                    .collect(),
            };
            let found = wanted
                .iter()
                .find_map(|w| (0..header.len()).find(|i| !used[*i] && present[*i] && norm[*i] == *w));
            if let Some(i) = found {
                used[i] = true;
            } else if c.required
                && !config.constants.contains_key(c.name)
                // an event without an id gets one made from its fields (see `event_ids`)
                && !(spec.kind == Kind::Event && c.name == spec.key)
            {
                return Err(Error::MissingColumn {
                    origin: origin.to_string(),
                    table: spec.name.to_string(),
                    column: c.name.to_string(),
                    expected: wanted.join(", "),
                    found: header.join(", "),
                });
            }
            columns.push(found);
        }
        let filter = filter_of(header, config);
        // filter fields route records to tables: they are not data, so not attributes either
        let unmapped = (0..header.len())
            .filter(|i| !used[*i] && present[*i] && !filter.iter().any(|(f, _)| *f == Some(*i)))
            .collect();
        Ok(Self {
            columns,
            unmapped,
            filter,
        })
    }
}

/// Whether `[ingest.tables.*] ignore` names this source field: the field itself, or a dotted
/// prefix or segment of it (`attributes` drops `attributes.plan` and `properties.attributes.x`).
pub(crate) fn ignored(field: &str, ignore: &[String]) -> bool {
    ignore.iter().any(|ig| {
        field == ig
            || field.starts_with(&format!("{ig}."))
            || field.contains(&format!(".{ig}."))
            || field.ends_with(&format!(".{ig}"))
    })
}

/// The configured filter as (field index or `None` when absent, wanted value lower-cased).
pub(crate) fn filter_of(header: &[String], config: &TableMapping) -> Vec<(Option<usize>, String)> {
    config
        .filter
        .iter()
        .map(|(field, value)| {
            let f = normalise(field);
            (
                (0..header.len()).find(|i| normalise(&header[*i]) == f),
                value.trim().to_lowercase(),
            )
        })
        .collect()
}

/// Typed values of the canonical columns of one table, being built.
pub struct BatchBuilder {
    spec: &'static TableSpec,
    builders: Vec<ColumnBuilder>,
    attributes: StringBuilder,
    rows: usize,
}

/// A canonical column being built, value by value (the casts' per-value path, the demo generator).
pub(crate) enum ColumnBuilder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    pub(crate) fn new(ty: ColType, n: usize) -> Self {
        match ty {
            ColType::Str => ColumnBuilder::Str(StringBuilder::with_capacity(n, n * 16)),
            ColType::Int => ColumnBuilder::Int(Int64Builder::with_capacity(n)),
            ColType::Float => ColumnBuilder::Float(Float64Builder::with_capacity(n)),
            ColType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(n)),
            ColType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(n)),
            ColType::Timestamp => {
                ColumnBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"))
            }
        }
    }

    pub(crate) fn null(&mut self) {
        match self {
            ColumnBuilder::Str(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Ts(b) => b.append_null(),
        }
    }

    /// Appends text to a text column.
    pub(crate) fn str(&mut self, s: &str) {
        if let ColumnBuilder::Str(b) = self {
            b.append_value(s);
        }
    }

    pub(crate) fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Str(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Date(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Ts(mut b) => Arc::new(b.finish()),
        }
    }

    /// Appends a parsed value; `(number, day)` for the rules.
    pub(crate) fn push(&mut self, v: Value) -> (Option<f64>, Option<NaiveDate>) {
        match (self, v) {
            (ColumnBuilder::Str(b), Value::Str(s)) => b.append_value(s),
            (ColumnBuilder::Int(b), Value::Int(x)) => {
                b.append_value(x);
                return (Some(x as f64), None);
            }
            (ColumnBuilder::Float(b), Value::Float(x)) => {
                b.append_value(x);
                return (Some(x), None);
            }
            (ColumnBuilder::Float(b), Value::Int(x)) => {
                b.append_value(x as f64);
                return (Some(x as f64), None);
            }
            (ColumnBuilder::Bool(b), Value::Bool(x)) => b.append_value(x),
            (ColumnBuilder::Date(b), Value::Date(d)) => {
                b.append_value((d - EPOCH).num_days() as i32);
                return (None, Some(d));
            }
            (ColumnBuilder::Ts(b), Value::Ts(t)) => {
                b.append_value(t.timestamp_micros());
                return (None, Some(t.date_naive()));
            }
            (out, _) => out.null(),
        }
        (None, None)
    }
}

/// One parsed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    Ts(DateTime<Utc>),
}

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");

/// A Date32 value as a date; `None` beyond the years chrono holds (arrow's casts accept
/// '+275760-09-13').
pub(crate) fn date_of(days: i32) -> Option<NaiveDate> {
    EPOCH.checked_add_signed(chrono::TimeDelta::try_days(i64::from(days))?)
}

impl BatchBuilder {
    pub fn new(spec: &'static TableSpec) -> Self {
        let builders = Self::empty(spec);
        Self {
            spec,
            builders,
            attributes: StringBuilder::new(),
            rows: 0,
        }
    }

    fn empty(spec: &TableSpec) -> Vec<ColumnBuilder> {
        spec.columns.iter().map(|c| ColumnBuilder::new(c.ty, 0)).collect()
    }

    /// The columns so far; the builder starts again empty.
    fn finish_columns(&mut self) -> Vec<ArrayRef> {
        std::mem::replace(&mut self.builders, Self::empty(self.spec))
            .into_iter()
            .map(ColumnBuilder::finish)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row of values in column order (types must match the spec: the generator and
    /// the parser guarantee it).
    pub fn push(&mut self, values: Vec<Value>, attributes: Option<String>) {
        for (b, v) in self.builders.iter_mut().zip(values) {
            b.push(v);
        }
        self.attributes.append_option(attributes);
        self.rows += 1;
    }

    /// The canonical columns (without attributes or audit columns).
    pub fn finish_data(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.finish_columns();
        let _ = self.attributes.finish();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.spec.data_schema(), arrays)?)
    }

    /// The canonical columns, `attributes` where kept, and the audit columns.
    pub fn finish_table(
        &mut self,
        source: &str,
        run_id: &str,
        ingested_at: DateTime<Utc>,
    ) -> Result<RecordBatch> {
        let n = self.rows;
        let mut arrays: Vec<ArrayRef> = self.finish_columns();
        let attrs = self.attributes.finish();
        if self.spec.keeps_attributes {
            arrays.push(Arc::new(attrs));
        }
        let repeat = |s: &str| Arc::new(deltalake::arrow::array::StringArray::new_repeated(s, n)) as ArrayRef;
        arrays.push(repeat(source));
        arrays.push(repeat(run_id));
        let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for _ in 0..n {
            ts.append_value(ingested_at.timestamp_micros());
        }
        arrays.push(Arc::new(ts.finish()));
        self.rows = 0;
        Ok(RecordBatch::try_new(self.spec.table_schema(), arrays)?)
    }
}

/// Parses one text value as `ty`; `Err` holds the user-facing reason.
pub fn parse_value(ty: ColType, s: &str, date_formats: &[String]) -> std::result::Result<Value, String> {
    let fail = || format!("expected {}, found '{}'", ty.describe(), truncate(s, 60));
    match ty {
        ColType::Str => Ok(Value::Str(s.to_string())),
        ColType::Int => s
            .parse::<i64>()
            .ok()
            .or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            })
            .map(Value::Int)
            .ok_or_else(fail),
        ColType::Float => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(fail),
        ColType::Bool => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Ok(Value::Bool(true)),
            "false" | "f" | "no" | "n" | "0" => Ok(Value::Bool(false)),
            _ => Err(fail()),
        },
        ColType::Date => parse_date(s)
            .or_else(|| custom(s, date_formats).map(|t| t.date_naive()))
            .map(Value::Date)
            .ok_or_else(fail),
        ColType::Timestamp => parse_timestamp(s)
            .or_else(|| custom(s, date_formats))
            .map(Value::Ts)
            .ok_or_else(fail),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Tries the configured formats: with a time, with an offset, or a date alone (midnight UTC).
fn custom(s: &str, formats: &[String]) -> Option<DateTime<Utc>> {
    formats.iter().find_map(|f| {
        DateTime::parse_from_str(s, f)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| NaiveDateTime::parse_from_str(s, f).ok().map(|t| t.and_utc()))
            .or_else(|| {
                NaiveDate::parse_from_str(s, f)
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            })
    })
}

pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| parse_timestamp(s).map(|t| t.date_naive()))
}

pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    // Salesforce and others: an offset without a colon (`2026-01-31T09:30:00.000+0000`)
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&Utc));
    }
    if let Some(t) = s
        .strip_suffix(" UTC")
        .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok())
    {
        return Some(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    // Unix epoch seconds or milliseconds
    if s.len() >= 9 && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        return if s.len() >= 13 {
            DateTime::from_timestamp_millis(n)
        } else {
            DateTime::from_timestamp(n, 0)
        };
    }
    None
}

/// A longer field rejects its row.
pub const MAX_FIELD_BYTES: usize = 1 << 20;
/// How much of a long field the quarantine keeps in `raw`.
const RAW_FIELD_KEPT: usize = 64 << 10;

/// The record as a JSON object (header → text), for quarantine.
pub fn raw_json(header: &[String], values: &[Option<String>]) -> String {
    let mut obj = serde_json::Map::new();
    for (i, v) in values.iter().enumerate() {
        let key = header
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("field_{}", i + 1));
        let v = v.as_ref().map(|v| {
            if v.len() <= RAW_FIELD_KEPT {
                v.clone()
            } else {
                let mut end = RAW_FIELD_KEPT;
                while !v.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}… [{} bytes in all]", &v[..end], v.len())
            }
        });
        obj.insert(key, v.map_or(serde_json::Value::Null, serde_json::Value::String));
    }
    serde_json::Value::Object(obj).to_string()
}
