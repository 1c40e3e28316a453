//! Raw records from any source, validated and cast into canonical Arrow batches. Rows that fail
//! go to quarantine with the file, row, field and reason; nothing is silently dropped.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};

pub use crate::lake::ops::Rejected;
use crate::lake::schema::{ColType, DEFAULT_RULES, RuleDefault, TableSpec};
use crate::settings::{Rule, TableMapping};
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

    /// Like [`resolve`](Self::resolve), for records in hand. With a `filter` (records of several
    /// types in one file), a field that no record of this table fills is not a candidate for any
    /// column, so `groupId` of group calls does not shadow `context.groupId` of track calls.
    pub fn resolve_records(spec: &TableSpec, records: &RawRecords, config: &TableMapping) -> Result<Self> {
        let filter = filter_of(&records.header, config);
        let mut present = vec![false; records.header.len()];
        for row in records.rows.iter().filter(|r| belongs(&filter, r)) {
            for (i, v) in row.values.iter().enumerate() {
                if i < present.len() && v.as_deref().is_some_and(|v| !v.trim().is_empty()) {
                    present[i] = true;
                }
            }
        }
        if records.rows.is_empty() || config.filter.is_empty() {
            // without routing, an empty column is still a column: its rows fail one by one
            present.fill(true);
        }
        Self::resolve_present(spec, &records.header, &present, config, &records.origin)
    }

    fn resolve_present(
        spec: &TableSpec,
        header: &[String],
        present: &[bool],
        config: &TableMapping,
        origin: &str,
    ) -> Result<Self> {
        let overrides = &config.columns;
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
            } else if c.required && !config.constants.contains_key(c.name) {
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

/// The configured filter as (field index or `None` when absent, wanted value lower-cased).
fn filter_of(header: &[String], config: &TableMapping) -> Vec<(Option<usize>, String)> {
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

/// Whether a record passes the table's filter. Records that cannot be read at all are kept, to
/// be rejected with their reason.
fn belongs(filter: &[(Option<usize>, String)], row: &RawRow) -> bool {
    row.error.is_some()
        || filter.iter().all(|(idx, want)| {
            idx.and_then(|i| row.values.get(i))
                .and_then(|v| v.as_deref())
                .is_some_and(|v| v.trim().to_lowercase() == *want)
        })
}

/// Typed values of the canonical columns of one table, being built.
pub struct BatchBuilder {
    spec: &'static TableSpec,
    builders: Vec<Builder>,
    attributes: StringBuilder,
    rows: usize,
}

enum Builder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
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

impl BatchBuilder {
    pub fn new(spec: &'static TableSpec) -> Self {
        let builders = spec
            .columns
            .iter()
            .map(|c| match c.ty {
                ColType::Str => Builder::Str(StringBuilder::new()),
                ColType::Int => Builder::Int(Int64Builder::new()),
                ColType::Float => Builder::Float(Float64Builder::new()),
                ColType::Bool => Builder::Bool(BooleanBuilder::new()),
                ColType::Date => Builder::Date(Date32Builder::new()),
                ColType::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            })
            .collect();
        Self {
            spec,
            builders,
            attributes: StringBuilder::new(),
            rows: 0,
        }
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
            match (b, v) {
                (Builder::Str(b), Value::Str(s)) => b.append_value(s),
                (Builder::Int(b), Value::Int(x)) => b.append_value(x),
                (Builder::Float(b), Value::Float(x)) => b.append_value(x),
                (Builder::Float(b), Value::Int(x)) => b.append_value(x as f64),
                (Builder::Bool(b), Value::Bool(x)) => b.append_value(x),
                (Builder::Date(b), Value::Date(d)) => b.append_value((d - EPOCH).num_days() as i32),
                (Builder::Ts(b), Value::Ts(t)) => b.append_value(t.timestamp_micros()),
                (Builder::Str(b), _) => b.append_null(),
                (Builder::Int(b), _) => b.append_null(),
                (Builder::Float(b), _) => b.append_null(),
                (Builder::Bool(b), _) => b.append_null(),
                (Builder::Date(b), _) => b.append_null(),
                (Builder::Ts(b), _) => b.append_null(),
            }
        }
        self.attributes.append_option(attributes);
        self.rows += 1;
    }

    /// The canonical columns (without attributes or audit columns).
    pub fn finish_data(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(finish_builder).collect();
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
        let mut arrays: Vec<ArrayRef> = self.builders.iter_mut().map(finish_builder).collect();
        let attrs = self.attributes.finish();
        if self.spec.keeps_attributes {
            arrays.push(Arc::new(attrs));
        }
        let repeat = |s: &str| {
            let mut b = StringBuilder::with_capacity(n, n * s.len());
            for _ in 0..n {
                b.append_value(s);
            }
            Arc::new(b.finish()) as ArrayRef
        };
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

fn finish_builder(b: &mut Builder) -> ArrayRef {
    match b {
        Builder::Str(b) => Arc::new(b.finish()),
        Builder::Int(b) => Arc::new(b.finish()),
        Builder::Float(b) => Arc::new(b.finish()),
        Builder::Bool(b) => Arc::new(b.finish()),
        Builder::Date(b) => Arc::new(b.finish()),
        Builder::Ts(b) => Arc::new(b.finish()),
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

/// Column mappings that combine fields, like `name = "{firstname} {lastname}"`: each becomes a
/// field of that name, filled per record (a missing field counts as empty; all empty is null).
pub fn apply_templates(records: &mut RawRecords, config: &TableMapping) {
    let mut templates: Vec<&String> = config
        .columns
        .values()
        .filter(|t| t.contains('{') && t.contains('}'))
        .collect();
    templates.sort();
    templates.dedup();
    for t in templates {
        if records.header.contains(t) {
            continue;
        }
        // split into literal text and field references
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
        let index: Vec<Option<usize>> = parts
            .iter()
            .map(|(field, name)| {
                if *field {
                    records.header.iter().position(|h| h == name)
                } else {
                    None
                }
            })
            .collect();
        records.header.push(t.clone());
        for row in &mut records.rows {
            let mut out = String::new();
            let mut any = false;
            for ((field, text), i) in parts.iter().zip(&index) {
                if !*field {
                    out.push_str(text);
                } else if let Some(v) = i.and_then(|i| row.values.get(i)).and_then(|v| v.as_deref()) {
                    any |= !v.trim().is_empty();
                    out.push_str(v);
                }
            }
            let value = any.then(|| out.split_whitespace().collect::<Vec<_>>().join(" "));
            row.values.resize(records.header.len() - 1, None);
            row.values.push(value);
        }
    }
}

/// A longer field rejects its row.
pub const MAX_FIELD_BYTES: usize = 1 << 20;
/// How much of a long field the quarantine keeps in `raw`.
const RAW_FIELD_KEPT: usize = 64 << 10;

/// Validates and casts raw records into `builder`; returns the rejected rows.
pub fn cast_records(
    spec: &'static TableSpec,
    records: &RawRecords,
    mapping: &Mapping,
    config: &TableMapping,
    known_accounts: Option<&std::collections::HashSet<String>>,
    builder: &mut BatchBuilder,
) -> Vec<Rejected> {
    // value maps with lower-cased keys, per canonical column
    let value_maps: Vec<Option<HashMap<String, &str>>> = spec
        .columns
        .iter()
        .map(|c| {
            config.values.get(c.name).map(|m| {
                m.iter()
                    .map(|(k, v)| (k.trim().to_lowercase(), v.as_str()))
                    .collect()
            })
        })
        .collect();
    // the checks of values that parse but cannot be right: the table's own, else the built-in
    let now = Utc::now();
    let rules: Vec<Option<Rule>> = spec
        .columns
        .iter()
        .map(|c| match config.rules.get(c.name) {
            Some(r) => Some(*r),
            None => DEFAULT_RULES
                .iter()
                .find(|(t, col, _)| *t == spec.name && *col == c.name)
                .map(|(_, _, d)| match d {
                    RuleDefault::Min(m) => Rule {
                        min: Some(*m),
                        ..Rule::default()
                    },
                    RuleDefault::NotAfterDays(n) => Rule {
                        future_days: Some(*n),
                        ..Rule::default()
                    },
                }),
        })
        .collect();
    let mut rejected = Vec::new();
    'rows: for row in &records.rows {
        if !belongs(&mapping.filter, row) {
            continue;
        }
        if let Some(error) = &row.error {
            rejected.push(Rejected {
                origin: records.origin.clone(),
                row: row.number,
                field: String::new(),
                reason: format!("row {}: {error}", row.number),
                raw: raw_json(&records.header, &row.values),
            });
            continue;
        }
        if let Some(i) = row
            .values
            .iter()
            .position(|v| v.as_ref().is_some_and(|v| v.len() > MAX_FIELD_BYTES))
        {
            // a runaway field (an unclosed quote, a blob in a text column) is not data to keep
            let field = spec
                .columns
                .iter()
                .zip(&mapping.columns)
                .find(|(_, idx)| **idx == Some(i))
                .map(|(c, _)| c.name.to_string())
                .unwrap_or_else(|| records.header.get(i).cloned().unwrap_or_default());
            let len = row.values[i].as_ref().map_or(0, String::len);
            rejected.push(Rejected {
                origin: records.origin.clone(),
                row: row.number,
                field: field.clone(),
                reason: format!(
                    "row {}, field '{field}': {len} bytes, above the {} a field may hold (an unclosed quote?)",
                    row.number,
                    "1 MiB"
                ),
                raw: raw_json(&records.header, &row.values),
            });
            continue;
        }
        let mut values = Vec::with_capacity(spec.columns.len());
        for (j, (c, idx)) in spec.columns.iter().zip(&mapping.columns).enumerate() {
            let raw = idx
                .and_then(|i| row.values.get(i))
                .and_then(|v| v.as_deref())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .or_else(|| config.constants.get(c.name).map(String::as_str));
            let raw = match (raw, &value_maps[j]) {
                (Some(v), Some(map)) => Some(map.get(&v.to_lowercase()).copied().unwrap_or(v)),
                (v, _) => v,
            };
            if let (Some(v), Some(allowed)) = (raw, config.allowed.get(c.name))
                && !allowed.iter().any(|a| a.eq_ignore_ascii_case(v))
            {
                rejected.push(Rejected {
                    origin: records.origin.clone(),
                    row: row.number,
                    field: c.name.to_string(),
                    reason: format!(
                        "row {}, field '{}': '{}' is not one of the allowed values ({})",
                        row.number,
                        c.name,
                        truncate(v, 60),
                        allowed.join(", ")
                    ),
                    raw: raw_json(&records.header, &row.values),
                });
                continue 'rows;
            }
            let value = match raw {
                None if c.required => Err("required but empty".to_string()),
                None => Ok(Value::Null),
                Some(s) => parse_value(c.ty, s, &config.date_formats),
            };
            let value = value.and_then(|v| match rules[j].as_ref().and_then(|r| broken(r, &v, now)) {
                Some(why) => Err(format!(
                    "{why} (a rule of [ingest.tables.{}.rules]; `{} = {{}}` there turns it off)",
                    spec.name, c.name
                )),
                None => Ok(v),
            });
            match value {
                Ok(v) => values.push(v),
                Err(reason) => {
                    rejected.push(Rejected {
                        origin: records.origin.clone(),
                        row: row.number,
                        field: c.name.to_string(),
                        reason: format!("row {}, field '{}': {reason}", row.number, c.name),
                        raw: raw_json(&records.header, &row.values),
                    });
                    continue 'rows;
                }
            }
        }
        if let (Some(known), true) = (known_accounts, spec.references_account)
            && let Some(Value::Str(account)) = spec
                .columns
                .iter()
                .position(|c| c.name == "account_id")
                .map(|i| &values[i])
            && !known.contains(account)
        {
            rejected.push(Rejected {
                origin: records.origin.clone(),
                row: row.number,
                field: "account_id".into(),
                reason: format!(
                    "row {}, field 'account_id': unknown account '{account}' (not in accounts)",
                    row.number
                ),
                raw: raw_json(&records.header, &row.values),
            });
            continue;
        }
        let attributes = if spec.keeps_attributes {
            let obj: serde_json::Map<String, serde_json::Value> = mapping
                .unmapped
                .iter()
                .filter_map(|i| {
                    let v = row.values.get(*i)?.as_deref()?.trim();
                    (!v.is_empty()).then(|| {
                        (
                            records.header[*i].trim_start_matches('\u{feff}').to_string(),
                            serde_json::Value::String(v.to_string()),
                        )
                    })
                })
                .collect();
            (!obj.is_empty()).then(|| serde_json::Value::Object(obj).to_string())
        } else {
            None
        };
        builder.push(values, attributes);
    }
    rejected
}

/// Why a value breaks its rule, if it does.
fn broken(rule: &Rule, v: &Value, now: DateTime<Utc>) -> Option<String> {
    let number = match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    if let Some(x) = number {
        if let Some(min) = rule.min.filter(|m| x < *m) {
            return Some(format!("{x} is below the minimum {min}"));
        }
        if let Some(max) = rule.max.filter(|m| x > *m) {
            return Some(format!("{x} is above the maximum {max}"));
        }
    }
    let day = match v {
        Value::Date(d) => Some(*d),
        Value::Ts(t) => Some(t.date_naive()),
        _ => None,
    };
    if let (Some(d), Some(days)) = (day, rule.future_days) {
        let ahead = (d - now.date_naive()).num_days();
        if ahead > days {
            return Some(format!(
                "{d} is {ahead} days after the day it was loaded (at most {days}: it cannot have happened yet)"
            ));
        }
    }
    None
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::schema::{ACCOUNTS, USAGE_EVENTS};

    fn rec(header: &[&str], rows: &[&[&str]]) -> RawRecords {
        RawRecords {
            origin: "file:///x/usage.csv".into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            meetings: false,
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, r)| RawRow {
                    number: i + 1,
                    values: r.iter().map(|s| Some(s.to_string())).collect(),
                    error: None,
                })
                .collect(),
        }
    }

    #[test]
    fn casts_good_rows_and_rejects_bad_ones_with_reasons() {
        let r = rec(
            &["Event ID", "group_id", "User ID", "event", "timestamp", "count"],
            &[
                &["e1", "a1", "u1", "login", "2026-01-02T10:00:00Z", "2"],
                &["e2", "a1", "u1", "login", "yesterday", "1"],
                &["", "a1", "u1", "login", "2026-01-02", "1"],
                &["e4", "a2", "", "export", "1767348000", ""],
            ],
        );
        let m = Mapping::resolve(&USAGE_EVENTS, &r.header, &TableMapping::default(), &r.origin).unwrap();
        let mut b = BatchBuilder::new(&USAGE_EVENTS);
        let rej = cast_records(&USAGE_EVENTS, &r, &m, &TableMapping::default(), None, &mut b);
        assert_eq!(b.len(), 2);
        assert_eq!(rej.len(), 2);
        assert_eq!(
            rej[0].reason,
            "row 2, field 'event_time': expected a timestamp (RFC 3339, e.g. 2026-01-31T09:30:00Z), found 'yesterday'"
        );
        assert_eq!(rej[1].reason, "row 3, field 'event_id': required but empty");
        assert!(rej[1].raw.contains("\"group_id\":\"a1\""));
        let batch = b.finish_data().unwrap();
        assert_eq!(batch.num_rows(), 2);
    }

    #[test]
    fn values_that_cannot_be_right_are_quarantined_by_rule() {
        use crate::lake::schema::SUBSCRIPTIONS;
        let r = rec(
            &["subscription_id", "account_id", "mrr", "seats", "start_date"],
            &[
                &["s1", "a1", "100", "5", "2026-01-01"],
                &["s2", "a1", "-5", "5", "2026-01-01"],
                &["s3", "a1", "100", "-1", "2026-01-01"],
            ],
        );
        let m = Mapping::resolve(&SUBSCRIPTIONS, &r.header, &TableMapping::default(), &r.origin).unwrap();
        let mut b = BatchBuilder::new(&SUBSCRIPTIONS);
        let bad = cast_records(&SUBSCRIPTIONS, &r, &m, &TableMapping::default(), None, &mut b);
        assert_eq!(b.len(), 1);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].field, "mrr");
        assert!(
            bad[0].reason.contains(
                "row 2, field 'mrr': -5 is below the minimum 0 (a rule of [ingest.tables.subscriptions.rules]"
            ),
            "{}",
            bad[0].reason
        );
        assert_eq!(bad[1].field, "seats");
        // `mrr = {}` turns the built-in rule off; a rule of one's own replaces it
        let cfg: TableMapping = toml::from_str("[rules]\nmrr = {}\nseats = { min = 0, max = 3 }\n").unwrap();
        let mut b = BatchBuilder::new(&SUBSCRIPTIONS);
        let bad = cast_records(&SUBSCRIPTIONS, &r, &m, &cfg, None, &mut b);
        assert_eq!((b.len(), bad.len()), (0, 3));
        let reasons: Vec<&str> = bad.iter().map(|r| r.reason.as_str()).collect();
        assert!(
            reasons[0].contains("5 is above the maximum 3")
                && reasons[1].contains("5 is above the maximum 3")
        );
        assert!(reasons[2].contains("-1 is below the minimum 0"), "{reasons:?}");
        // events cannot have happened years from now
        let future = (Utc::now() + chrono::Duration::days(400))
            .format("%Y-%m-%dT10:00:00Z")
            .to_string();
        let soon = (Utc::now() + chrono::Duration::days(1))
            .format("%Y-%m-%dT10:00:00Z")
            .to_string();
        let r = rec(
            &["event_id", "account_id", "event_type", "event_time"],
            &[&["e1", "a1", "login", &future], &["e2", "a1", "login", &soon]],
        );
        let m = Mapping::resolve(&USAGE_EVENTS, &r.header, &TableMapping::default(), &r.origin).unwrap();
        let mut b = BatchBuilder::new(&USAGE_EVENTS);
        let bad = cast_records(&USAGE_EVENTS, &r, &m, &TableMapping::default(), None, &mut b);
        assert_eq!((b.len(), bad.len()), (1, 1));
        assert!(
            bad[0]
                .reason
                .contains("days after the day it was loaded (at most 2"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn missing_required_column_names_file_and_columns() {
        let r = rec(&["id", "name"], &[]);
        let e = Mapping::resolve(&USAGE_EVENTS, &r.header, &TableMapping::default(), &r.origin).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("file:///x/usage.csv"), "{msg}");
        assert!(msg.contains("'account_id'"), "{msg}");
        assert!(msg.contains("found: id, name"), "{msg}");
    }

    #[test]
    fn unmapped_fields_become_attributes() {
        let r = rec(
            &["account_id", "Name", "NPS Owner", "health_flag"],
            &[&["a1", "Acme", "Kim", "ok"]],
        );
        let m = Mapping::resolve(&ACCOUNTS, &r.header, &TableMapping::default(), &r.origin).unwrap();
        let mut b = BatchBuilder::new(&ACCOUNTS);
        assert!(cast_records(&ACCOUNTS, &r, &m, &TableMapping::default(), None, &mut b).is_empty());
        let batch = b.finish_table("test", "run", Utc::now()).unwrap();
        let attrs = deltalake::arrow::util::display::array_value_to_string(
            batch.column_by_name("attributes").unwrap(),
            0,
        )
        .unwrap();
        assert_eq!(attrs, r#"{"NPS Owner":"Kim","health_flag":"ok"}"#);
    }

    #[test]
    fn configured_date_formats_value_maps_and_constants() {
        let r = rec(
            &["id", "Tier", "Since"],
            &[
                &["a1", "Small Business", "03/15/2025"],
                &["a2", "enterprise", "15.03.2025"],
                &["a3", "SMB", "2025-03-15"],
            ],
        );
        let cfg: TableMapping = toml::from_str(
            r#"
            columns = { segment = "Tier", contract_start = "Since" }
            date_formats = ["%m/%d/%Y"]
            constants = { plan = "standard" }
            [values.segment]
            "small business" = "SMB"
            "Enterprise" = "Enterprise"
            "#,
        )
        .unwrap();
        let m = Mapping::resolve(&ACCOUNTS, &r.header, &cfg, &r.origin).unwrap();
        let mut b = BatchBuilder::new(&ACCOUNTS);
        let rej = cast_records(&ACCOUNTS, &r, &m, &cfg, None, &mut b);
        assert_eq!(rej.len(), 1);
        assert_eq!(
            rej[0].reason,
            "row 2, field 'contract_start': expected a date (YYYY-MM-DD), found '15.03.2025'"
        );
        let batch = b.finish_data().unwrap();
        let text =
            deltalake::arrow::util::pretty::pretty_format_batches(&[batch.project(&[0, 3, 4, 7]).unwrap()])
                .unwrap()
                .to_string();
        assert_eq!(
            text,
            "+------------+---------+----------+----------------+\n\
             | account_id | segment | plan     | contract_start |\n\
             +------------+---------+----------+----------------+\n\
             | a1         | SMB     | standard | 2025-03-15     |\n\
             | a3         | SMB     | standard | 2025-03-15     |\n\
             +------------+---------+----------+----------------+"
        );
    }

    #[test]
    fn values_outside_the_allowed_list_are_rejected_after_mapping() {
        let r = rec(
            &["id", "Tier"],
            &[&["a1", "Small Business"], &["a2", "Gold"], &["a3", "enterprise"]],
        );
        let cfg: TableMapping = toml::from_str(
            r#"
            columns = { segment = "Tier" }
            allowed = { segment = ["SMB", "Enterprise"] }
            values.segment = { "small business" = "SMB" }
            "#,
        )
        .unwrap();
        let m = Mapping::resolve(&ACCOUNTS, &r.header, &cfg, &r.origin).unwrap();
        let mut b = BatchBuilder::new(&ACCOUNTS);
        let rej = cast_records(&ACCOUNTS, &r, &m, &cfg, None, &mut b);
        assert_eq!(b.len(), 2);
        assert_eq!(
            rej.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(),
            ["row 2, field 'segment': 'Gold' is not one of the allowed values (SMB, Enterprise)"]
        );
    }

    #[test]
    fn a_constant_stands_in_for_a_missing_required_column() {
        let r = rec(
            &["event_id", "account_id", "time"],
            &[&["e1", "a1", "2026-01-01"]],
        );
        let cfg: TableMapping = toml::from_str("constants = { event_type = \"page_view\" }").unwrap();
        let m = Mapping::resolve(&USAGE_EVENTS, &r.header, &cfg, &r.origin).unwrap();
        let mut b = BatchBuilder::new(&USAGE_EVENTS);
        assert!(cast_records(&USAGE_EVENTS, &r, &m, &cfg, None, &mut b).is_empty());
        assert_eq!(b.len(), 1);
    }
}
