//! Narrowing a table to some days by its timestamp column, in a form the Parquet scan can prune
//! files with: ranges of consecutive days as `column >= start AND column < end`, with literals of
//! the column's own type (a cast of the column would hide it from the file statistics).

use chrono::{Duration, NaiveDate};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::prelude::{DataFrame, Expr, col, lit};

use crate::{Error, Result};

/// `df` restricted to the rows whose `column` (a timestamp) falls on one of `days` (UTC days).
pub fn on_days(df: DataFrame, column: &str, days: &[NaiveDate]) -> Result<DataFrame> {
    let field = df.schema().field_with_unqualified_name(column)?.clone();
    let DataType::Timestamp(unit, tz) = field.data_type().clone() else {
        return Err(Error::View {
            view: "rollup".into(),
            path: String::new(),
            message: format!("{column} is {}, not a timestamp", field.data_type()),
        });
    };
    let at = |d: NaiveDate| -> Expr {
        let t = d.and_time(chrono::NaiveTime::MIN).and_utc();
        lit(match unit {
            TimeUnit::Second => ScalarValue::TimestampSecond(Some(t.timestamp()), tz.clone()),
            TimeUnit::Millisecond => {
                ScalarValue::TimestampMillisecond(Some(t.timestamp_millis()), tz.clone())
            }
            TimeUnit::Microsecond => {
                ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), tz.clone())
            }
            TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(t.timestamp_nanos_opt(), tz.clone()),
        })
    };
    let mut sorted = days.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut ranges: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for d in sorted {
        match ranges.last_mut() {
            Some((_, end)) if *end == d => *end = d + Duration::days(1),
            _ => ranges.push((d, d + Duration::days(1))),
        }
    }
    let filter = ranges
        .into_iter()
        .map(|(from, to)| col(column).gt_eq(at(from)).and(col(column).lt(at(to))))
        .reduce(Expr::or)
        .unwrap_or(lit(false));
    Ok(df.filter(filter)?)
}
