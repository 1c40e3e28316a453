//! `cslake backup` and `cslake restore`.
//!
//! A backup is a set of generations in a second store (a folder, `s3://…`). A generation is the
//! list of the lake's objects at one backup, each with its size and SHA-256, in
//! `_cslake_backup/generations/<id>.json`; the objects themselves are stored once, at their path
//! in the lake, and shared by every generation that lists them (Delta data files and log entries
//! never change once written, so only objects no generation holds yet are copied;
//! `_last_checkpoint`, which does change, is kept per generation). Data files are copied before log
//! entries and the generation's list is written last, so a generation is complete or absent.
//! After each backup the generations beyond `[backup]`'s retention (30 daily, 12 monthly, 7
//! yearly by default) are pruned, with the objects no kept generation lists.
//!
//! Erasure: `cslake gdpr erase` records the erased identifiers (hashes only) in every backup the
//! lake was copied to (`ops.backups`), under `_cslake_backup/erasures/`; `restore` re-applies every
//! recorded erasure to what it restored, and says how many subjects it removed. Backups are not
//! rewritten: a generation keeps the subject until it ages out of the retention.
//!
//! Restoring copies a generation (the newest, or `--generation`) into a lake without those tables
//! (a new location after a loss), checking every object against its checksum; `restore --table
//! --version` brings one table of the live lake back to an earlier version (Delta RESTORE).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use deltalake::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::lake::erasures::sha256_bytes;
use crate::lake::query::{has_table, sql, strings};
use crate::lake::schema::ColType;
use crate::{Error, Lake, Result, RunContext};

/// The single manifest of backups made before generations: read as one generation.
const LEGACY_MANIFEST: &str = "_cslake_backup/manifest.json";
const GENERATIONS: &str = "_cslake_backup/generations";
const ERASURES: &str = "_cslake_backup/erasures";

/// One object of a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub size: u64,
    pub sha256: String,
    /// Where the backup keeps it, when not at its lake path (objects that change, such as
    /// `_last_checkpoint`, are kept per generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<String>,
}

impl Entry {
    fn at<'a>(&'a self, rel: &'a str) -> &'a str {
        self.stored.as_deref().unwrap_or(rel)
    }
}

/// The lake as one backup found it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Generation {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub taken_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub run_id: String,
    /// Path relative to the lake root → size and SHA-256.
    pub objects: BTreeMap<String, Entry>,
}

/// How many generations a backup keeps: the `last` newest, and the newest of each of the last
/// `daily` days, `monthly` months and `yearly` years that have one (the newest always stays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub last: usize,
    pub daily: usize,
    pub monthly: usize,
    pub yearly: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            last: 3,
            daily: 30,
            monthly: 12,
            yearly: 7,
        }
    }
}

impl Retention {
    pub fn from_settings(settings: &crate::Settings) -> Self {
        let c = &settings.file.backup;
        let d = Self::default();
        Self {
            last: c.keep_last.unwrap_or(d.last),
            daily: c.keep_daily.unwrap_or(d.daily),
            monthly: c.keep_monthly.unwrap_or(d.monthly),
            yearly: c.keep_yearly.unwrap_or(d.yearly),
        }
    }
}

/// The period a generation falls in: (year, month, day), zero where the period is longer.
type Bucket = fn(&DateTime<Utc>) -> (i32, u32, u32);

/// The generations `policy` keeps, of `(id, taken_at)`.
pub fn kept(generations: &[(String, DateTime<Utc>)], policy: Retention) -> BTreeSet<String> {
    let mut newest_first: Vec<&(String, DateTime<Utc>)> = generations.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut keep = BTreeSet::new();
    for (id, _) in newest_first.iter().take(policy.last.max(1)) {
        keep.insert(id.clone());
    }
    let buckets: [(usize, Bucket); 3] = [
        (policy.daily, |t| (t.year(), t.month(), t.day())),
        (policy.monthly, |t| (t.year(), t.month(), 0)),
        (policy.yearly, |t| (t.year(), 0, 0)),
    ];
    for (n, bucket) in buckets {
        let mut seen = BTreeSet::new();
        for (id, t) in &newest_first {
            if seen.len() >= n {
                break;
            }
            if seen.insert(bucket(t)) {
                keep.insert(id.clone());
            }
        }
    }
    keep
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupReport {
    pub to: String,
    pub generation: String,
    pub copied: usize,
    pub bytes: u64,
    pub unchanged: usize,
    pub objects: usize,
    /// Generations kept after pruning, and the ones pruned with their objects.
    pub generations: usize,
    pub pruned: Vec<String>,
    pub objects_removed: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub at: String,
    pub generations: usize,
    pub checked: usize,
    pub bad: Vec<String>,
}

struct Side {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
}

impl Side {
    fn open(location: &str, storage: &std::collections::HashMap<String, String>) -> Result<Self> {
        let url: Url = crate::lake::location_url(location, true)?;
        let (store, prefix) = crate::lake::storage::open(&url, storage)?;
        Ok(Self { store, prefix })
    }

    fn path(&self, rel: &str) -> StorePath {
        let mut parts: Vec<String> = self.prefix.parts().map(|p| p.as_ref().to_string()).collect();
        parts.extend(rel.split('/').filter(|s| !s.is_empty()).map(str::to_string));
        StorePath::from_iter(parts)
    }

    /// Every object under `under` (relative to the root), relative path → size.
    async fn list_under(&self, under: &str) -> Result<BTreeMap<String, u64>> {
        let n = self.prefix.parts().count();
        let at = self.path(under);
        let all: Vec<object_store::ObjectMeta> = self.store.list(Some(&at)).try_collect().await?;
        Ok(all
            .into_iter()
            // leases belong to the writers of this store at this moment, not to its data
            .filter(|m| !m.location.parts().skip(n).any(|p| p.as_ref() == "_cslake_leases"))
            .map(|m| {
                let rel = m
                    .location
                    .parts()
                    .skip(n)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/");
                (rel, m.size)
            })
            .collect())
    }

    async fn list(&self) -> Result<BTreeMap<String, u64>> {
        self.list_under("").await
    }

    async fn get(&self, rel: &str) -> Result<bytes::Bytes> {
        Ok(self.store.get(&self.path(rel)).await?.bytes().await?)
    }

    async fn put(&self, rel: &str, bytes: bytes::Bytes) -> Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, rel: &str) -> Result<Option<T>> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => serde_json::from_slice(&r.bytes().await?)
                .map(Some)
                .map_err(|e| Error::Job(format!("backup file {rel} is unreadable: {e}"))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every generation of the backup, oldest first (a backup made before generations is one).
    async fn generations(&self) -> Result<Vec<Generation>> {
        let mut out = Vec::new();
        for rel in self.list_under(GENERATIONS).await?.keys() {
            let Some(name) = rel.strip_prefix(&format!("{GENERATIONS}/")) else {
                continue;
            };
            // per-generation objects live in folders beside the lists
            if name.contains('/') || !name.ends_with(".json") {
                continue;
            }
            if let Some(mut g) = self.read_json::<Generation>(rel).await? {
                if g.id.is_empty() {
                    g.id = name.trim_end_matches(".json").to_string();
                }
                out.push(g);
            }
        }
        if let Some(mut legacy) = self.read_json::<Generation>(LEGACY_MANIFEST).await? {
            legacy.id = "legacy".into();
            if legacy.taken_at.is_none() {
                legacy.taken_at = self
                    .store
                    .head(&self.path(LEGACY_MANIFEST))
                    .await
                    .ok()
                    .map(|m| m.last_modified);
            }
            out.push(legacy);
        }
        out.sort_by_key(|g| (g.taken_at, g.id.clone()));
        Ok(out)
    }
}

/// Objects that change in place: kept per generation.
fn mutable(rel: &str) -> bool {
    rel.ends_with("_last_checkpoint")
}

/// Data files first, then log entries, `_last_checkpoint` last: the order that keeps the copy
/// consistent while it is being made.
fn copy_order(rel: &str) -> u8 {
    if mutable(rel) {
        2
    } else if rel.contains("/_delta_log/") {
        1
    } else {
        0
    }
}

fn generation_list(id: &str) -> String {
    if id == "legacy" {
        LEGACY_MANIFEST.to_string()
    } else {
        format!("{GENERATIONS}/{id}.json")
    }
}

/// A new generation of the lake at `to`, then the retention applied there.
pub async fn backup(
    lake: &Lake,
    to: &str,
    storage: &std::collections::HashMap<String, String>,
    retention: Retention,
    run: &mut RunContext,
) -> Result<BackupReport> {
    let src = Side {
        store: lake.store(),
        prefix: lake.path(""),
    };
    let dst = Side::open(to, storage)?;
    let generations = dst.generations().await?;
    // what the backup already holds, as the generations list it
    let mut held: BTreeMap<String, Entry> = BTreeMap::new();
    for g in &generations {
        for (rel, e) in &g.objects {
            if e.stored.is_none() {
                held.insert(rel.clone(), e.clone());
            }
        }
    }
    let existing = dst.list().await?;
    let mut objects: Vec<(String, u64)> = src
        .list()
        .await?
        .into_iter()
        .filter(|(rel, _)| !rel.starts_with("_cslake_backup/"))
        .collect();
    objects.sort_by_key(|(rel, _)| (copy_order(rel), rel.clone()));
    let taken_at = Utc::now();
    let id = taken_at.format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let mut report = BackupReport {
        to: to.to_string(),
        generation: id.clone(),
        objects: objects.len(),
        ..Default::default()
    };
    let mut generation = Generation {
        id: id.clone(),
        taken_at: Some(taken_at),
        run_id: run.run_id.clone(),
        objects: BTreeMap::new(),
    };
    for (rel, size) in objects {
        if !mutable(&rel)
            && let Some(e) = held
                .get(&rel)
                .filter(|e| e.size == size && existing.get(&rel) == Some(&size))
        {
            report.unchanged += 1;
            generation.objects.insert(rel, e.clone());
            continue;
        }
        let bytes = src.get(&rel).await?;
        let entry = Entry {
            size: bytes.len() as u64,
            sha256: sha256_bytes(&bytes),
            stored: mutable(&rel).then(|| format!("{GENERATIONS}/{id}/{rel}")),
        };
        dst.put(entry.at(&rel), bytes).await?;
        report.copied += 1;
        report.bytes += entry.size;
        generation.objects.insert(rel, entry);
    }
    let json = serde_json::to_vec_pretty(&generation).map_err(|e| Error::Job(e.to_string()))?;
    dst.put(&generation_list(&id), json.into()).await?;

    // retention: the generations it no longer keeps go, with what only they listed
    let mut all = generations;
    all.push(generation);
    let dated: Vec<(String, DateTime<Utc>)> = all
        .iter()
        .map(|g| (g.id.clone(), g.taken_at.unwrap_or(taken_at)))
        .collect();
    let keep = kept(&dated, retention);
    let (kept_gens, pruned): (Vec<Generation>, Vec<Generation>) =
        all.into_iter().partition(|g| keep.contains(&g.id));
    let still: HashSet<String> = kept_gens
        .iter()
        .flat_map(|g| g.objects.iter().map(|(rel, e)| e.at(rel).to_string()))
        .collect();
    for g in &pruned {
        // the list first: a generation half removed is never offered for restore
        dst.delete(&generation_list(&g.id)).await?;
        for (rel, e) in &g.objects {
            let at = e.at(rel);
            if !still.contains(at) {
                dst.delete(at).await?;
                report.objects_removed += 1;
            }
        }
        report.pruned.push(g.id.clone());
    }
    report.generations = kept_gens.len();
    record_backup(lake, &report, run).await?;
    run.rows_written += report.copied as u64;
    tracing::info!(
        to,
        generation = id.as_str(),
        copied = report.copied,
        unchanged = report.unchanged,
        bytes = report.bytes,
        pruned = report.pruned.len(),
        "backed up"
    );
    Ok(report)
}

/// `ops.backups`: one row per backup, so that erasures reach every place the lake was copied to.
fn backups_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("location", DataType::Utf8, false),
        Field::new("generation", DataType::Utf8, false),
        Field::new("taken_at", ColType::Timestamp.arrow(), false),
        Field::new("objects", DataType::Int64, false),
        Field::new("copied", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("generations", DataType::Int64, false),
    ]))
}

async fn record_backup(lake: &Lake, r: &BackupReport, run: &mut RunContext) -> Result<()> {
    // the location as a URL: a relative folder means the same place from any working folder
    let location = crate::lake::location_url(&r.to, false)?.to_string();
    let s = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let i = |v: u64| Arc::new(Int64Array::from(vec![v as i64])) as ArrayRef;
    let batch = RecordBatch::try_new(
        backups_schema(),
        vec![
            s(&run.run_id),
            s(&location),
            s(&r.generation),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros()]).with_timezone("UTC"),
            ),
            i(r.objects as u64),
            i(r.copied as u64),
            i(r.bytes),
            i(r.generations as u64),
        ],
    )?;
    let stats = lake
        .target("ops", "backups")
        .append(vec![batch], &[], &run.run_id)
        .await?;
    run.wrote("ops.backups", 1, stats.version);
    Ok(())
}

/// The locations this lake was backed up to (`ops.backups`).
pub async fn locations(lake: &Lake) -> Result<Vec<String>> {
    let ctx = lake.session().await?;
    if !has_table(&ctx, "ops.backups") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for b in sql(
        &ctx,
        "SELECT DISTINCT location FROM ops.backups ORDER BY location",
    )
    .await?
    {
        out.extend(strings(&b, "location")?.into_iter().flatten());
    }
    Ok(out)
}

/// One erasure as a backup keeps it: the identifiers' hashes, never the subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErasureNote {
    pub run_id: String,
    pub erased_at: DateTime<Utc>,
    /// (kind, SHA-256): `account_id`, `contact_id`, `email`, ...
    pub identifiers: Vec<(String, String)>,
}

/// Records an erasure in every backup of the lake, so that a restore removes the subject again.
pub async fn record_erasure(
    lake: &Lake,
    note: &ErasureNote,
    storage: &std::collections::HashMap<String, String>,
) -> Result<Vec<String>> {
    let mut reached = Vec::new();
    let json = serde_json::to_vec_pretty(note).map_err(|e| Error::Job(e.to_string()))?;
    for location in locations(lake).await? {
        let side = Side::open(&location, storage)?;
        side.put(&format!("{ERASURES}/{}.json", note.run_id), json.clone().into())
            .await
            .map_err(|e| {
                Error::Job(format!(
                    "the subject is erased from the lake, but the erasure could not be recorded in the backup at {location} ({e}): a restore from it would bring the subject back; run the same `cslake gdpr erase` again when it is reachable"
                ))
            })?;
        reached.push(location);
    }
    Ok(reached)
}

/// Re-reads every object of every generation and compares it with its checksum.
pub async fn verify(at: &str, storage: &std::collections::HashMap<String, String>) -> Result<VerifyReport> {
    let side = Side::open(at, storage)?;
    let generations = side.generations().await?;
    if generations.is_empty() {
        return Err(Error::Config(format!("{at}: no backup here (no {GENERATIONS})")));
    }
    let mut report = VerifyReport {
        at: at.to_string(),
        generations: generations.len(),
        ..Default::default()
    };
    let mut checked: BTreeMap<String, bool> = BTreeMap::new();
    for g in &generations {
        for (rel, entry) in &g.objects {
            let at = entry.at(rel).to_string();
            if checked.contains_key(&at) {
                continue;
            }
            let ok = match side.get(&at).await {
                Ok(b) => b.len() as u64 == entry.size && sha256_bytes(&b) == entry.sha256,
                Err(_) => false,
            };
            report.checked += 1;
            if !ok {
                report.bad.push(rel.clone());
            }
            checked.insert(at, ok);
        }
    }
    report.bad.sort();
    report.bad.dedup();
    Ok(report)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    pub from: String,
    pub generation: String,
    pub taken_at: Option<DateTime<Utc>>,
    pub tables: Vec<String>,
    pub objects: usize,
    /// Erasures recorded in the backup, applied again to what was restored.
    pub erasures_recorded: usize,
    /// Subjects found in the restored tables and erased.
    pub subjects_erased: usize,
}

/// The generations of a backup, newest last, for `cslake restore --list`.
pub async fn generations(
    from: &str,
    storage: &std::collections::HashMap<String, String>,
) -> Result<Vec<(String, Option<DateTime<Utc>>, usize)>> {
    let side = Side::open(from, storage)?;
    Ok(side
        .generations()
        .await?
        .into_iter()
        .map(|g| (g.id, g.taken_at, g.objects.len()))
        .collect())
}

/// Copies a generation's tables (or one) into the lake, which must not have them yet, then
/// erases again every subject the backup's erasure records name.
pub async fn restore_from(
    lake: &Lake,
    from: &str,
    generation: Option<&str>,
    table: Option<&str>,
    settings: &crate::Settings,
    run: &mut RunContext,
) -> Result<RestoreReport> {
    let storage = &settings.file.storage;
    let src = Side::open(from, storage)?;
    let all = src.generations().await?;
    let chosen = match generation {
        Some(id) => all.iter().find(|g| g.id == id).ok_or_else(|| Error::NotFound {
            what: "backup generation",
            name: id.to_string(),
            hint: format!(
                " at {from} (there: {})",
                all.iter().map(|g| g.id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?,
        None => all
            .last()
            .ok_or_else(|| Error::Config(format!("{from}: no backup here (no {GENERATIONS})")))?,
    };
    let prefix = table.map(|t| format!("{}/", t.replace('.', "/")));
    let mut objects: Vec<(&String, &Entry)> = chosen
        .objects
        .iter()
        .filter(|(rel, _)| prefix.as_ref().is_none_or(|p| rel.starts_with(p.as_str())))
        .collect();
    if objects.is_empty() {
        return Err(Error::Config(format!(
            "{from}: the backup has no table {}",
            table.unwrap_or("")
        )));
    }
    let mut tables: Vec<String> = objects
        .iter()
        .filter_map(|(rel, _)| {
            let (head, _) = rel.split_once("/_delta_log/")?;
            Some(head.replace('/', "."))
        })
        .collect();
    tables.sort();
    tables.dedup();
    let present = lake.tables().await?;
    for t in &tables {
        if present.iter().any(|(z, n)| format!("{z}.{n}") == *t) {
            return Err(Error::Config(format!(
                "{t} already exists in this lake: restore into a new --lake, or use `cslake restore --table {t} --version V` to roll it back"
            )));
        }
    }
    objects.sort_by_key(|(rel, _)| (copy_order(rel), (*rel).clone()));
    let dst = Side {
        store: lake.store(),
        prefix: lake.path(""),
    };
    for (rel, entry) in &objects {
        let bytes = src.get(entry.at(rel)).await?;
        if bytes.len() as u64 != entry.size || sha256_bytes(&bytes) != entry.sha256 {
            return Err(Error::Job(format!(
                "{from}/{rel} does not match its checksum in the backup: not restoring a damaged copy"
            )));
        }
        dst.put(rel, bytes).await?;
    }
    run.rows_written += objects.len() as u64;
    let mut report = RestoreReport {
        from: from.to_string(),
        generation: chosen.id.clone(),
        taken_at: chosen.taken_at,
        tables,
        objects: objects.len(),
        ..Default::default()
    };

    // the erasures made since (or before: harmless, nothing is found) are made again
    let mut hashes: HashSet<(String, String)> = HashSet::new();
    for rel in src.list_under(ERASURES).await?.keys() {
        if let Some(note) = src.read_json::<ErasureNote>(rel).await? {
            report.erasures_recorded += 1;
            hashes.extend(note.identifiers);
        }
    }
    if !hashes.is_empty() {
        let pii = crate::lake::pii::Protector::from_settings(settings)?;
        for subject in super::gdpr::subjects_with_hashes(lake, &hashes).await? {
            super::gdpr::erase(lake, &subject, pii.as_ref(), false, run).await?;
            report.subjects_erased += 1;
        }
    }
    Ok(report)
}

/// Delta RESTORE of one live table to an earlier version (a new version equal to the old one).
pub async fn restore_version(
    lake: &Lake,
    table: &str,
    version: u64,
    run: &mut RunContext,
) -> Result<Option<u64>> {
    let (zone, name) = table
        .split_once('.')
        .ok_or_else(|| Error::Config(format!("'{table}': name a table as zone.table")))?;
    let Some(t) = lake.open_table(zone, name).await? else {
        return Err(Error::NotFound {
            what: "table",
            name: table.to_string(),
            hint: " in this lake".into(),
        });
    };
    let target = lake.target(zone, name);
    let (t, _) = t
        .restore()
        .with_version_to_restore(version)
        .with_commit_properties(target.commit(&run.run_id))
        .await
        .map_err(|e| Error::Config(format!("{table}: cannot restore version {version}: {e}")))?;
    run.wrote(table, 0, t.version());
    Ok(t.version())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retention_keeps_the_newest_of_each_day_month_and_year() {
        // a backup every day at 02:00 and 14:00 for three years
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 2, 0, 0).unwrap();
        let gens: Vec<(String, DateTime<Utc>)> = (0..365 * 3 * 2)
            .map(|i| {
                let t = start + chrono::Duration::hours(12 * i);
                (t.format("%Y%m%dT%H%M%SZ").to_string(), t)
            })
            .collect();
        let keep = kept(
            &gens,
            Retention {
                last: 1,
                ..Retention::default()
            },
        );
        // 30 days + 12 months + 3 years, overlapping: the newest day is also its month's and
        // year's newest
        let newest = gens.last().unwrap();
        assert!(keep.contains(&newest.0));
        let days: BTreeSet<String> = keep.iter().map(|id| id[..8].to_string()).collect();
        assert_eq!(days.len(), keep.len(), "one generation per day at most: {keep:?}");
        // every kept generation is the later one of its day
        assert!(keep.iter().all(|id| id.ends_with("T140000Z")), "{keep:?}");
        let months: BTreeSet<&str> = keep.iter().map(|id| &id[..6]).collect();
        // the last 12 months, and the last days of 2025 and 2024 (their years' newest)
        assert_eq!(months.len(), 12 + 2, "{months:?}");
        assert_eq!(keep.len(), 30 + 11 + 2, "{keep:?}");
        // the last three whatever their day: a backup before a risky change is not pruned by the
        // nightly one after it
        let three = kept(&gens, Retention::default());
        assert_eq!(three.len(), 30 + 11 + 2 + 1, "{three:?}");
        let few = Retention {
            last: 1,
            daily: 1,
            monthly: 0,
            yearly: 0,
        };
        assert_eq!(
            kept(&gens, few).into_iter().collect::<Vec<_>>(),
            std::slice::from_ref(&newest.0)
        );
        assert!(kept(&[], few).is_empty());
    }
}
