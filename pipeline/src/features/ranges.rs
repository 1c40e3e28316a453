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
//!
//! Within a range the events are split by account into as many buckets as the session has
//! partitions: a rollup's groups are an account's, so each bucket is aggregated on its own in
//! one pass, the buckets side by side, where a parallel aggregation would aggregate twice and
//! repartition every group between the passes.

use std::path::PathBuf;
use std::sync::Arc;

use deltalake::datafusion::arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::datasource::file_format::options::ArrowReadOptions;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::physical_plan::stream::{RecordBatchReceiverStream, RecordBatchStreamAdapter};
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

/// Events the groups an event makes are measured on.
const SAMPLE: usize = 1 << 18;

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
    /// Each range's events are split by account into this many buckets (`bucket=B` folders),
    /// aggregated side by side, each in one pass without a repartition (see [`Self::each`]).
    buckets: usize,
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
        let ratio = groups_per_event(ctx, source, rollups).await?;
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
        // every rollup's groups are an account's: an account's events can go to one bucket
        let buckets = if rollups.iter().all(|q| groups_by_account(q)) {
            ctx.state().config().target_partitions().max(1)
        } else {
            1
        };
        let plan = ctx.sql(&select).await?.create_physical_plan().await?;
        let mut copies = tokio::task::JoinSet::new();
        for (part, stream) in execute_stream_partitioned(plan, ctx.task_ctx())?
            .into_iter()
            .enumerate()
        {
            copies.spawn(copy_by_range(stream, ranges.clone(), buckets, part));
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
            buckets,
            "rollup events copied by day range"
        );
        Ok(Some(Self {
            dir,
            ranges,
            date_only,
            buckets,
        }))
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// `query` (a SELECT over `rollup_source`) over every range in turn, as one DataFrame: a
    /// stream that plans and runs the next range when the previous one is drained. A range in
    /// buckets runs one query per bucket, side by side, each on one partition: the groups of
    /// different buckets are different, so each bucket is aggregated in a single pass, without
    /// the partial aggregation and the repartition by group between two passes that a parallel
    /// aggregation otherwise makes (a sixth of a rebuild's CPU when nearly every event is a
    /// group of its own).
    pub async fn each(&self, ctx: &SessionContext, query: &str) -> Result<DataFrame> {
        let query = if self.date_only {
            query.replace(EVENT_DATE, "event_date")
        } else {
            query.to_string()
        };
        let mut ranges: Vec<Vec<String>> = Vec::with_capacity(self.ranges.len());
        for (i, path) in self.ranges.iter().enumerate() {
            let mut queries = Vec::new();
            for b in 0..self.buckets {
                let folder = path.join(format!("bucket={b}"));
                if !std::fs::read_dir(&folder).is_ok_and(|mut files| files.next().is_some()) {
                    continue;
                }
                let name = format!("rollup_range_{i}_{b}");
                ctx.deregister_table(name.as_str())?;
                ctx.register_arrow(
                    &name,
                    &format!("{}/", folder.display()),
                    ArrowReadOptions::default(),
                )
                .await?;
                queries.push(query.replace("rollup_source", &name));
            }
            ranges.push(queries);
        }
        let first = ranges
            .iter()
            .flatten()
            .next()
            .ok_or_else(|| Error::Job(format!("no rollup ranges in {}", self.dir.path().display())))?;
        let schema: SchemaRef = Arc::new(ctx.sql(first).await?.schema().as_arrow().clone());
        // the buckets' queries each on one partition, sharing the session's tables and memory
        let mut single = ctx.state();
        single.config_mut().options_mut().execution.target_partitions = 1;
        let stream = Arc::new(InTurn {
            ctx: ctx.clone(),
            single: SessionContext::new_with_state(single),
            ranges,
            schema: schema.clone(),
        });
        let table = StreamingTable::try_new(schema, vec![stream])?;
        Ok(ctx.read_table(Arc::new(table))?)
    }
}

/// Whether a rollup's groups are an account's (its GROUP BY starts with `account_id`), so that
/// events split by account give each group whole to one bucket.
fn groups_by_account(query: &str) -> bool {
    query
        .rsplit_once("GROUP BY")
        .is_some_and(|(_, keys)| keys.trim_start().starts_with("account_id"))
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
/// file per range, bucket and stream (`RANGE/bucket=B/part-P.arrow`; an account's events all in
/// one bucket, by a hash of `account_id`), uncompressed (the copy lives a few seconds in the
/// spill folder; compressing it cost more than writing it), in batches of the session's size.
///
/// Hand-written rather than `COPY ... PARTITIONED BY`: DataFusion's partitioned Arrow sink
/// compresses with LZ4 and demultiplexes on one task, which made the copy a quarter of a
/// rebuild; here each stream sorts its batch's rows by range and bucket once (a counting sort)
/// and appends each slice.
async fn copy_by_range(
    mut stream: SendableRecordBatchStream,
    ranges: Vec<PathBuf>,
    buckets: usize,
    part: usize,
) -> Result<()> {
    use std::hash::BuildHasher;

    use deltalake::datafusion::arrow::array::{Array, AsArray, UInt32Array};
    use deltalake::datafusion::arrow::compute::{BatchCoalescer, take_record_batch};
    use deltalake::datafusion::arrow::datatypes::Int64Type;
    use deltalake::datafusion::arrow::ipc::writer::FileWriter;

    const BATCH: usize = 8192;
    let schema = {
        let s = stream.schema();
        let keep: Vec<usize> = (0..s.fields().len() - 1).collect();
        Arc::new(s.project(&keep)?)
    };
    let account = schema.index_of("account_id").ok();
    let slots = ranges.len() * buckets;
    type Out = (FileWriter<std::io::BufWriter<std::fs::File>>, BatchCoalescer);
    let mut outs: Vec<Option<Out>> = (0..slots).map(|_| None).collect();
    let io = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        Error::Job(format!(
            "copying events by day range into {}: {e}",
            path.display()
        ))
    };
    let hasher = foldhash::fast::FixedState::with_seed(0);
    let last = ranges.len() - 1;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        // an Int64 by construction; cast all the same, so that no expression's type can panic here
        let day_range = deltalake::datafusion::arrow::compute::cast(
            batch.column(batch.num_columns() - 1),
            &DataType::Int64,
        )?;
        let day_range = day_range.as_primitive::<Int64Type>();
        let accounts = match account {
            Some(i) if buckets > 1 => Some(deltalake::datafusion::arrow::compute::cast(
                batch.column(i),
                &DataType::Utf8,
            )?),
            _ => None,
        };
        let accounts = accounts.as_ref().map(|a| a.as_string::<i32>());
        let slot_of = |i: usize| {
            let range = usize::try_from(day_range.value(i)).unwrap_or(0).min(last);
            let bucket = match accounts {
                Some(a) if a.is_valid(i) => (hasher.hash_one(a.value(i)) % buckets as u64) as usize,
                _ => 0,
            };
            range * buckets + bucket
        };
        let slot: Vec<u32> = (0..batch.num_rows()).map(|i| slot_of(i) as u32).collect();
        // a counting sort of the rows by slot
        let mut starts = vec![0u32; slots + 1];
        for &s in &slot {
            starts[s as usize + 1] += 1;
        }
        for r in 0..slots {
            starts[r + 1] += starts[r];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; batch.num_rows()];
        for (i, &s) in slot.iter().enumerate() {
            order[next[s as usize] as usize] = i as u32;
            next[s as usize] += 1;
        }
        let sorted = take_record_batch(
            &batch.project(&(0..schema.fields().len()).collect::<Vec<_>>())?,
            &UInt32Array::from(order),
        )?;
        for r in 0..slots {
            let (from, to) = (starts[r] as usize, starts[r + 1] as usize);
            if from == to {
                continue;
            }
            let out = match &mut outs[r] {
                Some(out) => out,
                slot => {
                    let folder = ranges[r / buckets].join(format!("bucket={}", r % buckets));
                    std::fs::create_dir_all(&folder).map_err(|e| io(&folder, &e))?;
                    let path = folder.join(format!("part-{part}.arrow"));
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

/// How many rollup groups an event makes, at most over the rollups, measured on a sample of the
/// events (the first [`SAMPLE`] the scan yields, held in memory): near 1 where users are many and
/// each is active a few times a day, far below where accounts repeat the same event types all
/// day. A range then holds as many events as the budget holds groups of them. A sample spread
/// over many days finds more groups per event than a range holds (more ranges than needed, never
/// too few); one from a file of a day or of a few accounts finds what a range does. Measuring on
/// the newest day instead read every event's time: 4 of a 56 s build (perf, 50M events).
async fn groups_per_event(ctx: &SessionContext, source: &str, rollups: &[String]) -> Result<f64> {
    let sample = ctx
        .sql(&format!(
            "SELECT {} FROM {source} LIMIT {SAMPLE}",
            STAGED.join(", ")
        ))
        .await?
        .collect()
        .await?;
    let events: usize = sample.iter().map(|b| b.num_rows()).sum();
    let Some(schema) = sample.first().map(|b| b.schema()).filter(|_| events > 0) else {
        return Ok(1.0);
    };
    let name = "rollup_sample";
    ctx.deregister_table(name)?;
    ctx.register_table(
        name,
        Arc::new(deltalake::datafusion::datasource::MemTable::try_new(
            schema,
            vec![sample],
        )?),
    )?;
    let mut ratio: f64 = 0.0;
    for rollup in rollups {
        let q = format!(
            "SELECT CAST(COUNT(*) AS VARCHAR) AS n FROM ({})",
            rollup.replace("{{where}}", "").replace(source, name)
        );
        let groups = first_number(&sql(ctx, &q).await?, "n")?.unwrap_or(events as i64);
        ratio = ratio.max(groups as f64 / events as f64);
    }
    ctx.deregister_table(name)?;
    // never plan for fewer than one group per 20 events
    Ok(ratio.clamp(0.05, 1.0))
}

/// Runs its ranges one after the other as one partition; the buckets of a range side by side.
struct InTurn {
    ctx: SessionContext,
    /// The same session planning on one partition, for the queries of a range in buckets.
    single: SessionContext,
    /// Each range's queries, one per bucket.
    ranges: Vec<Vec<String>>,
    schema: SchemaRef,
}

impl std::fmt::Debug for InTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InTurn").field("ranges", &self.ranges).finish()
    }
}

impl PartitionStream for InTurn {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (ctx, single, schema) = (self.ctx.clone(), self.single.clone(), self.schema.clone());
        let batches = futures::stream::iter(self.ranges.clone())
            .then(move |queries| {
                let (ctx, single, schema) = (ctx.clone(), single.clone(), schema.clone());
                async move {
                    if let [query] = queries.as_slice() {
                        return ctx.sql(query).await?.execute_stream().await;
                    }
                    // each bucket on a task of its own, feeding one stream
                    let mut out = RecordBatchReceiverStream::builder(schema, 2);
                    for query in queries {
                        let stream = single.sql(&query).await?.execute_stream().await?;
                        let tx = out.tx();
                        out.spawn(async move {
                            let mut stream = stream;
                            while let Some(batch) = stream.next().await {
                                if tx.send(batch).await.is_err() {
                                    break; // the reader stopped
                                }
                            }
                            Ok(())
                        });
                    }
                    Ok(out.build())
                }
            })
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

#[cfg(test)]
mod tests {
    use super::groups_by_account;

    #[test]
    fn the_rollups_group_by_account_so_ranges_split_into_buckets() {
        for (name, sql) in cslake_features::ROLLUPS {
            assert!(groups_by_account(sql), "{name} would be aggregated in one bucket");
        }
        assert!(!groups_by_account(
            "SELECT event_type, COUNT(*) FROM usage_events GROUP BY event_type, account_id"
        ));
    }
}
