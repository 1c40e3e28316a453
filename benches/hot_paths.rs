//! Micro-benchmarks of the per-row hot paths: parsing and validating raw records, generating
//! accounts, and the ranking metrics over a large score vector.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cslake_pipeline::ingest::records::{BatchBuilder, Mapping, RawRecords, RawRow, cast_records};
use cslake_pipeline::lake::schema::USAGE_EVENTS;
use cslake_pipeline::settings::TableMapping;

fn records(n: usize) -> RawRecords {
    let header = [
        "event_id",
        "account_id",
        "contact_id",
        "event_type",
        "event_time",
        "quantity",
    ];
    RawRecords {
        origin: "bench".into(),
        header: header.iter().map(|s| s.to_string()).collect(),
        rows: (0..n)
            .map(|i| RawRow {
                number: i + 1,
                values: vec![
                    Some(format!("E{i}")),
                    Some(format!("ACC-{:06}", i % 1000)),
                    Some(format!("U{}", i % 7)),
                    Some("login".into()),
                    Some(format!("2026-01-{:02}T10:00:00Z", 1 + i % 28)),
                    Some("2".into()),
                ],
                error: None,
            })
            .collect(),
        meetings: false,
    }
}

fn cast(c: &mut Criterion) {
    let r = records(50_000);
    let m = Mapping::resolve(&USAGE_EVENTS, &r.header, &TableMapping::default(), "bench").unwrap();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(r.rows.len() as u64));
    g.bench_function("cast_usage_events_50k", |b| {
        b.iter(|| {
            let mut builder = BatchBuilder::new(&USAGE_EVENTS);
            let rejected = cast_records(
                &USAGE_EVENTS,
                black_box(&r),
                &m,
                &TableMapping::default(),
                None,
                &mut builder,
            );
            black_box((builder.finish_data().unwrap(), rejected))
        });
    });
    g.finish();
}

fn metrics(c: &mut Criterion) {
    let n = 100_000;
    let p: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 / 1000.0).collect();
    let y: Vec<f32> = (0..n)
        .map(|i| if (i * 31) % 17 == 0 { 1.0 } else { 0.0 })
        .collect();
    c.bench_function("metrics_100k", |b| {
        b.iter(|| black_box(cslake_models::Metrics::compute(&p, &y, 0.5)))
    });
}

criterion_group!(benches, cast, metrics);
criterion_main!(benches);
