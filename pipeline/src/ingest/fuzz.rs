//! Hostile input, in bounded time: seeded mutations of valid exports (CSV, NDJSON, Parquet,
//! iCalendar) and of `cslake.toml` go through the readers, the mapping and the casts exactly as
//! ingest runs them. Nothing may panic: bad input is an error or a quarantined row. Each format
//! runs for `CSLAKE_FUZZ_SECONDS` (default 2; CI sets more), every case reproducible from the seed
//! printed with a failure. cargo-fuzz needs a nightly toolchain, which these machines do not have;
//! this is the same idea (mutating valid inputs, catching panics) on stable.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::ingest::batch::SourceBatch;
use crate::ingest::calendar::read_ics;
use crate::ingest::cast::{Stamp, cast_batch};
use crate::ingest::read::{Format, all_batches};
use crate::lake::schema::{TableSpec, core_table};
use crate::settings::{FileConfig, TableMapping};

/// xorshift64*: small, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What exports get wrong, and what attackers try.
const TOKENS: &[&str] = &[
    "€",
    "\"",
    "\"\"",
    "\r\n",
    "\n",
    "\u{feff}",
    "\0",
    ",",
    ";",
    "{",
    "}",
    "[",
    "]",
    ":",
    "\\",
    "99999999999999999999",
    "-9223372036854775808",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "9999-99-99",
    "0000-00-00",
    "+275760-09-13",
    "2026-02-30",
    "20261302T250000Z",
    "INTERVAL=100000000",
    "BYDAY=€",
    "BYDAY=99999999999MO",
    "BYMONTHDAY=-9223372036854775808",
    "FREQ=SECONDLY",
    "COUNT=18446744073709551615",
    "UNTIL=99991231T235959Z",
    "TZID=Mars/Olympus",
    " ",
    "\t",
    "'",
    "{account_id}",
    "null",
    "true",
    "-0",
    "0x10",
    "１２３",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            2 if !b.is_empty() => {
                let end = (at + rng.below(40)).min(b.len());
                b.drain(at.min(end)..end);
            }
            3 if !b.is_empty() => {
                let end = (at + rng.below(200)).min(b.len());
                let piece: Vec<u8> = b[at.min(end)..end].to_vec();
                b.splice(at..at, piece);
            }
            4 => b.truncate(at),
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let end = (at + t.len()).min(b.len());
                b.splice(at..end, t.iter().copied());
            }
        }
    }
    b
}

/// The mapping and casts ingest runs on a reader's batches.
fn land(spec: &'static TableSpec, batches: Vec<SourceBatch>, config: &TableMapping) {
    let stamp = Stamp {
        source: "fuzz",
        run_id: "run",
        ingested_at: chrono::Utc::now(),
    };
    for b in batches {
        if let Ok(b) = b.with_templates(config) {
            let _ = cast_batch(
                spec,
                &b,
                config,
                None,
                stamp,
                &mut crate::ingest::event_ids::EventIds::default(),
            );
        }
    }
}

/// Runs `case` on mutations of `seed` for the time budget; a panic fails with the seed.
fn hammer(name: &str, seed: &[u8], case: impl Fn(&[u8])) {
    let budget = std::env::var("CSLAKE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(2), Duration::from_secs_f64);
    let start = Instant::now();
    let mut n = 0u64;
    // the hook would print every caught panic: keep the output for the one that fails
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while start.elapsed() < budget {
        n += 1;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n);
        let input = mutate(&mut rng, seed);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| case(&input))) {
            std::panic::set_hook(hook);
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            let path = std::env::temp_dir().join(format!("cslake-fuzz-{name}-{n}"));
            let _ = std::fs::write(&path, &input);
            panic!(
                "{name}: case {n} panicked ({why}); input saved to {}",
                path.display()
            );
        }
    }
    std::panic::set_hook(hook);
    assert!(n > 0);
}

const CSV: &str = "account_id,name,segment,plan,seats,mrr,contract_start,contract_end,created_date\n\
ACC-1,Acme,SMB,growth,10,450.5,2025-01-01,2026-01-01,2024-12-01\n\
ACC-2,\"Bolt, Inc\",Enterprise,enterprise,250,9000,2025-03-01,,2025-02-01T10:00:00Z\n\
ACC-3,Cedar,Mid-Market,starter,3,75,01/02/2025,2026-02-01,2025-01-15\n";

const EVENTS: &str = "{\"event_id\":\"e1\",\"account_id\":\"ACC-1\",\"event_type\":\"login\",\"event_time\":\"2026-03-01T10:00:00Z\",\"quantity\":1}\n\
{\"event_id\":\"e2\",\"account_id\":\"ACC-2\",\"event_type\":\"export\",\"event_time\":1772000000,\"context\":{\"page\":\"/x\"}}\n\
{\"event_id\":\"e3\",\"account_id\":\"ACC-1\",\"event_type\":\"login\",\"event_time\":\"2026-03-02\",\"quantity\":\"2.5\"}\n";

const ICS: &str = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:e1@cal\r\nDTSTART;TZID=Europe/Berlin:20260302T090000\r\n\
RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;COUNT=10\r\nEXDATE;TZID=Europe/Berlin:20260305T090000\r\nSUMMARY:QBR\\, Acme\r\n\
ORGANIZER:mailto:csm@vendor.test\r\nATTENDEE;CN=Ann:mailto:ann@acme.test\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:e2@cal\r\n\
DTSTART;VALUE=DATE:20260310\r\nRRULE:FREQ=MONTHLY;BYDAY=-1FR;UNTIL=20261231T000000Z\r\nSUMMARY:Monthly\r\n\
ATTENDEE:mailto:bob@bolt.test\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

fn mapping() -> TableMapping {
    TableMapping {
        date_formats: vec!["%m/%d/%Y".into()],
        columns: [("account_id".to_string(), "{account_id}".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

#[test]
fn csv_exports_never_panic() {
    let spec = core_table("accounts").unwrap();
    hammer("csv", CSV.as_bytes(), |b| {
        if let Ok(r) = all_batches(b, Format::Csv { delimiter: b',' }, "fuzz.csv") {
            land(spec, r, &mapping());
        }
    });
}

#[test]
fn ndjson_exports_never_panic() {
    let spec = core_table("usage_events").unwrap();
    hammer("ndjson", EVENTS.as_bytes(), |b| {
        if let Ok(r) = all_batches(b, Format::Json, "fuzz.ndjson") {
            land(spec, r, &TableMapping::default());
        }
    });
}

#[test]
fn calendar_files_never_panic() {
    let spec = core_table("interactions").unwrap();
    hammer("ics", ICS.as_bytes(), |b| {
        let mut r = read_ics(b, "fuzz.ics".into(), chrono::Utc::now().date_naive());
        // the attendee index would assign accounts; give every row one so the casts run
        r.header
            .extend(["account_id".to_string(), "contact_id".to_string()]);
        for row in &mut r.rows {
            row.values.extend([Some("ACC-1".to_string()), None]);
        }
        if let Ok(b) = SourceBatch::from_records(r) {
            land(spec, vec![b], &TableMapping::default());
        }
    });
}

/// Inputs the runs once found a panic with, kept so it stays fixed (`fuzz_corpus/`).
#[test]
fn inputs_that_once_panicked_do_not() {
    let spec = core_table("accounts").unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ingest/fuzz_corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => Format::Parquet,
            _ => Format::Csv { delimiter: b',' },
        };
        if let Ok(r) = all_batches(&bytes, format, &path.display().to_string()) {
            land(spec, r, &TableMapping::default());
        }
        n += 1;
    }
    assert!(n >= 2, "the corpus is in {}", dir.display());
}

#[test]
fn parquet_exports_never_panic() {
    let spec = core_table("accounts").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = all_batches(CSV.as_bytes(), Format::Csv { delimiter: b',' }, "seed.csv").unwrap();
    let stamp = Stamp {
        source: "seed",
        run_id: "run",
        ingested_at: chrono::Utc::now(),
    };
    let batch = cast_batch(
        spec,
        &csv[0],
        &TableMapping::default(),
        None,
        stamp,
        &mut crate::ingest::event_ids::EventIds::default(),
    )
    .unwrap()
    .unwrap()
    .batch;
    let path = dir.path().join("seed.parquet");
    let mut w =
        cslake_sinks::FileWriter::create(&path, cslake_sinks::FileFormat::Parquet, batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    let seed = std::fs::read(&path).unwrap();
    hammer("parquet", &seed, |b| {
        if let Ok(r) = all_batches(b, Format::Parquet, "fuzz.parquet") {
            land(spec, r, &TableMapping::default());
        }
    });
}

#[test]
fn configuration_files_never_panic() {
    let seed = include_str!("../../../cslake.example.toml");
    hammer("config", seed.as_bytes(), |b| {
        let Ok(text) = std::str::from_utf8(b) else { return };
        if let Ok(file) = toml::from_str::<FileConfig>(text) {
            let s = crate::Settings {
                lake: "x".into(),
                file,
                config_dir: std::path::PathBuf::new(),
                actor: "t".into(),
                memory_limit: None,
                engine: Default::default(),
            };
            if s.validate().is_ok() {
                let _ = s.lease_times();
                let _ = s.label_spec();
            }
        }
    });
}
