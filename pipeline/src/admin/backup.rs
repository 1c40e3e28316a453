//! `cslake backup` and `cslake restore`.
//!
//! A backup is a copy of the lake's objects in a second store (a folder, `s3://…`), made
//! incrementally: Delta data files and log entries never change once written, so only objects the
//! backup lacks are copied (plus `_last_checkpoint`, which does change). Data files are copied
//! before log entries, so a backup is consistent at every moment: no log entry names a file the
//! backup lacks. Every copied object's SHA-256 goes into `_cslake_backup/manifest.json`; `--verify`
//! re-reads the backup against it. Restoring copies a backup into a lake without those tables
//! (a new location after a loss), checking every object against the manifest; `restore --table
//! --version` brings one table of the live lake back to an earlier version (Delta RESTORE).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::lake::erasures::sha256_bytes;
use crate::{Error, Lake, Result, RunContext};

const MANIFEST: &str = "_cslake_backup/manifest.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Path relative to the lake root → size and SHA-256.
    pub objects: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupReport {
    pub to: String,
    pub copied: usize,
    pub bytes: u64,
    pub unchanged: usize,
    pub objects: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub at: String,
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

    /// Every object under the root, relative path → size.
    async fn list(&self) -> Result<BTreeMap<String, u64>> {
        let n = self.prefix.parts().count();
        let all: Vec<object_store::ObjectMeta> = self.store.list(Some(&self.prefix)).try_collect().await?;
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

    async fn get(&self, rel: &str) -> Result<bytes::Bytes> {
        Ok(self.store.get(&self.path(rel)).await?.bytes().await?)
    }

    async fn put(&self, rel: &str, bytes: bytes::Bytes) -> Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    async fn manifest(&self) -> Result<Manifest> {
        match self.store.get(&self.path(MANIFEST)).await {
            Ok(r) => serde_json::from_slice(&r.bytes().await?)
                .map_err(|e| Error::Job(format!("backup manifest {MANIFEST} is unreadable: {e}"))),
            Err(object_store::Error::NotFound { .. }) => Ok(Manifest::default()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Data files first, then log entries, `_last_checkpoint` last: the order that keeps the copy
/// consistent while it is being made.
fn copy_order(rel: &str) -> u8 {
    if rel.ends_with("_last_checkpoint") {
        2
    } else if rel.contains("/_delta_log/") {
        1
    } else {
        0
    }
}

pub async fn backup(
    lake: &Lake,
    to: &str,
    storage: &std::collections::HashMap<String, String>,
    run: &mut RunContext,
) -> Result<BackupReport> {
    let src = Side {
        store: lake.store(),
        prefix: lake.path(""),
    };
    let dst = Side::open(to, storage)?;
    let mut manifest = dst.manifest().await?;
    let existing = dst.list().await?;
    let mut objects: Vec<(String, u64)> = src
        .list()
        .await?
        .into_iter()
        .filter(|(rel, _)| !rel.starts_with("_cslake_backup/"))
        .collect();
    objects.sort_by_key(|(rel, _)| (copy_order(rel), rel.clone()));
    let mut report = BackupReport {
        to: to.to_string(),
        objects: objects.len(),
        ..Default::default()
    };
    for (rel, size) in objects {
        let mutable = rel.ends_with("_last_checkpoint");
        let have =
            existing.get(&rel) == Some(&size) && manifest.objects.get(&rel).is_some_and(|e| e.size == size);
        if have && !mutable {
            report.unchanged += 1;
            continue;
        }
        let bytes = src.get(&rel).await?;
        let entry = Entry {
            size: bytes.len() as u64,
            sha256: sha256_bytes(&bytes),
        };
        dst.put(&rel, bytes).await?;
        report.copied += 1;
        report.bytes += entry.size;
        manifest.objects.insert(rel, entry);
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Job(e.to_string()))?;
    dst.put(MANIFEST, json.into()).await?;
    run.rows_written += report.copied as u64;
    tracing::info!(
        to,
        copied = report.copied,
        unchanged = report.unchanged,
        bytes = report.bytes,
        "backed up"
    );
    Ok(report)
}

/// Re-reads every object of a backup and compares it with the manifest.
pub async fn verify(at: &str, storage: &std::collections::HashMap<String, String>) -> Result<VerifyReport> {
    let side = Side::open(at, storage)?;
    let manifest = side.manifest().await?;
    if manifest.objects.is_empty() {
        return Err(Error::Config(format!("{at}: no backup here (no {MANIFEST})")));
    }
    let mut report = VerifyReport {
        at: at.to_string(),
        ..Default::default()
    };
    for (rel, entry) in &manifest.objects {
        report.checked += 1;
        let ok = match side.get(rel).await {
            Ok(b) => b.len() as u64 == entry.size && sha256_bytes(&b) == entry.sha256,
            Err(_) => false,
        };
        if !ok {
            report.bad.push(rel.clone());
        }
    }
    Ok(report)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    pub from: String,
    pub tables: Vec<String>,
    pub objects: usize,
}

/// Copies the backup's tables (or one) into the lake, which must not have them yet.
pub async fn restore_from(
    lake: &Lake,
    from: &str,
    table: Option<&str>,
    storage: &std::collections::HashMap<String, String>,
    run: &mut RunContext,
) -> Result<RestoreReport> {
    let src = Side::open(from, storage)?;
    let manifest = src.manifest().await?;
    if manifest.objects.is_empty() {
        return Err(Error::Config(format!("{from}: no backup here (no {MANIFEST})")));
    }
    let prefix = table.map(|t| format!("{}/", t.replace('.', "/")));
    let mut objects: Vec<(&String, &Entry)> = manifest
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
        let bytes = src.get(rel).await?;
        if bytes.len() as u64 != entry.size || sha256_bytes(&bytes) != entry.sha256 {
            return Err(Error::Job(format!(
                "{from}/{rel} does not match its checksum in the backup manifest: not restoring a damaged copy"
            )));
        }
        dst.put(rel, bytes).await?;
    }
    run.rows_written += objects.len() as u64;
    Ok(RestoreReport {
        from: from.to_string(),
        tables,
        objects: objects.len(),
    })
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
