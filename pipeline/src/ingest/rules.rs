//! The rules a canonical column's values keep (`[ingest.tables.<table>.rules]`, else the
//! built-in ones): bounds on numbers and on how far ahead a date may be. A column is judged by its
//! extremes first ([`keeps_rule`]) and value by value only when they break a rule ([`broken`],
//! which says why).

use chrono::{DateTime, NaiveDate};
use deltalake::arrow::array::{ArrayRef, AsArray};
use deltalake::arrow::compute::{max, min};
use deltalake::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};

use crate::ingest::records::date_of;
use crate::lake::schema::{DEFAULT_RULES, RuleDefault, TableSpec};
use crate::settings::{Rule, TableMapping};

/// The check of each canonical column: the table's own rule, else the built-in one.
pub fn rules(spec: &TableSpec, config: &TableMapping) -> Vec<Option<Rule>> {
    spec.columns
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
        .collect()
}

/// Why a value breaks its rule, if it does.
pub(crate) fn broken(
    rule: &Rule,
    number: Option<f64>,
    day: Option<NaiveDate>,
    today: NaiveDate,
) -> Option<String> {
    if let Some(x) = number {
        if let Some(min) = rule.min.filter(|m| x < *m) {
            return Some(format!("{x} is below the minimum {min}"));
        }
        if let Some(max) = rule.max.filter(|m| x > *m) {
            return Some(format!("{x} is above the maximum {max}"));
        }
    }
    if let (Some(d), Some(days)) = (day, rule.future_days) {
        let ahead = (d - today).num_days();
        if ahead > days {
            return Some(format!(
                "{d} is {ahead} days after the day it was loaded (at most {days}: it cannot have happened yet)"
            ));
        }
    }
    None
}

/// Whether every value of a cast column (no nulls, nothing `cast::needs_text` flags) keeps `rule`.
/// The rules are bounds and what they bound grows with the value (a number, the day of a date or
/// an instant), so the column's least and greatest values decide; `false` sends the column
/// value by value through [`broken`], which says which rows break it and why.
pub(crate) fn keeps_rule(f: &ArrayRef, rule: &Rule, today: NaiveDate) -> bool {
    let within = |lo: f64, hi: f64| rule.min.is_none_or(|m| lo >= m) && rule.max.is_none_or(|m| hi <= m);
    let not_ahead = |last: NaiveDate| {
        rule.future_days
            .is_none_or(|days| (last - today).num_days() <= days)
    };
    match f.data_type() {
        DataType::Int64 => {
            let a = f.as_primitive::<Int64Type>();
            match (min(a), max(a)) {
                (Some(lo), Some(hi)) => within(lo as f64, hi as f64),
                _ => true,
            }
        }
        DataType::Float64 => {
            let a = f.as_primitive::<Float64Type>();
            match (min(a), max(a)) {
                (Some(lo), Some(hi)) => within(lo, hi),
                _ => true,
            }
        }
        DataType::Date32 => match max(f.as_primitive::<Date32Type>()) {
            Some(d) => date_of(d).is_some_and(not_ahead),
            None => true,
        },
        DataType::Timestamp(..) => match max(f.as_primitive::<TimestampMicrosecondType>()) {
            Some(t) => DateTime::from_timestamp_micros(t).is_some_and(|t| not_ahead(t.date_naive())),
            None => true,
        },
        DataType::Boolean => true,
        _ => false,
    }
}
