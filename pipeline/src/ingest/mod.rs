//! `cslake ingest`: land source files in the `core/` tables.

pub mod batch;
pub mod calendar;
pub mod cast;
pub mod connectors;
pub mod dedupe;
pub mod event_ids;
#[cfg(test)]
mod fuzz;
pub mod history;
mod large;
pub mod read;
pub mod records;
pub mod rules;
pub mod source_state;
pub mod spill;
mod words;

use std::collections::{HashMap, HashSet};

use chrono::{NaiveDate, Utc};
use deltalake::arrow::array::RecordBatch;

use deltalake::datafusion::prelude::SessionContext;

use crate::ingest::batch::SourceBatch;
use crate::ingest::calendar::AttendeeIndex;
use crate::ingest::cast::{Stamp, cast_batch};
use crate::ingest::connectors::FileDrop;
use crate::ingest::connectors::files::Input;
use crate::ingest::records::{RawRecords, Rejected};
use crate::ingest::spill::Spill;
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
    /// Events not inserted because the table, or an earlier record of this load, holds their
    /// `event_id` (a file read again, an API page that overlaps the last one).
    pub duplicates: usize,
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
    /// Rows moved to local disk (large runs), in staging order, their keys hash-partitioned.
    spill: Option<Spill>,
    rejected: Vec<Rejected>,
    load: TableLoad,
    /// Ids made for event rows whose source has none.
    ids: event_ids::EventIds,
}

impl Staged {
    fn staged_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The columns whose change makes an entity row an update: those some file of this run
    /// provides (the others are left alone).
    fn compare_columns(&self) -> Vec<&'static str> {
        self.spec
            .compare_columns()
            .into_iter()
            .filter(|c| self.present.contains(c))
            .collect()
    }

    /// Records what the commit of this table wrote.
    fn loaded(&mut self, stats: &cslake_sinks::WriteStats, run: &mut RunContext) {
        self.load.inserted = stats.inserted;
        self.load.updated = stats.updated;
        self.load.version = stats.version;
        run.wrote(
            &format!("core.{}", self.spec.name),
            stats.inserted + stats.updated,
            stats.version,
        );
    }

    fn staged_bytes(&self) -> usize {
        self.batches.iter().map(RecordBatch::get_array_memory_size).sum()
    }

    /// Moves the batches in memory to the spill.
    fn spill(&mut self, folder: &crate::lake::spill::SpillDir) -> Result<()> {
        if self.batches.is_empty() {
            return Ok(());
        }
        if self.spill.is_none() {
            self.spill = Some(Spill::create(
                folder,
                self.spec.name,
                self.spec.key,
                &REPEATED_COLUMNS,
            )?);
        }
        let batches = std::mem::take(&mut self.batches);
        self.spill.as_mut().expect("spill").append(batches)
    }
}

/// Audit columns: set on every write, not compared to decide whether a row changed.
const AUDIT_COLUMNS: [&str; 3] = ["_source", "_run_id", "_ingested_at"];

/// The audit columns of text, one value for every row of a file: staged as numbers.
const REPEATED_COLUMNS: [&str; 2] = ["_source", "_run_id"];

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
    create_ops_tables(lake, &run.run_id).await?;
    add_new_core_columns(lake, &run.run_id).await?;
    history::create(lake, &run.run_id).await?;
    match settings.file.sources.iter().find(|s| s.name == source) {
        Some(api) => ingest_api(lake, settings, api, full, run, progress).await,
        None => ingest_files(lake, settings, source, full, run, progress).await,
    }
}

/// Core tables written by an older cslake take the canonical columns added since (null in the
/// rows they hold), before anything lands in them; views read them as of this version.
async fn add_new_core_columns(lake: &Lake, run_id: &str) -> Result<()> {
    for spec in crate::lake::schema::CORE_TABLES {
        let added = lake
            .target("core", spec.name)
            .add_missing_columns(&spec.table_schema(), run_id)
            .await?;
        if !added.is_empty() {
            tracing::info!(table = spec.name, columns = ?added, "added the columns this version of cslake lands");
        }
    }
    Ok(())
}

/// The `ops` tables ingest keeps, created empty on a lake's first ingest, so that "nothing was
/// rejected" reads as an empty `ops.quarantine` rather than a missing table. (Core tables are not:
/// a missing core table means the company sends no such data, and the views reading it are
/// skipped.)
async fn create_ops_tables(lake: &Lake, run_id: &str) -> Result<()> {
    use deltalake::arrow::array::RecordBatch;
    for (name, schema) in [
        ("quarantine", crate::lake::ops::quarantine_schema()),
        ("source_state", source_state::state_schema()),
        ("source_cursors", source_state::cursors_schema()),
        ("erasures", crate::lake::erasures::schema()),
    ] {
        lake.target("ops", name)
            .create_empty(RecordBatch::new_empty(schema), &[], run_id)
            .await?;
    }
    Ok(())
}

/// Validates and casts records into the table they belong to, keeping what the run learns
/// (accounts loaded so far, meeting attendees) for the records that follow.
struct Stager {
    known: cast::Accounts,
    /// Hashes of erased identifiers (`ops.erasures`): their records are not landed again.
    erased: HashSet<(String, String)>,
    /// Whether names are among them (free text is searched for them only then).
    erased_names: bool,
    /// `[retention]`: per table, the first date still kept (older rows are not landed).
    retention: HashMap<&'static str, chrono::NaiveDate>,
    /// `[pii]`: personal columns are stored protected.
    pii: Option<crate::lake::pii::Protector>,
    keep_orphans: bool,
    /// `[ingest] spill_rows`.
    spill_rows: usize,
    /// Staged bytes a table keeps in memory: a quarter of the memory budget.
    spill_bytes: usize,
    lake: Lake,
    ingested_at: chrono::DateTime<Utc>,
    /// The run's date ([`RunContext::today`]).
    today: NaiveDate,
    attendees: Option<AttendeeIndex>,
}

impl Stager {
    /// `today` is the run's date: its as-of date, or the UTC day it runs on without one.
    async fn new(lake: &Lake, ctx: &SessionContext, settings: &Settings, today: NaiveDate) -> Result<Self> {
        let mut known = cast::Accounts::default();
        if has_table(ctx, "core.accounts") {
            for b in sql(ctx, "SELECT account_id FROM core.accounts").await? {
                known.extend(strings(&b, "account_id")?.into_iter().flatten().map(Into::into));
            }
        }
        let erased = crate::lake::erasures::erased(ctx).await?;
        Ok(Self {
            known,
            erased_names: erased.iter().any(|(k, _)| k == "name"),
            erased,
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
                    Some((t.name, today - chrono::Duration::days(days)))
                })
                .collect(),
            keep_orphans: settings.keep_orphans(),
            spill_rows: settings.spill_rows(),
            spill_bytes: lake.memory_limit().map_or(usize::MAX, |m| (m / 4).max(16 << 20)),
            lake: lake.clone(),
            ingested_at: Utc::now(),
            today,
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
            ids: event_ids::EventIds::default(),
        }
    }

    /// Records in hand (API pages, calendar events): meetings are matched to accounts through
    /// their attendees first.
    async fn add_records(
        &mut self,
        ctx: &SessionContext,
        earlier: &[Staged],
        st: &mut Staged,
        mut records: RawRecords,
        config: &TableMapping,
        run_id: &str,
    ) -> Result<()> {
        if st.spec.name == "interactions"
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
        if st.spec.name == "interactions" && records.meetings {
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
        self.add(st, SourceBatch::from_records(records)?, config, run_id)
    }

    /// Casts one batch of a source into its table and stages the rows that land; a table whose
    /// staged rows outgrow the memory share of ingest moves them to the spill folder.
    fn add(&mut self, st: &mut Staged, src: SourceBatch, config: &TableMapping, run_id: &str) -> Result<()> {
        let spec = st.spec;
        let src = src.with_templates(config)?;
        let known = (!self.keep_orphans).then_some(&self.known);
        let stamp = Stamp {
            source: &src.origin,
            run_id,
            ingested_at: self.ingested_at,
        };
        let Some(cast) = cast_batch(spec, &src, config, known, stamp, &mut st.ids)? else {
            // no row of this batch is the table's (a filter routes them elsewhere)
            return Ok(());
        };
        for c in cast.provided {
            if !st.present.contains(&c) {
                st.present.push(c);
            }
        }
        let mut rejected = cast.rejected;
        if !self.erased.is_empty() {
            // a record that fails validation is still the erased subject's: it is not kept in
            // the quarantine either
            let before = rejected.len();
            rejected.retain(|r| !self.mentions_erased(&r.raw));
            st.load.erased += before - rejected.len();
            // another record that spells an erased name keeps its place, without the name
            if self.erased_names {
                for r in &mut rejected {
                    if let Some(s) = self.scrub(&r.raw) {
                        r.raw = s;
                    }
                }
            }
        }
        if let Some(p) = &self.pii {
            for r in &mut rejected {
                r.raw = p.protect_raw(&r.raw);
            }
        }
        // records a filter routes to another table are not this table's reads
        st.load.read += cast.read;
        st.rejected.extend(rejected);
        let mut batch = cast.batch;
        if !self.erased.is_empty() {
            let before = batch.num_rows();
            batch = self.suppress(spec, batch)?;
            if batch.num_rows() < before {
                st.load.erased += before - batch.num_rows();
                tracing::info!(
                    origin = src.origin.as_str(),
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
                    origin = src.origin.as_str(),
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
            self.known.extend(
                strings(&batch, "account_id")?
                    .into_iter()
                    .flatten()
                    .map(Into::into),
            );
        }
        if batch.num_rows() > 0 {
            st.batches.push(batch);
        }
        // contacts stay in memory while meetings may still need their e-mails
        let spillable = spec.name != "contacts";
        if spillable && (st.staged_rows() >= self.spill_rows || st.staged_bytes() >= self.spill_bytes) {
            st.spill(self.lake.spill_dir()?.as_ref())?;
        }
        Ok(())
    }
}

impl Stager {
    /// Whether a word of free text (split on what cannot be part of an id or an e-mail) is an
    /// erased account id, contact id or e-mail.
    fn is_erased_word(&self, t: &str) -> bool {
        use crate::lake::erasures::sha256;
        let h = sha256(t);
        self.erased.contains(&("account_id".to_string(), h.clone()))
            || self.erased.contains(&("contact_id".to_string(), h))
            || (t.contains('@')
                && self
                    .erased
                    .contains(&("email".to_string(), sha256(&t.to_lowercase()))))
    }

    /// Whether a raw record names an erased account id, contact id or e-mail anywhere in it.
    fn mentions_erased(&self, raw: &str) -> bool {
        words::words(raw).any(|(a, b)| self.is_erased_word(&raw[a..b]))
    }

    /// The spans of free text that spell an erased subject's name.
    fn name_hits(&self, text: &str) -> Vec<(usize, usize)> {
        if !self.erased_names {
            return Vec::new();
        }
        crate::lake::erasures::erased_names_in(text, |h| {
            self.erased.contains(&("name".to_string(), h.to_string()))
        })
    }

    /// Free text with every erased id, e-mail and name in it blanked (`None`: nothing to blank).
    fn scrub(&self, text: &str) -> Option<String> {
        let mut hits: Vec<(usize, usize)> = words::words(text)
            .filter(|(a, b)| self.is_erased_word(&text[*a..*b]))
            .chain(self.name_hits(text))
            .collect();
        if hits.is_empty() {
            return None;
        }
        hits.sort();
        let (mut out, mut at) = (String::with_capacity(text.len()), 0);
        for (a, b) in hits {
            if b <= at {
                continue; // inside a span already blanked
            }
            out.push_str(&text[at..a.max(at)]);
            out.push_str("[erased]");
            at = b;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

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
        // free text that names them (a custom field holding an e-mail, a ticket's subject)
        for column in ["attributes", "subject"] {
            let Ok(i) = batch.schema().index_of(column) else {
                continue;
            };
            let values = strings(&batch, column)?;
            let scrubbed: Vec<Option<String>> = values
                .iter()
                .map(|v| v.as_deref().and_then(|v| self.scrub(v)))
                .collect();
            if scrubbed.iter().any(Option::is_some) {
                let blanked: deltalake::arrow::array::StringArray = values
                    .iter()
                    .zip(&scrubbed)
                    .map(|(v, s)| s.as_deref().or(v.as_deref()))
                    .collect();
                let mut cols = batch.columns().to_vec();
                cols[i] = deltalake::arrow::compute::cast(&blanked, batch.schema().field(i).data_type())?;
                batch = RecordBatch::try_new(batch.schema(), cols)?;
            }
        }
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
    let mut stager = Stager::new(lake, &ctx, settings, run.today()).await?;
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
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        progress.start_bytes(&format!("read {}", spec.name), bytes);
        let config = drop.mapping(spec.name).cloned().unwrap_or_default();
        let mut table_rows = 0u64;
        for file in &files {
            read_files.push(source_state::FileState::of(&drop, file, spec.name));
            let origin = drop.origin(file);
            let started = std::time::Instant::now();
            let (read_before, rejected_before) = (st.load.read, st.rejected.len());
            let mut rows = 0u64;
            let mut done = 0u64;
            match drop.read(spec, file, stager.today).await? {
                Input::Records(records) => {
                    rows = records.rows.len() as u64;
                    stager
                        .add_records(&ctx, &staged, &mut st, records, &config, &run.run_id)
                        .await?;
                }
                Input::Batches(mut batches) => {
                    while let Some(src) = batches.next().await? {
                        rows += src.num_rows() as u64;
                        let at = src.offset.min(file.size);
                        progress.advance(at.saturating_sub(done));
                        done = done.max(at);
                        progress.rows(table_rows + rows);
                        stager.add(&mut st, src, &config, &run.run_id)?;
                    }
                }
            }
            progress.advance(file.size.saturating_sub(done));
            table_rows += rows;
            if rows == 0 {
                tracing::warn!(origin = origin.as_str(), "empty: nothing to load");
            }
            tracing::info!(
                origin = origin.as_str(),
                table = spec.name,
                bytes = file.size,
                records = rows,
                read = st.load.read - read_before,
                rejected = st.rejected.len() - rejected_before,
                seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                "file read"
            );
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
    let mut stager = Stager::new(lake, &ctx, settings, run.today()).await?;
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
            let run_id = run.run_id.clone();
            let fetched = api
                .fetch(
                    stream,
                    cursors.get(&stream.key).map(String::as_str),
                    progress,
                    async |page| match page {
                        connectors::rest::Page::Batch(b) => {
                            if b.num_rows() == 0 && b.batch.num_columns() == 0 {
                                tracing::warn!(origin = b.origin.as_str(), "empty: nothing to load");
                                return Ok(());
                            }
                            stager.add(&mut st, b, &stream.mapping, &run_id)
                        }
                        connectors::rest::Page::Meetings(records) => {
                            stager
                                .add_records(&ctx, &staged, &mut st, records, &stream.mapping, &run_id)
                                .await
                        }
                    },
                )
                .await?;
            st.load.pages += fetched.pages;
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
            // a large table: de-duplicated and written from disk, streamed in one commit
            st.spill(lake.spill_dir()?.as_ref())?;
            let spill = st.spill.take().expect("spill").finish()?;
            let staged = spill.rows;
            progress.start(&format!("load {}", st.spec.name), None);
            let (stats, how) = large::load(lake, &st, spill, &run.run_id).await?;
            progress.finish();
            if st.spec.kind == Kind::Event {
                st.load.duplicates = (staged as usize).saturating_sub(stats.inserted);
            }
            st.loaded(&stats, run);
            crate::fault_point("ingest:mid-load");
            tracing::info!(
                table = st.spec.name,
                inserted = stats.inserted,
                updated = stats.updated,
                duplicates = st.load.duplicates,
                staged,
                version = stats.version,
                how,
                "loaded (from the spill)"
            );
            report.tables.push(st.load);
            continue;
        }
        let staged: usize = st.batches.iter().map(RecordBatch::num_rows).sum();
        if let Some(batch) = dedupe(&st.batches, st.spec.key, st.spec.kind == Kind::Entity)? {
            progress.start(&format!("load {}", st.spec.name), None);
            let target = lake.target("core", st.spec.name).with_unique(&[st.spec.key]);
            let stats = match st.spec.kind {
                Kind::Entity => {
                    let compare = st.compare_columns();
                    target
                        .upsert(vec![batch], &[st.spec.key], &compare, &AUDIT_COLUMNS, &run.run_id)
                        .await?
                }
                Kind::Event => target.insert_new(vec![batch], st.spec.key, &run.run_id).await?,
            };
            progress.finish();
            if st.spec.kind == Kind::Event {
                st.load.duplicates = staged.saturating_sub(stats.inserted);
            }
            st.loaded(&stats, run);
            crate::fault_point("ingest:mid-load");
            tracing::info!(
                table = st.spec.name,
                inserted = stats.inserted,
                updated = stats.updated,
                duplicates = st.load.duplicates,
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
    // the attribute versions the lake holds and the history does not yet (this load's, or those
    // of a run interrupted after its merge), valid from the day the run is for
    let valid_from = run.today();
    for (table, key) in history::TABLES {
        let stats = history::record(lake, table, key, valid_from, &run.run_id, Utc::now()).await?;
        if stats.inserted > 0 {
            run.wrote(&format!("core.{}", history::TABLE), stats.inserted, stats.version);
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
