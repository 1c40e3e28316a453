//! Shared set-up for the benchmarks: resource usage from `/proc`, environment knobs and the
//! perf-shaped usage events (`../shared/perf/gen.py`'s shape) that `ingest.rs` and `features.rs`
//! generate.
#![allow(clippy::print_stderr)]

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

/// What one measured run used.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub wall: f64,
    pub cpu: f64,
    pub peak_mb: f64,
}

/// CPU seconds and peak resident memory (MB) of this process, from `/proc/self` (Linux; the
/// kernel counts CPU time in ticks of 1/100 s on every platform it supports here).
pub fn usage_so_far() -> (f64, f64) {
    usage_of("self")
}

/// [`usage_so_far`] of another running process (`pid`), e.g. a cluster executor.
pub fn usage_of(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the command name may hold spaces: fields count from after its closing parenthesis
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, peak_kb / 1024.0)
}

pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// A cheap, well-mixed hash of `i` (splitmix64), for deterministic columns.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub const TYPES: [&str; 8] = [
    "login",
    "view_report",
    "export",
    "api_call",
    "invite_user",
    "create_dashboard",
    "share",
    "comment",
];
pub const ACCOUNTS: u64 = 100_000;

/// Rows `lo..hi` of the events, over the year from 26 November 2025; every hundredth row
/// repeats the event before it.
pub fn events(lo: u64, hi: u64) -> RecordBatch {
    let start = chrono::NaiveDate::from_ymd_opt(2025, 11, 26)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or(0);
    events_in(lo, hi, start, 365)
}

/// Rows `lo..hi` of the events, their times spread over `days` days from `start` (µs, UTC).
pub fn events_in(lo: u64, hi: u64, start: i64, days: u64) -> RecordBatch {
    let id = |i: u64| if i % 100 == 99 { i - 1 } else { i };
    let ids = (lo..hi).map(id);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| format!("evt-{i}")),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| format!("acct-{:06}", mix(i) % ACCOUNTS)),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| format!("user-{}", mix(i * 7) % 1_000_000)),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| TYPES[(mix(i * 13) % 8) as usize]),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                ids.clone()
                    .map(|i| start + (mix(i * 31) % (days * 86_400)) as i64 * 1_000_000),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from_iter_values(
            ids.map(|i| (mix(i * 17) % 100) as f64),
        )),
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new(
            "occurred_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("value", DataType::Float64, false),
    ]));
    RecordBatch::try_new(schema, cols).expect("events batch")
}
