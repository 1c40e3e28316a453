//! `cslake ingest`: land source files in the `core/` tables.

pub mod calendar;
pub mod connectors;
#[cfg(test)]
mod fuzz;
pub mod records;
pub mod source_state;

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use deltalake::arrow::array::RecordBatch;

use deltalake::datafusion::prelude::SessionContext;

use crate::ingest::calendar::AttendeeIndex;
use crate::ingest::connectors::FileDrop;
use crate::ingest::records::{BatchBuilder, Mapping, RawRecords, Rejected, apply_templates, cast_records};
use crate::lake::ops;
use crate::lake::query::{dedupe, has_table, sql, strings};
use crate::lake::schema::{CORE_TABLES, Kind, TableSpec};
use crate::settings::{SourceConfig, TableMapping};
use crate::{Error, Lake, Progress, Result, RunContext, Settings};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableLoad {
    pub table: String,
    /// Files read in this run.
    pub files: usize,
    /// Files skipped because an earlier run loaded them and they have not changed.
    pub unchanged_files: usize,
    /// API pages read in this run.
    pub pages: usize,
    /// Rows not landed because their subject was erased (`cslake gdpr erase`).
    pub erased: usize,
    /// Rows not landed because they are older than the table's `[retention]`.
    pub expired: usize,
    pub read: usize,
    pub rejected: usize,
    pub inserted: usize,
    pub updated: usize,
    pub version: Option<u64>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestReport {
    pub source: String,
    pub tables: Vec<TableLoad>,
    pub read: usize,
    pub rejected: usize,
}

struct Staged {
    spec: &'static TableSpec,
    /// Canonical columns some file of this run provides (others are left alone on update).
    present: Vec<&'static str>,
    batches: Vec<RecordBatch>,
    /// Event rows moved to local disk (large runs), in the order they were read.
    spill: Option<Spill>,
    rejected: Vec<Rejected>,
    load: TableLoad,
}

/// The staged rows of a large event table, on local disk until the run commits: Parquet parts in
/// a temporary folder (removed when dropped), each row with its position in the run (`_ord`) so
/// the first delivery of an event still wins.
struct Spill {
    dir: tempfile::TempDir,
    parts: usize,
    rows: u64,
}

impl Staged {
    fn staged_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Moves the batches in memory to a new Parquet part of the spill.
    fn spill(&mut self) -> Result<()> {
        use deltalake::arrow::array::UInt64Array;
        use deltalake::arrow::datatypes::{DataType, Field};
        if self.batches.is_empty() {
            return Ok(());
        }
        if self.spill.is_none() {
            let dir = tempfile::Builder::new()
                .prefix(&format!("cslake-spill-{}-", self.spec.name))
                .tempdir()
                .map_err(|source| Error::Io {
                    path: std::env::temp_dir().display().to_string(),
                    source,
                })?;
            self.spill = Some(Spill {
                dir,
                parts: 0,
                rows: 0,
            });
        }
        let spill = self.spill.as_mut().expect("spill");
        let path = spill.dir.path().join(format!("part-{:05}.parquet", spill.parts));
        let mut writer: Option<cslake_sinks::FileWriter> = None;
        for b in std::mem::take(&mut self.batches) {
            let n = b.num_rows() as u64;
            let ord: std::sync::Arc<dyn deltalake::arrow::array::Array> =
                std::sync::Arc::new(UInt64Array::from_iter_values(spill.rows..spill.rows + n));
            let b = crate::lake::query::append_column(&b, Field::new("_ord", DataType::UInt64, false), ord)?;
            if writer.is_none() {
                writer = Some(
                    cslake_sinks::FileWriter::create(&path, cslake_sinks::FileFormat::Parquet, b.schema())
                        .map_err(|e| Error::Job(e.to_string()))?,
                );
            }
            writer
                .as_mut()
                .expect("writer")
                .write(&b)
                .map_err(|e| Error::Job(e.to_string()))?;
            spill.rows += n;
        }
        if let Some(w) = writer {
            w.finish().map_err(|e| Error::Job(e.to_string()))?;
        }
        spill.parts += 1;
        Ok(())
    }
}

/// Audit columns: set on every write, not compared to decide whether a row changed.
const AUDIT_COLUMNS: [&str; 3] = ["_source", "_run_id", "_ingested_at"];

/// Loads one source: a `[[sources]]` API connector when `source` names one, otherwise a file
/// drop at that folder or URL.
pub async fn ingest(
    lake: &Lake,
    settings: &Settings,
    source: &str,
    full: bool,
    run: &mut RunContext,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    match settings.file.sources.iter().find(|s| s.name == source) {
        Some(api) => ingest_api(lake, settings, api, full, run, progress).await,
        None => ingest_files(lake, settings, source, full, run, progress).await,
    }
}

/// Validates and casts records into the table they belong to, keeping what the run learns
/// (accounts loaded so far, meeting attendees) for the records that follow.
struct Stager {
    known: HashSet<String>,
    /// Hashes of erased identifiers (`ops.erasures`): their records are not landed again.
    erased: HashSet<(String, String)>,
    /// `[retention]`: per table, the first date still kept (older rows are not landed).
    retention: HashMap<&'static str, chrono::NaiveDate>,
    /// `[pii]`: personal columns are stored protected.
    pii: Option<crate::lake::pii::Protector>,
    keep_orphans: bool,
    /// `[ingest] spill_rows`.
    spill_rows: usize,
    ingested_at: chrono::DateTime<Utc>,
    attendees: Option<AttendeeIndex>,
}

impl Stager {
    async fn new(ctx: &SessionContext, settings: &Settings) -> Result<Self> {
        let mut known: HashSet<String> = HashSet::new();
        if has_table(ctx, "core.accounts") {
            for b in sql(ctx, "SELECT account_id FROM core.accounts").await? {
                known.extend(strings(&b, "account_id")?.into_iter().flatten());
            }
        }
        Ok(Self {
            known,
            erased: crate::lake::erasures::erased(ctx).await?,
            pii: crate::lake::pii::Protector::from_settings(settings)?,
            retention: CORE_TABLES
                .iter()
                .filter_map(|t| {
                    let days = crate::lake::retention::retention_days(
                        &settings.file.retention,
                        &format!("core.{}", t.name),
                    )
                    .ok()
                    .flatten()?;
                    Some((t.name, Utc::now().date_naive() - chrono::Duration::days(days)))
                })
                .collect(),
            keep_orphans: settings.keep_orphans(),
            spill_rows: settings.spill_rows(),
            ingested_at: Utc::now(),
            attendees: None,
        })
    }

    fn staged(spec: &'static TableSpec) -> Staged {
        Staged {
            spec,
            present: Vec::new(),
            batches: Vec::new(),
            spill: None,
            rejected: Vec::new(),
            load: TableLoad {
                table: spec.name.into(),
                ..Default::default()
            },
        }
    }

    async fn add(
        &mut self,
        ctx: &SessionContext,
        earlier: &[Staged],
        st: &mut Staged,
        mut records: RawRecords,
        config: &TableMapping,
        run_id: &str,
    ) -> Result<()> {
        let spec = st.spec;
        if spec.name == "interactions"
            && records.meetings
            && let Some(p) = self.pii.as_ref().filter(|p| p.covers("contacts", "email"))
        {
            // contacts' e-mails are stored protected: match attendees in the same form
            let at = records.header.iter().position(|h| h == "attendees");
            for row in &mut records.rows {
                if let Some(Some(a)) = at.and_then(|i| row.values.get_mut(i)) {
                    *a = a
                        .split(';')
                        .filter(|e| !e.is_empty())
                        .map(|e| p.protect("email", e))
                        .collect::<Vec<_>>()
                        .join(";");
                }
            }
        }
        if spec.name == "interactions" && records.meetings {
            if self.attendees.is_none() {
                self.attendees = Some(attendee_index(ctx, earlier).await?);
            }
            if let Some(index) = &self.attendees {
                let skipped = index.assign(&mut records);
                tracing::info!(
                    origin = records.origin.as_str(),
                    skipped,
                    "calendar events without a customer attendee skipped"
                );
            }
        }
        if records.header.is_empty() && records.rows.is_empty() {
            tracing::warn!(origin = records.origin.as_str(), "empty: nothing to load");
            return Ok(());
        }
        apply_templates(&mut records, config);
        let mapping = Mapping::resolve_records(spec, &records, config)?;
        for (c, idx) in spec.columns.iter().zip(&mapping.columns) {
            if idx.is_some() && !st.present.contains(&c.name) {
                st.present.push(c.name);
            }
        }
        if spec.keeps_attributes && !mapping.unmapped.is_empty() && !st.present.contains(&"attributes") {
            st.present.push("attributes");
        }
        let mut builder = BatchBuilder::new(spec);
        let known_ref = (!self.keep_orphans).then_some(&self.known);
        let mut rejected = cast_records(spec, &records, &mapping, config, known_ref, &mut builder);
        if let Some(p) = &self.pii {
            for r in &mut rejected {
                r.raw = p.protect_raw(&r.raw);
            }
        }
        // records a filter routes to another table are not this table's reads
        st.load.read += builder.len() + rejected.len();
        st.rejected.extend(rejected);
        let mut batch = builder.finish_table(&records.origin, run_id, self.ingested_at)?;
        if !self.erased.is_empty() {
            let before = batch.num_rows();
            batch = self.suppress(spec, batch)?;
            if batch.num_rows() < before {
                st.load.erased += before - batch.num_rows();
                tracing::info!(
                    origin = records.origin.as_str(),
                    rows = before - batch.num_rows(),
                    "records of erased subjects not landed (ops.erasures)"
                );
            }
        }
        if let Some(first_kept) = self.retention.get(spec.name)
            && let Some(col) =
                crate::lake::retention::time_column(&format!("core.{}", spec.name), &batch.schema())
        {
            use deltalake::arrow::array::Date32Array;
            use deltalake::arrow::compute::kernels::{boolean, cmp};
            use deltalake::arrow::compute::{cast, filter_record_batch, is_null};
            use deltalake::arrow::datatypes::DataType;
            // rows dated on or after the first day kept, and rows without a date (an open period)
            let days = cast(
                batch.column_by_name(&col).expect("time column"),
                &DataType::Date32,
            )?;
            let first = Date32Array::new_scalar(crate::lake::query::epoch_days(*first_kept));
            let keep = boolean::or(&is_null(&days)?, &cmp::gt_eq(&days, &first)?)?;
            let before = batch.num_rows();
            batch = filter_record_batch(&batch, &keep)?;
            st.load.expired += before - batch.num_rows();
            if batch.num_rows() < before {
                tracing::info!(
                    origin = records.origin.as_str(),
                    rows = before - batch.num_rows(),
                    first_kept = %first_kept,
                    "rows older than the table's retention not landed"
                );
            }
        }
        if let Some(p) = &self.pii {
            batch = protect_columns(p, spec, batch)?;
        }
        if spec.name == "accounts" {
            self.known
                .extend(strings(&batch, "account_id")?.into_iter().flatten());
        }
        st.batches.push(batch);
        if spec.kind == Kind::Event && st.staged_rows() >= self.spill_rows {
            st.spill()?;
        }
        Ok(())
    }
}

impl Stager {
    /// Drops the rows of erased subjects (their account, their contact record, their e-mail) and
    /// blanks an erased contact id elsewhere, so a re-export of the source does not bring back what
    /// `cslake gdpr erase` removed.
    fn suppress(&self, spec: &TableSpec, batch: RecordBatch) -> Result<RecordBatch> {
        use crate::lake::erasures::sha256;
        // one hash per distinct value: a day of events names few accounts and users many times
        let mut known: HashMap<(&str, String), bool> = HashMap::new();
        let mut hit = |kind: &'static str, v: &Option<String>| {
            let Some(v) = v.as_deref().map(str::trim) else {
                return false;
            };
            *known
                .entry((kind, v.to_string()))
                .or_insert_with(|| self.erased.contains(&(kind.to_string(), sha256(v))))
        };
        let accounts = strings(&batch, "account_id")?;
        let emails: Vec<Option<String>> = strings(&batch, "email")?
            .into_iter()
            .map(|e| e.map(|e| e.trim().to_lowercase()))
            .collect();
        let contacts = strings(&batch, "contact_id")?;
        let keep: Vec<bool> = (0..batch.num_rows())
            .map(|i| {
                let own_contact = spec.name == "contacts" && hit("contact_id", &contacts[i]);
                !(hit("account_id", &accounts[i]) || hit("email", &emails[i]) || own_contact)
            })
            .collect();
        let mut batch = deltalake::arrow::compute::filter_record_batch(
            &batch,
            &deltalake::arrow::array::BooleanArray::from(keep),
        )?;
        if spec.name != "contacts"
            && let Ok(i) = batch.schema().index_of("contact_id")
        {
            let values = strings(&batch, "contact_id")?;
            if values.iter().any(|c| hit("contact_id", c)) {
                let blanked: deltalake::arrow::array::StringArray = values
                    .iter()
                    .map(|c| if hit("contact_id", c) { None } else { c.as_deref() })
                    .collect();
                let mut cols = batch.columns().to_vec();
                cols[i] = std::sync::Arc::new(blanked);
                batch = RecordBatch::try_new(batch.schema(), cols)?;
            }
        }
        Ok(batch)
    }
}

/// The batch with the `[pii]` columns of its table protected.
fn protect_columns(
    p: &crate::lake::pii::Protector,
    spec: &TableSpec,
    batch: RecordBatch,
) -> Result<RecordBatch> {
    let mut cols = batch.columns().to_vec();
    let mut changed = false;
    for (i, f) in batch.schema().fields().iter().enumerate() {
        if !p.covers(spec.name, f.name()) {
            continue;
        }
        let values = strings(&batch, f.name())?;
        let protected: deltalake::arrow::array::StringArray = values
            .iter()
            .map(|v| v.as_deref().map(|v| p.protect(f.name(), v)))
            .collect();
        cols[i] = std::sync::Arc::new(protected);
        changed = true;
    }
    Ok(if changed {
        RecordBatch::try_new(batch.schema(), cols)?
    } else {
        batch
    })
}

/// Reads the new and changed files of the source (every file with `full`), validates them, and
/// loads them: entities merged on their key, events appended once per `event_id`. Everything is
/// read and validated before anything is written, so a file with a missing column, or rejects
/// above the threshold, load nothing. The files' state is recorded in `ops.source_state` only
/// after the core tables are committed, so a failed run is read again in full by the next one.
async fn ingest_files(
    lake: &Lake,
    settings: &Settings,
    source: &str,
    full: bool,
    run: &mut RunContext,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    let drop = FileDrop::open(
        source,
        &settings.file.storage,
        settings.file.ingest.tables.clone(),
    )?;
    let ctx = lake.session().await?;
    let mut stager = Stager::new(&ctx, settings).await?;
    let seen = if full {
        HashMap::new()
    } else {
        source_state::load(&ctx, drop.url.as_str()).await?
    };
    let mut read_files: Vec<source_state::FileState> = Vec::new();
    let mut staged: Vec<Staged> = Vec::new();
    for spec in CORE_TABLES {
        let listed = drop.files_for(spec).await?;
        let (files, unchanged): (Vec<_>, Vec<_>) = listed.into_iter().partition(|f| {
            let state = source_state::FileState::of(&drop, f, spec.name);
            seen.get(&(state.table.clone(), state.object.clone())) != Some(&state)
        });
        let mut st = Stager::staged(spec);
        st.load.files = files.len();
        st.load.unchanged_files = unchanged.len();
        if files.is_empty() {
            staged.push(st);
            continue;
        }
        progress.start(&format!("read {}", spec.name), Some(files.len() as u64));
        let config = drop.mapping(spec.name).cloned().unwrap_or_default();
        for file in &files {
            read_files.push(source_state::FileState::of(&drop, file, spec.name));
            let records = drop.read(spec, file).await?;
            stager
                .add(&ctx, &staged, &mut st, records, &config, &run.run_id)
                .await?;
            progress.advance(1);
        }
        progress.finish();
        tracing::info!(
            table = spec.name,
            files = files.len(),
            read = st.load.read,
            rejected = st.rejected.len(),
            "read"
        );
        staged.push(st);
    }
    let report = commit(lake, settings, run, drop.url.as_str(), staged, progress).await?;
    crate::fault_point("ingest:before-state");
    if let Some(v) = source_state::record(lake, drop.url.as_str(), &read_files, &run.run_id).await? {
        run.tables.insert("ops.source_state".into(), v);
    }
    Ok(report)
}

/// Reads every stream of an API source from its cursor (from the start with `full`), then loads
/// it like files; the cursors advance in `ops.source_cursors` only after the core tables are
/// committed, so a failed run is read again from the last good cursor.
async fn ingest_api(
    lake: &Lake,
    settings: &Settings,
    config: &SourceConfig,
    full: bool,
    run: &mut RunContext,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    let api = connectors::open(config)?;
    let ctx = lake.session().await?;
    let mut stager = Stager::new(&ctx, settings).await?;
    let cursors = if full {
        HashMap::new()
    } else {
        source_state::load_cursors(&ctx, &config.name).await?
    };
    let streams = api.streams(&cursors).await?;
    let mut staged: Vec<Staged> = Vec::new();
    let mut reached: Vec<(String, String)> = Vec::new();
    for spec in CORE_TABLES {
        let mut st = Stager::staged(spec);
        for stream in streams.iter().filter(|s| s.table.name == spec.name) {
            let fetched = api
                .fetch(stream, cursors.get(&stream.key).map(String::as_str), progress)
                .await?;
            st.load.pages += fetched.pages.len();
            for page in fetched.pages {
                stager
                    .add(&ctx, &staged, &mut st, page, &stream.mapping, &run.run_id)
                    .await?;
            }
            if let Some(c) = fetched.cursor {
                reached.push((stream.key.clone(), c));
            }
            tracing::info!(
                source = api.name(),
                stream = stream.key.as_str(),
                records = fetched.records,
                "read"
            );
        }
        staged.push(st);
    }
    let report = commit(lake, settings, run, api.name(), staged, progress).await?;
    crate::fault_point("ingest:before-state");
    if let Some(v) = source_state::record_cursors(lake, api.name(), &reached, &run.run_id).await? {
        run.tables.insert("ops.source_cursors".into(), v);
    }
    Ok(report)
}

/// Quarantines the rejects, checks the threshold, then loads every table.
async fn commit(
    lake: &Lake,
    settings: &Settings,
    run: &mut RunContext,
    source: &str,
    mut staged: Vec<Staged>,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    for st in &mut staged {
        st.load.rejected = st.rejected.len();
    }
    let read: usize = staged.iter().map(|s| s.load.read).sum();
    let rejected: usize = staged.iter().map(|s| s.load.rejected).sum();
    run.rows_read += read as u64;
    run.rows_rejected += rejected as u64;
    for st in &staged {
        if let Some(v) = ops::quarantine(lake, run, source, st.spec.name, &st.rejected).await? {
            run.tables.insert("ops.quarantine".into(), v);
        }
    }
    let threshold = settings.reject_threshold();
    if read > 0 && rejected as f64 / read as f64 > threshold {
        let first = staged
            .iter()
            .flat_map(|s| s.rejected.first())
            .next()
            .map(|r| format!("{}: {}", r.origin, r.reason))
            .unwrap_or_default();
        return Err(Error::RejectedAboveThreshold {
            rejected,
            read,
            share: 100.0 * rejected as f64 / read as f64,
            threshold: 100.0 * threshold,
            run_id: run.run_id.clone(),
            first,
        });
    }
    let mut report = IngestReport {
        source: source.to_string(),
        read,
        rejected,
        tables: Vec::new(),
    };
    for mut st in staged {
        if st.spill.is_some() {
            // a large event table: deduplicated and written from disk, streamed in one commit
            st.spill()?;
            let spill = st.spill.take().expect("spill");
            progress.start(&format!("load {}", st.spec.name), None);
            let ctx = lake.session().await?;
            ctx.register_parquet(
                "_cslake_spill",
                &spill.dir.path().display().to_string(),
                deltalake::datafusion::prelude::ParquetReadOptions::default(),
            )
            .await?;
            let columns: Vec<String> = ctx
                .table("_cslake_spill")
                .await?
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|c| c != "_ord")
                .map(|c| format!("\"{c}\""))
                .collect();
            let df = ctx
                .sql(&format!(
                    "SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY \"{key}\" ORDER BY _ord) AS _cslake_rn FROM _cslake_spill) WHERE _cslake_rn = 1",
                    cols = columns.join(", "),
                    key = st.spec.key
                ))
                .await?;
            let stats = lake
                .target("core", st.spec.name)
                .insert_new_df(df, st.spec.key, &ctx, &run.run_id)
                .await?;
            progress.finish();
            st.load.inserted = stats.inserted;
            st.load.version = stats.version;
            run.wrote(&format!("core.{}", st.spec.name), stats.inserted, stats.version);
            crate::fault_point("ingest:mid-load");
            tracing::info!(
                table = st.spec.name,
                inserted = stats.inserted,
                staged = spill.rows,
                version = stats.version,
                "loaded (from the spill)"
            );
            report.tables.push(st.load);
            continue;
        }
        if let Some(batch) = dedupe(&st.batches, st.spec.key, st.spec.kind == Kind::Entity)? {
            progress.start(&format!("load {}", st.spec.name), None);
            let target = lake.target("core", st.spec.name);
            let stats = match st.spec.kind {
                Kind::Entity => {
                    let compare: Vec<&str> = st
                        .spec
                        .compare_columns()
                        .into_iter()
                        .filter(|c| st.present.contains(c))
                        .collect();
                    target
                        .upsert(vec![batch], &[st.spec.key], &compare, &AUDIT_COLUMNS, &run.run_id)
                        .await?
                }
                Kind::Event => target.insert_new(vec![batch], st.spec.key, &run.run_id).await?,
            };
            progress.finish();
            st.load.inserted = stats.inserted;
            st.load.updated = stats.updated;
            st.load.version = stats.version;
            run.wrote(
                &format!("core.{}", st.spec.name),
                stats.inserted + stats.updated,
                stats.version,
            );
            crate::fault_point("ingest:mid-load");
            tracing::info!(
                table = st.spec.name,
                inserted = stats.inserted,
                updated = stats.updated,
                version = stats.version,
                "loaded"
            );
        }
        // a table the source does not provide at all is not part of its report
        let l = &st.load;
        if l.files + l.unchanged_files + l.pages + l.read > 0 {
            report.tables.push(st.load);
        }
    }
    Ok(report)
}

/// Contacts known to the lake and loaded earlier in this run, for matching meeting attendees.
async fn attendee_index(ctx: &SessionContext, staged: &[Staged]) -> Result<AttendeeIndex> {
    let mut index = AttendeeIndex::default();
    let mut add = |b: &RecordBatch| -> Result<()> {
        let (email, account, contact) = (
            strings(b, "email")?,
            strings(b, "account_id")?,
            strings(b, "contact_id")?,
        );
        for i in 0..b.num_rows() {
            if let (Some(e), Some(a), Some(c)) = (&email[i], &account[i], &contact[i]) {
                index.add(e, a, c);
            }
        }
        Ok(())
    };
    if has_table(ctx, "core.contacts") {
        for b in sql(
            ctx,
            "SELECT email, account_id, contact_id FROM core.contacts WHERE email IS NOT NULL",
        )
        .await?
        {
            add(&b)?;
        }
    }
    for st in staged.iter().filter(|s| s.spec.name == "contacts") {
        for b in &st.batches {
            add(b)?;
        }
    }
    Ok(index)
}
