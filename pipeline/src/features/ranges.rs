//! Full rollup rebuilds in day ranges. The rollups group by account, day and event type (or
//! user): when users are many, that is nearly one group per event, and one aggregation over a
//! year of events holds every group at once. Beyond the memory budget DataFusion spills it by
//! sorting, then merges the sorted runs; on 50M events that sort and merge were half the build.
//!
//! A rollup's groups never span days, so the year can be aggregated a range of days at a time:
//! the events are read once and copied, narrowed to the columns the rollups read (the date
//! instead of the time), into uncompressed Arrow files per range in the command's spill folder
//! ([`copy_by_range`]); each rollup then aggregates range after range, each range's groups
//! fitting in memory, and streams them all into one Delta write (one commit). The ranges are
//! sized from the memory budget and the groups an event makes; when all events fit in one
//! range, the rollups read the events directly and nothing is copied.

use std::path::PathBuf;
use std::sync::Arc;

use deltalake::datafusion::arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::datasource::file_format::options::ArrowReadOptions;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::physical_plan::{SendableRecordBatchStream, execute_stream_partitioned};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use futures::{StreamExt, TryStreamExt};

use crate::lake::query::{sql, strings};
use crate::{Error, Lake, Result};

/// The columns of `usage_events` the rollups read (`sql/rollups/`).
pub const STAGED: &[&str] = &[
    "account_id",
    "event_time",
    "event_type",
    "contact_id",
    "quantity",
    "_ingested_at",
];

/// Budget one group of a rollup's aggregation plans for: its keys and sums, the hash table's
/// entry, the batches in flight, and the share of the pool the aggregation gets (the pool is
/// divided among the operators that can spill, so one aggregation holds a fraction of it). At
/// 512 bytes per event, 50M events of 1M users (a group per event) took 6 ranges whose
/// aggregations spilled, sorting every group to disk: 78 s and 3.4 GB; at 2 KB, 23 ranges, no
/// spill, 51 s and 1.9 GB (2026-12-06, 4 GB budget).
const BYTES_PER_GROUP: usize = 2048;

/// Fewer events than this in a range is not worth a pass of its own.
const MIN_EVENTS_PER_RANGE: usize = 10_000;

/// The unit of `event_time` when it is in UTC (or has no time zone).
fn utc_unit(schema: &Schema) -> Option<TimeUnit> {
    match schema.field_with_name("event_time").map(|f| f.data_type()) {
        Ok(DataType::Timestamp(unit, tz))
            if tz
                .as_deref()
                .is_none_or(|tz| matches!(tz, "UTC" | "+00:00" | "Z" | "Etc/UTC")) =>
        {
            Some(*unit)
        }
        _ => None,
    }
}

/// A number per UTC day of `event_time` (any numbering that keeps a day whole and days in
/// order does: the days themselves are the rollups' to compute). Integer arithmetic on the
/// timestamp where it is in UTC: the conversion to a date was a seventh of the copy.
fn day_number(schema: &Schema) -> String {
    let per_day: i64 = match utc_unit(schema) {
        Some(TimeUnit::Second) => 86_400,
        Some(TimeUnit::Millisecond) => 86_400_000,
        Some(TimeUnit::Microsecond) => 86_400_000_000,
        Some(TimeUnit::Nanosecond) => 86_400_000_000_000,
        None => return "CAST(CAST(event_time AS DATE) AS BIGINT)".into(),
    };
    // floor division, before 1970 too
    let t = "arrow_cast(event_time, 'Int64')";
    format!(
        "(CASE WHEN {t} >= 0 THEN {t} / {per_day} ELSE ({t} - {}) / {per_day} END)",
        per_day - 1
    )
}

/// How a staged column is copied. String views would carry their whole source buffers into
/// every file they are split into: they are copied as plain strings. A UTC `event_time` loses
/// its zone: the same instants, whose date the rollups then take without a time-zone lookup
/// per row (a tenth of each rollup's time).
fn staged_column(schema: &Schema, c: &str) -> String {
    match schema.field_with_name(c).map(|f| f.data_type()) {
        Ok(DataType::Utf8View) => format!("arrow_cast({c}, 'Utf8') AS {c}"),
        Ok(DataType::Timestamp(_, Some(_))) if c == "event_time" => match utc_unit(schema) {
            Some(unit) => format!("arrow_cast({c}, 'Timestamp({unit:?}, None)') AS {c}"),
            None => c.to_string(),
        },
        _ => c.to_string(),
    }
}

/// The events of `source`, copied by day range, while the rollups are written.
pub struct DayRanges {
    /// Removed on drop; inside the command's spill folder, so a killed run's copy goes with it.
    dir: tempfile::TempDir,
    /// The ranges' folders, oldest first.
    ranges: Vec<PathBuf>,
    /// The copy holds `event_date` instead of `event_time`.
    date_only: bool,
}

impl DayRanges {
    /// Copies the events of the registered table `source` into day ranges sized for the lake's
    /// memory budget and for the groups `rollups` make of them (SELECTs over `source` with a
    /// `{{where}}` placeholder); `None` when they fit in one.
    pub async fn stage(
        lake: &Lake,
        ctx: &SessionContext,
        source: &str,
        rollups: &[String],
    ) -> Result<Option<Self>> {
        let Some(limit) = lake.memory_limit() else {
            return Ok(None);
        };
        let schema = ctx.table(source).await?.schema().as_arrow().clone();
        let day = day_number(&schema);
        let q = format!(
            "SELECT CAST(COUNT(*) AS VARCHAR) AS n, CAST(MIN({day}) AS VARCHAR) AS lo, \
             CAST(MAX({day}) AS VARCHAR) AS hi FROM {source}"
        );
        let batches = sql(ctx, &q).await?;
        let (Some(n), Some(lo), Some(hi)) = (
            first_number(&batches, "n")?,
            first_number(&batches, "lo")?,
            first_number(&batches, "hi")?,
        ) else {
            return Ok(None);
        };
        let n = usize::try_from(n).unwrap_or(0);
        let ratio = groups_per_event(ctx, source, &day, hi, rollups).await?;
        let per_range =
            ((limit as f64 / (BYTES_PER_GROUP as f64 * ratio)) as usize).max(MIN_EVENTS_PER_RANGE);
        let wanted = n.div_ceil(per_range);
        if wanted < 2 {
            return Ok(None);
        }
        let days = hi - lo + 1;
        if days < 2 {
            return Ok(None);
        }
        let wanted = i64::try_from(wanted).unwrap_or(i64::MAX);
        let span = ((days + wanted - 1) / wanted).max(1);

        let dir = tempfile::Builder::new()
            .prefix("rollup-ranges-")
            .tempdir_in(lake.spill_dir()?.path())
            .map_err(|e| Error::Job(format!("rollup ranges in the spill folder: {e}")))?;
        // the rollups take the date of an event, nothing else of its time: the date is computed
        // once here, and the time not copied
        let date_only = rollups
            .iter()
            .all(|q| !q.replace(EVENT_DATE, "").contains("event_time"));
        let columns = STAGED
            .iter()
            .map(|c| match *c {
                "event_time" if date_only => event_date(&schema, &day),
                c => staged_column(&schema, c),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let count = usize::try_from((hi - lo) / span + 1).unwrap_or(1);
        let ranges: Vec<PathBuf> = (0..count)
            .map(|i| dir.path().join(format!("day_range={i}")))
            .collect();
        for r in &ranges {
            std::fs::create_dir_all(r)
                .map_err(|e| Error::Job(format!("rollup range {}: {e}", r.display())))?;
        }
        // events without a time (none land today) go with the first range
        let select =
            format!("SELECT {columns}, COALESCE(({day} - ({lo})) / {span}, 0) AS day_range FROM {source}");
        let plan = ctx.sql(&select).await?.create_physical_plan().await?;
        let mut copies = tokio::task::JoinSet::new();
        for (part, stream) in execute_stream_partitioned(plan, ctx.task_ctx())?
            .into_iter()
            .enumerate()
        {
            copies.spawn(copy_by_range(stream, ranges.clone(), part));
        }
        while let Some(done) = copies.join_next().await {
            done.map_err(|e| Error::Job(format!("copying events by day range: {e}")))??;
        }
        // days without events leave a range empty: nothing to aggregate there
        let ranges: Vec<PathBuf> = ranges
            .into_iter()
            .filter(|r| std::fs::read_dir(r).is_ok_and(|mut files| files.next().is_some()))
            .collect();
        tracing::info!(
            events = n,
            groups_per_event = ratio,
            ranges = ranges.len(),
            days_each = span,
            "rollup events copied by day range"
        );
        Ok(Some(Self {
            dir,
            ranges,
            date_only,
        }))
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// `query` (a SELECT over `rollup_source`) over every range in turn, as one DataFrame: a
    /// stream that plans and runs the next range when the previous one is drained.
    pub async fn each(&self, ctx: &SessionContext, query: &str) -> Result<DataFrame> {
        let mut queries = Vec::with_capacity(self.ranges.len());
        for (i, path) in self.ranges.iter().enumerate() {
            let name = format!("rollup_range_{i}");
            ctx.deregister_table(name.as_str())?;
            ctx.register_arrow(
                &name,
                &format!("{}/", path.display()),
                ArrowReadOptions::default(),
            )
            .await?;
            let query = if self.date_only {
                query.replace(EVENT_DATE, "event_date")
            } else {
                query.to_string()
            };
            queries.push(query.replace("rollup_source", &name));
        }
        let first = queries
            .first()
            .ok_or_else(|| Error::Job(format!("no rollup ranges in {}", self.dir.path().display())))?;
        let schema: SchemaRef = Arc::new(ctx.sql(first).await?.schema().as_arrow().clone());
        let stream = Arc::new(InTurn {
            ctx: ctx.clone(),
            queries,
            schema: schema.clone(),
        });
        let table = StreamingTable::try_new(schema, vec![stream])?;
        Ok(ctx.read_table(Arc::new(table))?)
    }
}

/// How the rollups take an event's date (`sql/rollups/`).
const EVENT_DATE: &str = "CAST(event_time AS DATE)";

/// `event_date` for the copy: the day number as a date where `event_time` is in UTC (the same
/// date as the cast, without a calendar computation per row), else the cast itself.
fn event_date(schema: &Schema, day: &str) -> String {
    match utc_unit(schema) {
        Some(_) => format!("arrow_cast(arrow_cast({day}, 'Int32'), 'Date32') AS event_date"),
        None => format!("{EVENT_DATE} AS event_date"),
    }
}

/// Writes one stream of events with their `day_range` into the ranges' folders: one Arrow IPC
/// file per range and stream, uncompressed (the copy lives a few seconds in the spill folder;
/// compressing it cost more than writing it), in batches of the session's size.
///
/// Hand-written rather than `COPY ... PARTITIONED BY`: DataFusion's partitioned Arrow sink
/// compresses with LZ4 and demultiplexes on one task, which made the copy a quarter of a
/// rebuild; here each stream sorts its batch's rows by range once (a counting sort) and
/// appends each range's slice.
async fn copy_by_range(
    mut stream: SendableRecordBatchStream,
    ranges: Vec<PathBuf>,
    part: usize,
) -> Result<()> {
    use deltalake::datafusion::arrow::array::{AsArray, UInt32Array};
    use deltalake::datafusion::arrow::compute::{BatchCoalescer, take_record_batch};
    use deltalake::datafusion::arrow::datatypes::Int64Type;
    use deltalake::datafusion::arrow::ipc::writer::FileWriter;

    const BATCH: usize = 8192;
    let schema = {
        let s = stream.schema();
        let keep: Vec<usize> = (0..s.fields().len() - 1).collect();
        Arc::new(s.project(&keep)?)
    };
    type Out = (FileWriter<std::io::BufWriter<std::fs::File>>, BatchCoalescer);
    let mut outs: Vec<Option<Out>> = (0..ranges.len()).map(|_| None).collect();
    let io = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        Error::Job(format!(
            "copying events by day range into {}: {e}",
            path.display()
        ))
    };
    let last = ranges.len() - 1;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        // an Int64 by construction; cast all the same, so that no expression's type can panic here
        let day_range = deltalake::datafusion::arrow::compute::cast(
            batch.column(batch.num_columns() - 1),
            &DataType::Int64,
        )?;
        let day_range = day_range.as_primitive::<Int64Type>();
        let range_of = |i: usize| usize::try_from(day_range.value(i)).unwrap_or(0).min(last);
        // a counting sort of the rows by range
        let mut starts = vec![0u32; ranges.len() + 1];
        for i in 0..batch.num_rows() {
            starts[range_of(i) + 1] += 1;
        }
        for r in 0..ranges.len() {
            starts[r + 1] += starts[r];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; batch.num_rows()];
        for i in 0..batch.num_rows() {
            let r = range_of(i);
            order[next[r] as usize] = i as u32;
            next[r] += 1;
        }
        let sorted = take_record_batch(
            &batch.project(&(0..schema.fields().len()).collect::<Vec<_>>())?,
            &UInt32Array::from(order),
        )?;
        for r in 0..ranges.len() {
            let (from, to) = (starts[r] as usize, starts[r + 1] as usize);
            if from == to {
                continue;
            }
            let out = match &mut outs[r] {
                Some(out) => out,
                slot => {
                    let path = ranges[r].join(format!("part-{part}.arrow"));
                    let file = std::fs::File::create(&path).map_err(|e| io(&path, &e))?;
                    let writer = FileWriter::try_new(std::io::BufWriter::new(file), &schema)?;
                    slot.insert((writer, BatchCoalescer::new(schema.clone(), BATCH)))
                }
            };
            out.1.push_batch(sorted.slice(from, to - from))?;
            while let Some(b) = out.1.next_completed_batch() {
                out.0.write(&b)?;
            }
        }
    }
    for (writer, mut rest) in outs.into_iter().flatten() {
        let mut writer = writer;
        rest.finish_buffered_batch()?;
        while let Some(b) = rest.next_completed_batch() {
            writer.write(&b)?;
        }
        writer.finish()?;
    }
    Ok(())
}

/// The first row's value of `col` (a number cast to text), if any.
fn first_number(
    batches: &[deltalake::datafusion::arrow::array::RecordBatch],
    col: &str,
) -> Result<Option<i64>> {
    Ok(match batches.first() {
        Some(b) => strings(b, col)?
            .into_iter()
            .next()
            .flatten()
            .and_then(|v| v.parse().ok()),
        None => None,
    })
}

/// How many rollup groups an event makes, at most over the rollups, measured on the newest day
/// (`day` = `newest`): near 1 where users are many and each is active a few times a day, far
/// below where accounts repeat the same event types all day. A range then holds as many events
/// as the budget holds groups of them.
async fn groups_per_event(
    ctx: &SessionContext,
    source: &str,
    day: &str,
    newest: i64,
    rollups: &[String],
) -> Result<f64> {
    let on_day = format!("WHERE {day} = {newest}");
    let events = sql(
        ctx,
        &format!("SELECT CAST(COUNT(*) AS VARCHAR) AS n FROM {source} {on_day}"),
    )
    .await?;
    let Some(events) = first_number(&events, "n")?.filter(|e| *e > 0) else {
        return Ok(1.0);
    };
    let mut ratio: f64 = 0.0;
    for rollup in rollups {
        let q = format!(
            "SELECT CAST(COUNT(*) AS VARCHAR) AS n FROM ({})",
            rollup.replace("{{where}}", &on_day)
        );
        let groups = first_number(&sql(ctx, &q).await?, "n")?.unwrap_or(events);
        ratio = ratio.max(groups as f64 / events as f64);
    }
    // a day is a sample: never plan for fewer than one group per 20 events
    Ok(ratio.clamp(0.05, 1.0))
}

/// Runs its queries one after the other as one partition.
struct InTurn {
    ctx: SessionContext,
    queries: Vec<String>,
    schema: SchemaRef,
}

impl std::fmt::Debug for InTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InTurn").field("queries", &self.queries).finish()
    }
}

impl PartitionStream for InTurn {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let ctx = self.ctx.clone();
        let batches = futures::stream::iter(self.queries.clone())
            .then(move |q| {
                let ctx = ctx.clone();
                async move { ctx.sql(&q).await?.execute_stream().await }
            })
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}
