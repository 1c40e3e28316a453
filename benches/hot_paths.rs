//! Micro-benchmarks of the hot paths: casting and validating a source batch, generating
//! accounts, and the ranking metrics over a large score vector.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cslake_pipeline::ingest::batch::SourceBatch;
use cslake_pipeline::ingest::cast::{Stamp, cast_batch};
use cslake_pipeline::ingest::records::{RawRecords, RawRow};
use cslake_pipeline::lake::schema::USAGE_EVENTS;
use cslake_pipeline::settings::TableMapping;

fn records(n: usize) -> SourceBatch {
    let header = [
        "event_id",
        "account_id",
        "contact_id",
        "event_type",
        "event_time",
        "quantity",
    ];
    SourceBatch::from_records(RawRecords {
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
    })
    .expect("batch")
}

fn cast(c: &mut Criterion) {
    let r = records(50_000);
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(r.num_rows() as u64));
    g.bench_function("cast_usage_events_50k", |b| {
        b.iter(|| {
            let stamp = Stamp {
                source: "bench",
                run_id: "run",
                ingested_at: chrono::Utc::now(),
            };
            black_box(
                cast_batch(
                    &USAGE_EVENTS,
                    black_box(&r),
                    &TableMapping::default(),
                    None,
                    stamp,
                    &mut cslake_pipeline::ingest::event_ids::EventIds::default(),
                )
                .unwrap(),
            )
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
