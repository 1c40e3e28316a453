//! `cslake gdpr erase | export`: the right to erasure and the right of access (GDPR Art. 17, 15).
//!
//! A subject is a contact (by e-mail) or an account (by id). Erasure looks for the subject in
//! every table of the lake: rows that are the subject (the contact, every row of the account,
//! quarantined records that mention it) are deleted, and other mentions are blanked (ids set to
//! null, the e-mail replaced by `[erased]` inside text such as attributes). Each affected table is
//! rewritten, and its history purged: every data file no longer in the current version is
//! vacuumed and every log entry before a new checkpoint deleted, so no earlier version, file or
//! statistic still holds the data. What remains is an audit row in `ops.erasures` with the
//! subject's SHA-256, never the subject itself, which later ingests use to keep it erased.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::Utc;
use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::checkpoints::{cleanup_expired_logs_for, create_checkpoint};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::SaveMode;

use crate::admin::mentions::Mentions;
use crate::lake::erasures::sha256;
use crate::lake::query::{has_table, sql, strings};
use crate::{Error, Lake, Result, RunContext};

/// Whom a request is about.
#[derive(Debug, Clone)]
pub enum Subject {
    Contact(String),
    Account(String),
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Contact(_) => "contact",
            Subject::Account(_) => "account",
        }
    }

    fn value(&self) -> String {
        match self {
            Subject::Contact(e) => e.trim().to_lowercase(),
            Subject::Account(a) => a.trim().to_string(),
        }
    }

    /// What audit records and logs show instead of the subject.
    pub fn hashed(&self) -> String {
        format!("{}:sha256:{}", self.kind(), sha256(&self.value()))
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableErasure {
    pub table: String,
    pub deleted: usize,
    pub blanked: usize,
    pub version: Option<u64>,
    /// Data files and log entries removed from the table's history.
    pub files_purged: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ErasureReport {
    pub subject: String,
    pub dry_run: bool,
    pub tables: Vec<TableErasure>,
    /// The erased identifiers as `ops.erasures` keeps them: (kind, SHA-256).
    #[serde(skip)]
    pub identifiers: Vec<(String, String)>,
    /// The backups the erasure was recorded in (a restore from them erases the subject again).
    pub backups: Vec<String>,
}

/// The identifiers that point at the subject: account ids, contact ids and e-mail addresses.
#[derive(Debug, Default)]
struct Identifiers {
    accounts: Vec<String>,
    contacts: Vec<String>,
    /// In clear, matched ignoring case.
    emails: Vec<String>,
    /// Protected forms (`[pii]`), matched exactly.
    tokens: Vec<String>,
    /// The subject's names (the account's, its contacts'), blanked where free text mentions them.
    names: Vec<String>,
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn list(v: &[String]) -> String {
    v.iter().map(|s| lit(s)).collect::<Vec<_>>().join(", ")
}

async fn identifiers(
    ctx: &SessionContext,
    subject: &Subject,
    pii: Option<&crate::lake::pii::Protector>,
) -> Result<Identifiers> {
    let mut ids = Identifiers::default();
    let contacts_where = match subject {
        Subject::Contact(_) => {
            ids.emails.push(subject.value());
            if let Some(p) = pii {
                ids.tokens.extend(p.forms("email", &subject.value()));
            }
            let mut w = format!("lower(trim(email)) = {}", lit(&subject.value()));
            if !ids.tokens.is_empty() {
                w.push_str(&format!(" OR email IN ({})", list(&ids.tokens)));
            }
            w
        }
        Subject::Account(a) => {
            ids.accounts.push(a.trim().to_string());
            format!("account_id = {}", lit(a.trim()))
        }
    };
    if has_table(ctx, "core.contacts") {
        let q = format!("SELECT contact_id, email FROM core.contacts WHERE {contacts_where}");
        for b in sql(ctx, &q).await? {
            ids.contacts
                .extend(strings(&b, "contact_id")?.into_iter().flatten());
            for e in strings(&b, "email")?.into_iter().flatten() {
                if crate::lake::pii::Protector::is_protected(&e) {
                    // the protected e-mail, and its clear form for records loaded before [pii]
                    if let Some(p) = pii {
                        let clear = p.reveal(&e);
                        if clear != e && !ids.emails.contains(&clear) {
                            ids.emails.push(clear);
                        }
                    }
                    if !ids.tokens.contains(&e) {
                        ids.tokens.push(e);
                    }
                } else {
                    let e = e.trim().to_lowercase();
                    if !e.is_empty() && !ids.emails.contains(&e) {
                        ids.emails.push(e);
                    }
                }
            }
        }
    }
    // names, as people write them into ticket subjects, notes and payloads
    let mut names: Vec<String> = Vec::new();
    let mut read_names = async |q: String| -> Result<()> {
        for b in sql(ctx, &q).await? {
            names.extend(strings(&b, "name")?.into_iter().flatten());
        }
        Ok(())
    };
    if has_table(ctx, "core.contacts") && !ids.contacts.is_empty() {
        read_names(format!(
            "SELECT name FROM core.contacts WHERE contact_id IN ({})",
            list(&ids.contacts)
        ))
        .await?;
    }
    if has_table(ctx, "core.accounts") && !ids.accounts.is_empty() {
        read_names(format!(
            "SELECT name FROM core.accounts WHERE account_id IN ({})",
            list(&ids.accounts)
        ))
        .await?;
    }
    for n in names {
        let clear = match pii {
            Some(p) if crate::lake::pii::Protector::is_protected(&n) => p.reveal(&n),
            _ => n,
        };
        let clear = clear.trim().to_string();
        // a name of one or two letters would blank ordinary words
        if clear.chars().count() >= 3
            && !crate::lake::pii::Protector::is_protected(&clear)
            && !ids.names.contains(&clear)
        {
            ids.names.push(clear);
        }
    }
    ids.contacts.sort();
    ids.contacts.dedup();
    Ok(ids)
}

/// A column that is an entity's own name (a contact's, an account's, a CSM's, a playbook's): a row
/// of the subject goes whole, and the same name on another row is another person or company
/// that happens to share it, so names are blanked in free text only.
fn is_own_name(column: &str) -> bool {
    column == "name"
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Per table: the rows that are the subject, and the rows that mention it.
fn predicates(table: &str, schema: &Schema, ids: &Identifiers) -> (Option<String>, Option<String>) {
    let mut mention: Vec<String> = Vec::new();
    let exact: Vec<String> = ids.accounts.iter().chain(&ids.contacts).cloned().collect();
    for f in schema.fields().iter().filter(|f| is_text(f.data_type())) {
        let c = format!("\"{}\"", f.name());
        if !exact.is_empty() {
            mention.push(format!("{c} IN ({})", list(&exact)));
        }
        mention.push(format!(
            "cslake_mentions(CAST({c} AS VARCHAR), {})",
            is_own_name(f.name())
        ));
    }
    let mention = (!mention.is_empty()).then(|| mention.join(" OR "));
    let has = |c: &str| schema.field_with_name(c).is_ok();
    let mut delete: Vec<String> = Vec::new();
    if !ids.accounts.is_empty() && has("account_id") {
        delete.push(format!("account_id IN ({})", list(&ids.accounts)));
    }
    if table == "core.contacts" && !ids.contacts.is_empty() {
        delete.push(format!("contact_id IN ({})", list(&ids.contacts)));
    }
    // a quarantined record is the raw input: it goes whole
    if table == "ops.quarantine" {
        delete.extend(mention.clone());
    }
    let delete = (!delete.is_empty()).then(|| delete.join(" OR "));
    (delete, mention)
}

/// The SELECT that keeps every other row and blanks the mentions in what stays.
fn rewrite_query(table: &str, schema: &Schema, ids: &Identifiers, delete: Option<&str>) -> String {
    let exact: Vec<String> = ids.accounts.iter().chain(&ids.contacts).cloned().collect();
    let cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let c = format!("\"{}\"", f.name());
            if !is_text(f.data_type()) {
                return c;
            }
            let mut expr = format!("cslake_blank(CAST({c} AS VARCHAR), {})", is_own_name(f.name()));
            if !exact.is_empty() {
                let blank = if f.is_nullable() { "NULL" } else { "'[erased]'" };
                expr = format!("CASE WHEN {c} IN ({}) THEN {blank} ELSE {expr} END", list(&exact));
            }
            format!("{expr} AS {c}")
        })
        .collect();
    let filter = delete.map(|d| format!(" WHERE NOT ({d})")).unwrap_or_default();
    format!("SELECT {} FROM {table}{filter}", cols.join(", "))
}

/// A table that can hold something of the subject, and the conditions that find it.
struct SubjectTable {
    zone: String,
    name: String,
    table: String,
    schema: Schema,
    /// Rows that are the subject (deleted on erasure).
    delete: Option<String>,
    /// Rows that are the subject or mention it.
    any: String,
}

/// Every lake table (but the erasure audit itself) with a column the subject could be in.
async fn subject_tables(lake: &Lake, ctx: &SessionContext, ids: &Identifiers) -> Result<Vec<SubjectTable>> {
    let ids_anywhere: Vec<String> = ids.accounts.iter().chain(&ids.contacts).cloned().collect();
    Mentions::new(&ids_anywhere, &ids.emails, &ids.tokens, &ids.names)?.register(ctx);
    let mut out = Vec::new();
    for (zone, name) in lake.tables().await? {
        let table = format!("{zone}.{name}");
        if table == "ops.erasures" {
            continue;
        }
        let schema = ctx.table(table.as_str()).await?.schema().as_arrow().clone();
        let (delete, mention) = predicates(&table, &schema, ids);
        let Some(any) = [delete.clone(), mention]
            .into_iter()
            .flatten()
            .reduce(|a, b| format!("({a}) OR ({b})"))
        else {
            continue;
        };
        out.push(SubjectTable {
            zone,
            name,
            table,
            schema,
            delete,
            any,
        });
    }
    Ok(out)
}

async fn count(ctx: &SessionContext, table: &str, pred: &str) -> Result<usize> {
    let b = sql(ctx, &format!("SELECT COUNT(*) AS n FROM {table} WHERE {pred}")).await?;
    Ok(b.first()
        .map(|b| crate::lake::query::floats(b, "n"))
        .transpose()?
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0) as usize)
}

/// Rewrites `table` with `batches` as its only version, then removes every older file and log
/// entry: after this, the table has no history that could hold what was removed.
async fn rewrite_and_purge(
    lake: &Lake,
    zone: &str,
    name: &str,
    batches: Vec<RecordBatch>,
    run_id: &str,
) -> Result<(Option<u64>, usize)> {
    let Some(table) = overwrite(lake, zone, name, batches, run_id).await? else {
        return Ok((None, 0));
    };
    let version = table.version();
    Ok((version, purge(table).await?))
}

/// Drops a table's history without rewriting its rows. For a table whose rows no longer hold
/// the subject but whose history (earlier versions' files and statistics) still does.
async fn purge_history(lake: &Lake, zone: &str, name: &str) -> Result<usize> {
    match lake.target(zone, name).open().await? {
        Some(table) => purge(table).await,
        None => Ok(0),
    }
}

/// Removes every data file the current version does not use and every log entry before a new
/// checkpoint; returns how many files went.
async fn purge(table: DeltaTable) -> Result<usize> {
    let (table, vacuumed) = table
        .vacuum()
        .with_retention_period(chrono::Duration::zero())
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .await?;
    Ok(vacuumed.files_deleted.len() + purge_log(table).await?)
}

/// Checkpoints the table and deletes every log entry before it. A file the log still lists but
/// the store no longer holds is removed from the log first (a checkpoint would carry its `add`,
/// statistics included, and the table would fail to read).
async fn purge_log(mut table: DeltaTable) -> Result<usize> {
    table.load().await?;
    let (mut table, _) = table.filesystem_check().await?;
    table.load().await?;
    create_checkpoint(&table, None).await?;
    let latest = table.version().unwrap_or_default();
    // every log entry before the checkpoint, whatever its age
    Ok(cleanup_expired_logs_for(latest, table.log_store().as_ref(), i64::MAX, None).await?)
}

/// The first file of a table's remaining log (commits, checkpoints: file statistics, partition
/// values, paths) that still mentions the subject's ids, e-mails or protected forms, matched as
/// the erasure matches them in rows (`mentions`, built without names: another company or person
/// may share one, and keep it).
async fn log_mention(lake: &Lake, zone: &str, name: &str, mentions: &Mentions) -> Result<Option<String>> {
    use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;

    let store = lake.store();
    let log = lake.path(&format!("{zone}/{name}/_delta_log"));
    let files: Vec<_> = store.list(Some(&log)).try_collect().await?;
    for meta in files {
        let file = meta.location.filename().unwrap_or_default().to_string();
        let bytes = store.get(&meta.location).await?.bytes().await?;
        let text = if file.ends_with(".parquet") {
            let mut text = String::new();
            let bad = |e: deltalake::parquet::errors::ParquetError| {
                Error::Job(format!("reading {zone}.{name} checkpoint {file}: {e}"))
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(bad)?;
            for batch in reader {
                let batch = batch?;
                for col in batch.columns() {
                    let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
                    for i in 0..batch.num_rows() {
                        text.push_str(&f.value(i).to_string());
                        text.push('\n');
                    }
                }
            }
            text
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        if mentions.mentions(&text, true) {
            return Ok(Some(file));
        }
    }
    Ok(None)
}

/// Replaces a table's rows with `batches` (cast to its schema, partitioning kept) as a new version.
pub(crate) async fn overwrite(
    lake: &Lake,
    zone: &str,
    name: &str,
    batches: Vec<RecordBatch>,
    run_id: &str,
) -> Result<Option<DeltaTable>> {
    let target = lake.target(zone, name);
    let Some(table) = target.open().await? else {
        return Ok(None);
    };
    let (schema, partitions) = {
        let state = table.snapshot()?;
        (
            state.snapshot().arrow_schema(),
            state.metadata().partition_columns().to_vec(),
        )
    };
    let mut batches = batches
        .into_iter()
        .map(|b| conform(&b, &schema))
        .collect::<Result<Vec<_>>>()?;
    if batches.is_empty() {
        // every row was the subject's: the table stays, empty
        batches.push(RecordBatch::new_empty(schema.clone()));
    }
    let mut write = table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_commit_properties(target.commit(run_id));
    if !partitions.is_empty() {
        write = write.with_partition_columns(partitions);
    }
    Ok(Some(write.await?))
}

/// Casts a batch to the table's schema (string views back to strings, nullability as declared).
fn conform(batch: &RecordBatch, schema: &Arc<Schema>) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            let col = batch
                .column_by_name(f.name())
                .ok_or_else(|| Error::Job(format!("rewrite lost column {}", f.name())))?;
            Ok(cast(col, f.data_type())?)
        })
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Erases the subject from every table and from the tables' history.
pub async fn erase(
    lake: &Lake,
    subject: &Subject,
    pii: Option<&crate::lake::pii::Protector>,
    dry_run: bool,
    run: &mut RunContext,
) -> Result<ErasureReport> {
    let ctx = lake.session().await?;
    let ids = identifiers(&ctx, subject, pii).await?;
    let in_logs = logs_mentions(&ids)?;
    let mut report = ErasureReport {
        subject: subject.hashed(),
        dry_run,
        ..Default::default()
    };
    for SubjectTable {
        zone,
        name,
        table,
        schema,
        delete,
        any,
    } in subject_tables(lake, &ctx, &ids).await?
    {
        let hits = count(&ctx, &table, &any).await?;
        if hits == 0 {
            // the rows are clean, but earlier versions may not be
            if log_mention(lake, &zone, &name, &in_logs).await?.is_some() {
                let mut entry = TableErasure {
                    table: table.clone(),
                    ..Default::default()
                };
                if !dry_run {
                    entry.files_purged = purge_history(lake, &zone, &name).await?;
                    verify_log(lake, &zone, &name, &table, &in_logs).await?;
                }
                tracing::info!(table = table.as_str(), "erased from the history");
                report.tables.push(entry);
            }
            continue;
        }
        let deleted = match &delete {
            Some(d) => count(&ctx, &table, d).await?,
            None => 0,
        };
        let mut entry = TableErasure {
            table: table.clone(),
            deleted,
            blanked: hits - deleted,
            ..Default::default()
        };
        if !dry_run {
            let batches = sql(&ctx, &rewrite_query(&table, &schema, &ids, delete.as_deref())).await?;
            let (version, purged) = rewrite_and_purge(lake, &zone, &name, batches, &run.run_id).await?;
            entry.version = version;
            entry.files_purged = purged;
            verify_log(lake, &zone, &name, &table, &in_logs).await?;
            run.wrote(&table, entry.deleted + entry.blanked, version);
        }
        tracing::info!(
            table = table.as_str(),
            deleted = entry.deleted,
            blanked = entry.blanked,
            "erased"
        );
        report.tables.push(entry);
    }
    if !dry_run {
        record(lake, subject, &ids, &mut report, run).await?;
    }
    Ok(report)
}

/// What a table's log is searched for: the subject's ids, e-mails and protected forms.
fn logs_mentions(ids: &Identifiers) -> Result<Mentions> {
    let ids_anywhere: Vec<String> = ids.accounts.iter().chain(&ids.contacts).cloned().collect();
    Mentions::new(&ids_anywhere, &ids.emails, &ids.tokens, &[])
}

/// Fails the erasure, naming the table and log file, when a table's log still holds the
/// subject after its history was purged: an erasure that reports success must be complete.
async fn verify_log(lake: &Lake, zone: &str, name: &str, table: &str, mentions: &Mentions) -> Result<()> {
    match log_mention(lake, zone, name, mentions).await? {
        None => Ok(()),
        Some(file) => Err(Error::Job(format!(
            "erasure incomplete: the log of {table} ({file}) still holds the subject after its \
             history was purged (its rows are erased); the subject is not recorded as erased: \
             run the erasure again"
        ))),
    }
}

/// `ops.erasures`: one row per erased identifier, as a hash, so later ingests keep it out.
async fn record(
    lake: &Lake,
    subject: &Subject,
    ids: &Identifiers,
    report: &mut ErasureReport,
    run: &mut RunContext,
) -> Result<()> {
    let mut hashes: Vec<(&str, String)> = vec![(subject.kind(), sha256(&subject.value()))];
    hashes.extend(ids.emails.iter().map(|e| ("email", sha256(e))));
    hashes.extend(ids.contacts.iter().map(|c| ("contact_id", sha256(c))));
    hashes.extend(ids.accounts.iter().map(|a| ("account_id", sha256(a))));
    // names too, so a re-exported ticket subject that spells one is blanked on ingest
    hashes.extend(
        ids.names
            .iter()
            .filter_map(|n| crate::lake::erasures::name_key(n))
            .map(|k| ("name", sha256(&k))),
    );
    hashes.sort();
    hashes.dedup();
    report.identifiers = hashes.iter().map(|(k, h)| (k.to_string(), h.clone())).collect();
    let n = hashes.len();
    let tables: BTreeMap<&str, usize> = report
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.deleted + t.blanked))
        .collect();
    let schema = crate::lake::erasures::schema();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![run.run_id.as_str(); n])),
            Arc::new(StringArray::from(vec![report.subject.as_str(); n])),
            Arc::new(StringArray::from_iter_values(hashes.iter().map(|h| h.0))),
            Arc::new(StringArray::from_iter_values(hashes.iter().map(|h| h.1.as_str()))),
            Arc::new(StringArray::from(vec![
                serde_json::to_string(&tables)
                    .unwrap_or_default();
                n
            ])),
            Arc::new(StringArray::from(vec![run.actor.as_str(); n])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros(); n]).with_timezone("UTC"),
            ),
        ],
    )?;
    let stats = lake
        .target("ops", "erasures")
        .append(vec![batch], &[], &run.run_id)
        .await?;
    run.wrote("ops.erasures", n, stats.version);
    Ok(())
}

/// The subjects of the lake whose identifiers hash to one of `hashes` (kind, SHA-256), as
/// `ops.erasures` and backups keep them: accounts by id, contacts by e-mail, found in every table
/// that has such a column (a table restored alone may hold a subject its lake no longer knows).
pub async fn subjects_with_hashes(lake: &Lake, hashes: &HashSet<(String, String)>) -> Result<Vec<Subject>> {
    let ctx = lake.session().await?;
    let wanted = |kinds: &[&str], v: &str| {
        let h = sha256(v);
        kinds.iter().any(|k| hashes.contains(&(k.to_string(), h.clone())))
    };
    let (mut accounts, mut emails) = (BTreeSet::new(), BTreeSet::new());
    for (zone, name) in lake.tables().await? {
        let table = format!("{zone}.{name}");
        if table == "ops.erasures" || !has_table(&ctx, &table) {
            continue;
        }
        let schema = ctx.table(table.as_str()).await?.schema().clone();
        for (column, kinds) in [
            ("account_id", &["account", "account_id"][..]),
            ("email", &["contact", "email"][..]),
        ] {
            if schema.field_with_unqualified_name(column).is_err() {
                continue;
            }
            let q = format!(
                "SELECT DISTINCT CAST({column} AS VARCHAR) AS v FROM {table} WHERE {column} IS NOT NULL"
            );
            for b in sql(&ctx, &q).await? {
                for v in strings(&b, "v")?.into_iter().flatten() {
                    let key = if column == "email" {
                        v.trim().to_lowercase()
                    } else {
                        v.trim().to_string()
                    };
                    if wanted(kinds, &key) {
                        if column == "email" {
                            emails.insert(key);
                        } else {
                            accounts.insert(key);
                        }
                    }
                }
            }
        }
    }
    Ok(accounts
        .into_iter()
        .map(Subject::Account)
        .chain(emails.into_iter().map(Subject::Contact))
        .collect())
}

/// Everything the lake holds on the subject, table by table, as JSON rows (Art. 15).
pub async fn export(
    lake: &Lake,
    subject: &Subject,
    pii: Option<&crate::lake::pii::Protector>,
) -> Result<serde_json::Value> {
    let ctx = lake.session().await?;
    let ids = identifiers(&ctx, subject, pii).await?;
    let mut out = serde_json::Map::new();
    for SubjectTable { table, any, .. } in subject_tables(lake, &ctx, &ids).await? {
        let batches = sql(&ctx, &format!("SELECT * FROM {table} WHERE {any}")).await?;
        let mut rows: Vec<serde_json::Value> = Vec::new();
        for b in &batches {
            let mut w = deltalake::arrow::json::ArrayWriter::new(Vec::new());
            w.write(b)?;
            w.finish()?;
            let bytes = w.into_inner();
            if let Ok(serde_json::Value::Array(r)) = serde_json::from_slice(&bytes) {
                rows.extend(r);
            }
        }
        if let Some(p) = pii {
            // the subject receives their data in clear
            rows.iter_mut().for_each(|r| p.reveal_json(r));
        }
        if !rows.is_empty() {
            out.insert(table, serde_json::Value::Array(rows));
        }
    }
    Ok(serde_json::json!({"subject": subject.hashed(), "kind": subject.kind(), "tables": out}))
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RotationReport {
    pub key: String,
    /// Table → values re-encrypted.
    pub tables: BTreeMap<String, usize>,
}

/// `cslake pii rotate`: every value encrypted under an old key, re-encrypted under the current
/// one (the protected columns, and e-mails inside quarantined records). Older table versions keep
/// the old ciphertexts until `cslake maintain` vacuums them; retire the old key after that.
pub async fn rotate(
    lake: &Lake,
    pii: &crate::lake::pii::Protector,
    run: &mut RunContext,
) -> Result<RotationReport> {
    use deltalake::arrow::array::{Array, AsArray};
    let ctx = lake.session().await?;
    let mut report = RotationReport {
        key: pii.key_id().to_string(),
        ..Default::default()
    };
    let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &pii.columns {
        if let Some((t, col)) = c.split_once('.') {
            targets
                .entry(format!("core.{t}"))
                .or_default()
                .push(col.to_string());
        }
    }
    targets
        .entry("ops.quarantine".into())
        .or_default()
        .push("raw".into());
    for (table, columns) in targets {
        if !has_table(&ctx, &table) {
            continue;
        }
        let batches = sql(&ctx, &format!("SELECT * FROM {table}")).await?;
        let mut changed = 0usize;
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            let mut cols = b.columns().to_vec();
            let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            for col in &columns {
                let Ok(i) = b.schema().index_of(col) else { continue };
                let s = cast(b.column(i), &DataType::Utf8)?;
                let s = s.as_string::<i32>();
                let values: StringArray = (0..s.len())
                    .map(|r| {
                        (!s.is_null(r)).then(|| {
                            let v = s.value(r);
                            let new = if col == "raw" {
                                let mut j: serde_json::Value = serde_json::from_str(v)
                                    .unwrap_or(serde_json::Value::String(v.to_string()));
                                if let serde_json::Value::Object(m) = &mut j {
                                    for x in m.values_mut() {
                                        if let serde_json::Value::String(t) = x {
                                            *t = pii.rekey("email", t);
                                        }
                                    }
                                }
                                match j {
                                    serde_json::Value::String(x) => x,
                                    other => other.to_string(),
                                }
                            } else {
                                pii.rekey(col, v)
                            };
                            if new != v {
                                changed += 1;
                            }
                            new
                        })
                    })
                    .collect();
                cols[i] = Arc::new(values);
                fields[i] = fields[i].clone().with_data_type(DataType::Utf8);
            }
            out.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?);
        }
        if changed > 0 {
            let (zone, name) = table.split_once('.').unwrap_or(("core", &table));
            let t = overwrite(lake, zone, name, out, &run.run_id).await?;
            run.wrote(&table, changed, t.and_then(|t| t.version()));
            report.tables.insert(table, changed);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::{Identifiers, Subject, erase, log_mention, logs_mentions};
    use crate::{Lake, RunContext};

    fn notes(accounts: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("account_id", DataType::Utf8, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        let notes: Vec<String> = accounts.iter().map(|a| format!("called {a}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(accounts.to_vec())),
                Arc::new(StringArray::from(notes)),
            ],
        )
        .unwrap()
    }

    /// A table whose rows no longer hold the subject, but whose earlier version does (a file
    /// and the log's statistics): the erasure purges that history too.
    #[tokio::test]
    async fn history_that_still_holds_the_subject_is_purged() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            &dir.path().display().to_string(),
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
        let target = lake.target("actions", "notes");
        target
            .overwrite(vec![notes(&["ACC-1", "ACC-2"])], "r1")
            .await
            .unwrap();
        target.overwrite(vec![notes(&["ACC-1"])], "r2").await.unwrap();
        let mentions = logs_mentions(&Identifiers {
            accounts: vec!["ACC-2".into()],
            ..Default::default()
        })
        .unwrap();
        let found = log_mention(&lake, "actions", "notes", &mentions).await.unwrap();
        assert!(found.is_some_and(|f| f.ends_with(".json")));

        let mut run = RunContext::new("gdpr erase", "test", vec![], None);
        let report = erase(&lake, &Subject::Account("ACC-2".into()), None, false, &mut run)
            .await
            .unwrap();
        let entry = report.tables.iter().find(|t| t.table == "actions.notes").unwrap();
        assert_eq!((entry.deleted, entry.blanked), (0, 0));
        assert!(entry.files_purged >= 2, "{entry:?}");
        assert_eq!(
            log_mention(&lake, "actions", "notes", &mentions).await.unwrap(),
            None
        );
        // one data file left, the current one, and it reads as before
        let data: Vec<_> = std::fs::read_dir(dir.path().join("actions/notes"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            .collect();
        assert_eq!(data.len(), 1);
        let rows = lake.query("SELECT account_id FROM actions.notes").await.unwrap();
        assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    }
}
