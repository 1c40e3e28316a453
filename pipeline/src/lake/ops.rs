//! `ops/runs` (one row per command) and `ops/quarantine` (rejected input rows). Every command
//! runs through [`audited`]: its `running` row is written first, its outcome after, whether the
//! job succeeds or fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use crate::lake::lease::Owner;
use crate::lake::query::{has_table, sql};
use crate::lake::schema::ColType;
use crate::{Error, Lake, Result};

/// The audit record of one command, filled in as it runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunContext {
    pub run_id: String,
    pub command: String,
    pub actor: String,
    pub args: Vec<String>,
    pub as_of: Option<NaiveDate>,
    pub started_at: DateTime<Utc>,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    /// Table → version written.
    pub tables: BTreeMap<String, u64>,
    /// What a successful run sent where (report deliveries, publishing), for its row's message.
    pub note: Option<String>,
}

impl RunContext {
    /// The run's date: its as-of date, or the UTC day it started on without one. Anything that
    /// depends on "today" (retention cut-offs, recurrence horizons, history validity) reads it
    /// here, so re-running a past day reproduces it.
    pub fn today(&self) -> NaiveDate {
        self.as_of.unwrap_or_else(|| self.started_at.date_naive())
    }

    pub fn new(command: &str, actor: &str, args: Vec<String>, as_of: Option<NaiveDate>) -> Self {
        let started_at = Utc::now();
        let nonce = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(started_at.timestamp_nanos_opt().unwrap_or_default() as u128);
            h.write_u32(std::process::id());
            h.finish() as u32
        };
        Self {
            run_id: format!("{}-{nonce:08x}", started_at.format("%Y%m%dT%H%M%SZ")),
            command: command.to_string(),
            actor: actor.to_string(),
            args: redact(args),
            as_of,
            started_at,
            rows_read: 0,
            rows_written: 0,
            rows_rejected: 0,
            tables: BTreeMap::new(),
            note: None,
        }
    }

    pub fn wrote(&mut self, table: &str, rows: usize, version: Option<u64>) {
        self.rows_written += rows as u64;
        if let Some(v) = version {
            self.tables.insert(table.to_string(), v);
        }
    }

    /// Writes this run's row as `running` before the job starts: a run that is killed keeps that
    /// row, so the audit log shows every command that started, finished or not.
    pub async fn begin(&self, lake: &Lake) -> Result<()> {
        self.append(lake, self.started_at, "running", None).await
    }

    /// Writes the one row of a run that had no job to wrap (a read, a refusal), with its outcome.
    pub async fn record_once(&self, lake: &Lake, status: &str, message: Option<&str>) -> Result<()> {
        let masked = message
            .or(self.note.as_deref())
            .map(|m| crate::mask(m).into_owned());
        self.append(lake, Utc::now(), status, masked.as_deref()).await
    }

    async fn append(
        &self,
        lake: &Lake,
        ended: DateTime<Utc>,
        status: &str,
        message: Option<&str>,
    ) -> Result<()> {
        let batch = self.row(ended, status, message)?;
        let target = lake.target("ops", "runs");
        retry_conflicts(|| target.append(vec![batch.clone()], &[], &self.run_id)).await?;
        RECORDED.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Records the run's outcome (replacing its `running` row).
    pub async fn record(&self, lake: &Lake, status: &str, message: Option<&str>) -> Result<()> {
        // whatever an error quotes (a server's echo, a URL), no secret is stored
        let masked = message
            .or(self.note.as_deref())
            .map(|m| crate::mask(m).into_owned());
        let message = masked.as_deref();
        let ended = Utc::now();
        // one log event per step, for log-based monitoring
        tracing::info!(
            run_id = self.run_id.as_str(),
            command = self.command.as_str(),
            status,
            seconds = (ended - self.started_at).num_milliseconds() as f64 / 1000.0,
            rows_read = self.rows_read,
            rows_written = self.rows_written,
            rows_rejected = self.rows_rejected,
            "step finished"
        );
        let batch = self.row(ended, status, message)?;
        let target = lake.target("ops", "runs");
        retry_conflicts(|| {
            target.upsert(
                vec![batch.clone()],
                &["run_id"],
                &["status", "ended_at"],
                &["rows_read", "rows_written", "rows_rejected", "tables", "message"],
                &self.run_id,
            )
        })
        .await?;
        RECORDED.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn row(&self, ended: DateTime<Utc>, status: &str, message: Option<&str>) -> Result<RecordBatch> {
        let ts = |t: DateTime<Utc>| {
            Arc::new(TimestampMicrosecondArray::from(vec![t.timestamp_micros()]).with_timezone("UTC"))
                as ArrayRef
        };
        let s = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let i = |v: u64| Arc::new(Int64Array::from(vec![v as i64])) as ArrayRef;
        let batch = RecordBatch::try_new(
            runs_schema(),
            vec![
                s(&self.run_id),
                s(&self.command),
                s(&self.actor),
                s(&serde_json::to_string(&self.args).unwrap_or_default()),
                Arc::new(Date32Array::from(vec![self.as_of.map(days)])),
                ts(self.started_at),
                ts(ended),
                s(status),
                i(self.rows_read),
                i(self.rows_written),
                i(self.rows_rejected),
                s(&serde_json::to_string(&self.tables).unwrap_or_default()),
                Arc::new(StringArray::from(vec![message])),
            ],
        )?;
        Ok(batch)
    }
}

/// Set once this process wrote a row of `ops.runs`: the command line records a row for a
/// command that wrote none (reads, refusals), so every command is in the audit log once.
static RECORDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process has written a row of `ops.runs`.
pub fn run_recorded() -> bool {
    RECORDED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Who runs commands, and with which arguments: what every run's audit row records.
#[derive(Debug, Clone)]
pub struct Audit {
    pub actor: String,
    pub args: Vec<String>,
}

impl Audit {
    /// The audit record of a new run of `command`.
    pub fn run(&self, command: &str, as_of: Option<NaiveDate>) -> RunContext {
        RunContext::new(command, &self.actor, self.args.clone(), as_of)
    }
}

/// The zones of the lake a command writes, beyond its own rows of `ops.runs` and
/// `ops.quarantine`: it holds their leases while it runs (see [`super::lease`]). Tables of `ops`
/// that one command alone writes (source state, feature statistics, erasures) go with its zone.
pub fn zones_written(command: &str) -> &'static [&'static str] {
    match command {
        "ingest" => &["core"],
        "features" => &["features"],
        "train" | "evaluate" | "features training-set" => &["training", "models"],
        "models promote" | "models rollback" => &["models"],
        "score" => &["scores"],
        "act" | "tasks complete" | "alerts ack" => &["actions"],
        "analytics" => &["analytics"],
        "maintain" | "gdpr erase" | "pii rotate" | "restore" => super::ZONES,
        _ => &[],
    }
}

/// Runs a job with its audit row: `running` before it starts (a killed run keeps that row), its
/// outcome after, written whether the job succeeds or fails. The job holds the leases of the
/// zones its command writes ([`zones_written`]).
pub async fn audited<T, F>(lake: &Lake, run: RunContext, job: F) -> Result<(T, RunContext)>
where
    F: AsyncFnOnce(&mut RunContext) -> Result<T>,
{
    run.begin(lake).await.map_err(Error::audit)?;
    finish(lake, run, job).await
}

/// Runs a write to `ops.runs` until it commits. Every command writes there, whatever leases it
/// holds, so two commands starting or ending at once can collide (seen in CI: a finished `cslake
/// run` failed with exit 1); each write is keyed on its run, so one that lost is simply tried
/// again on the newer version (up to 20 times, spread by process id). Other errors fail at once.
async fn retry_conflicts<F, Fut>(mut write: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = cslake_sinks::Result<cslake_sinks::WriteStats>>,
{
    let mut attempt = 0u64;
    loop {
        match write().await {
            Err(e) if e.is_conflict() && attempt < 20 => {
                attempt += 1;
                tracing::debug!(attempt, "ops.runs: commit lost to another command's, retrying");
                let pause = u64::from(std::process::id() % 50) + 25 * attempt;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            done => {
                done?;
                return Ok(());
            }
        }
    }
}

/// Runs the job and records its outcome, without a `running` row first (for `restore`, whose job
/// brings back the audit table itself).
pub async fn finish<T, F>(lake: &Lake, mut run: RunContext, job: F) -> Result<(T, RunContext)>
where
    F: AsyncFnOnce(&mut RunContext) -> Result<T>,
{
    let owner = Owner {
        run_id: run.run_id.clone(),
        command: run.command.clone(),
        actor: run.actor.clone(),
    };
    let outcome = match lake.lease(zones_written(&run.command), &owner).await {
        Ok(mut leases) => {
            let outcome = job(&mut run).await;
            let lost = leases.lost();
            leases.release().await;
            match (outcome, lost) {
                (Ok(_), Some(why)) => Err(Error::Job(format!(
                    "{why} while this run wrote (it stalled past the lease's lifetime); check the zone's tables"
                ))),
                (outcome, _) => outcome,
            }
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(v) => {
            run.record(lake, "succeeded", None).await.map_err(Error::audit)?;
            Ok((v, run))
        }
        Err(e) => {
            if let Err(audit) = run.record(lake, "failed", Some(&e.to_string())).await {
                tracing::error!(error = %audit, "could not write the ops.runs row");
            }
            Err(e)
        }
    }
}

fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

/// Hides the values of arguments that look like secrets.
fn redact(args: Vec<String>) -> Vec<String> {
    let secret = |a: &str| {
        let l = a.to_ascii_lowercase();
        ["secret", "password", "token", "key"]
            .iter()
            .any(|s| l.contains(s))
    };
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for a in args {
        if hide_next {
            out.push("***".to_string());
            hide_next = false;
        } else if let Some((k, _)) = a.split_once('=').filter(|(k, _)| secret(k)) {
            out.push(format!("{k}=***"));
        } else {
            hide_next = a.starts_with("--") && secret(&a);
            out.push(a);
        }
    }
    out
}

fn runs_schema() -> Arc<Schema> {
    let ts = ColType::Timestamp.arrow();
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("command", DataType::Utf8, false),
        Field::new("actor", DataType::Utf8, false),
        Field::new("args", DataType::Utf8, false),
        Field::new("as_of_date", DataType::Date32, true),
        Field::new("started_at", ts.clone(), false),
        Field::new("ended_at", ts, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows_read", DataType::Int64, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("rows_rejected", DataType::Int64, false),
        Field::new("tables", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, true),
    ]))
}

/// A row that could not be loaded: where it came from, which field failed and why, and the raw
/// record, as `ops.quarantine` keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub origin: String,
    pub row: usize,
    pub field: String,
    pub reason: String,
    /// The raw record as a JSON object.
    pub raw: String,
}

/// The columns of `ops.quarantine`.
pub fn quarantine_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("_run_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("origin", DataType::Utf8, false),
        Field::new("row_number", DataType::Int64, false),
        Field::new("field", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("quarantined_at", ColType::Timestamp.arrow(), false),
    ]))
}

/// Appends rejected rows to `ops/quarantine`.
pub async fn quarantine(
    lake: &Lake,
    run: &RunContext,
    source: &str,
    table: &str,
    rows: &[Rejected],
) -> Result<Option<u64>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let n = rows.len();
    let schema = quarantine_schema();
    let now = Utc::now().timestamp_micros();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![run.run_id.as_str(); n])),
            Arc::new(StringArray::from(vec![source; n])),
            Arc::new(StringArray::from(vec![table; n])),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.origin.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.row as i64))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.field.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.reason.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.raw.as_str()))),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        ],
    )?;
    let stats = lake
        .target("ops", "quarantine")
        .append(vec![batch], &[], &run.run_id)
        .await?;
    Ok(stats.version)
}

/// `cslake runs list`: the latest runs, newest first.
pub async fn runs(lake: &Lake, limit: usize) -> Result<Vec<RecordBatch>> {
    let ctx = runs_session(lake).await?;
    sql(
        &ctx,
        &format!(
            "SELECT run_id, command, actor, as_of_date, started_at, \
             CAST(date_part('epoch', ended_at) - date_part('epoch', started_at) AS DECIMAL(10, 1)) AS seconds, \
             status, rows_read, rows_written, rows_rejected FROM ops.runs ORDER BY started_at DESC LIMIT {limit}"
        ),
    )
    .await
}

/// `cslake runs show ID`: everything recorded about one run.
pub async fn run(lake: &Lake, run_id: &str) -> Result<Vec<RecordBatch>> {
    let ctx = runs_session(lake).await?;
    let rows = sql(
        &ctx,
        &format!(
            "SELECT * FROM ops.runs WHERE run_id = '{}'",
            run_id.replace('\'', "''")
        ),
    )
    .await?;
    if rows.iter().map(RecordBatch::num_rows).sum::<usize>() == 0 {
        return Err(Error::NotFound {
            what: "run",
            name: run_id.to_string(),
            hint: " in ops.runs (cslake runs list)".into(),
        });
    }
    Ok(rows)
}

async fn runs_session(lake: &Lake) -> Result<deltalake::datafusion::prelude::SessionContext> {
    let ctx = lake.session().await?;
    if !has_table(&ctx, "ops.runs") {
        return Err(Error::Job("no runs recorded yet in this lake".into()));
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_redacted() {
        let args = ["ingest", "--api-token", "abc", "--lake", "x", "password=hunter2"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            super::redact(args),
            ["ingest", "--api-token", "***", "--lake", "x", "password=***"]
        );
    }
}
