//! Leases: one writer per zone of the lake at a time, held in the store itself.
//!
//! Delta's optimistic commits make two writers of one table agree on the order of their commits,
//! but blind appends never conflict: two `cslake ingest` of the same drop both find no existing
//! `event_id`, both append, and every event lands twice. So a command that writes a zone first
//! takes the zone's lease, and holds it from the moment it reads what is there until it has
//! committed.
//!
//! A lease is an object `_cslake_leases/<zone>/<generation>.json` created with put-if-absent
//! (`If-None-Match: *` on S3, an atomic hard link on a local folder): of two writers creating the
//! same generation, exactly one succeeds. It names its owner (run, command, actor, host, process)
//! and expires `ttl` after its last renewal; a thread renews it while the command runs, and the
//! command releases it when it ends, succeeded or failed. The newest generation is the state of
//! the zone: released or expired, the next writer takes it by creating the next generation; held,
//! the next writer waits (up to `wait`) and then fails with exit 1 naming the holder. A holder
//! that died on the same machine (its process is gone) is taken over at once, so a killed run
//! does not block the next for a whole `ttl`.
//!
//! Put-if-absent is what all of this rests on: the first lease taken in a process probes that the
//! store refuses a second create of the same object, and refuses to write to a store that does
//! not (some S3-compatible servers ignore `If-None-Match`), rather than corrupt it silently.
//! Written by hand: no crate offers leases over `object_store`; the pieces are its `PutMode`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

pub use crate::settings::LeaseTimes;
use crate::{Error, Result};

/// What a lease object says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub command: String,
    pub actor: String,
    pub host: String,
    pub pid: u32,
    /// The process's start time (clock ticks since boot), so a reused pid is not mistaken for it.
    pub started: Option<u64>,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub released: bool,
}

impl Holder {
    fn describe(&self) -> String {
        format!(
            "run {} (cslake {}, {} on {} pid {}, since {}; the lease expires at {} unless renewed)",
            self.run_id,
            self.command,
            self.actor,
            self.host,
            self.pid,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.expires_at.format("%H:%M:%S UTC"),
        )
    }

    /// Whether the holder is a process of this machine that no longer runs.
    fn dead_here(&self, host: &str) -> bool {
        // without /proc (not Linux) nothing can be told: wait for the lease to expire
        if self.host != host || self.pid == std::process::id() || process_start(std::process::id()).is_none()
        {
            return false;
        }
        match process_start(self.pid) {
            None => true,
            // the pid now belongs to another process
            Some(started) => self.started.is_some_and(|s| s != started),
        }
    }
}

/// Who takes leases: the run, and where it runs.
#[derive(Debug, Clone)]
pub struct Owner {
    pub run_id: String,
    pub command: String,
    pub actor: String,
}

/// The zones this process holds (`location|zone`), so that a job run inside another does not wait
/// for itself.
fn held() -> &'static Mutex<HashSet<String>> {
    static HELD: std::sync::OnceLock<Mutex<HashSet<String>>> = std::sync::OnceLock::new();
    HELD.get_or_init(Mutex::default)
}

/// Stores already probed for put-if-absent, by root.
fn probed() -> &'static Mutex<HashSet<String>> {
    static PROBED: std::sync::OnceLock<Mutex<HashSet<String>>> = std::sync::OnceLock::new();
    PROBED.get_or_init(Mutex::default)
}

/// The leases of one command: released when it ends.
pub struct Leases {
    store: Arc<dyn ObjectStore>,
    taken: Vec<(String, StorePath, Holder)>,
    stop: Arc<AtomicBool>,
    lost: Arc<Mutex<Option<String>>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let zones: Vec<&str> = self.taken.iter().map(|(z, _, _)| z.as_str()).collect();
        f.debug_struct("Leases").field("zones", &zones).finish()
    }
}

/// The machine's name, as leases record it.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// When a process started (Linux: field 22 of /proc/PID/stat), `None` when it does not run.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may hold spaces
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn generation_of(path: &StorePath) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

/// Takes the leases of `zones` (in a fixed order, so two commands never wait for each other).
pub async fn acquire(
    store: Arc<dyn ObjectStore>,
    root: &StorePath,
    location: &str,
    zones: &[&str],
    owner: &Owner,
    times: LeaseTimes,
) -> Result<Leases> {
    probe(&store, root, location).await?;
    let mut zones: Vec<&str> = zones.to_vec();
    zones.sort_unstable();
    zones.dedup();
    let mut leases = Leases {
        store: store.clone(),
        taken: Vec::new(),
        stop: Arc::new(AtomicBool::new(false)),
        lost: Arc::default(),
        renewer: None,
    };
    for zone in zones {
        let key = format!("{location}|{zone}");
        let mine = held().lock().map(|h| h.contains(&key)).unwrap_or(false);
        if mine {
            continue;
        }
        match take(&store, root, zone, owner, times).await {
            Ok((path, holder)) => {
                if let Ok(mut h) = held().lock() {
                    h.insert(key.clone());
                }
                leases.taken.push((key, path, holder));
            }
            Err(e) => {
                leases.release().await;
                return Err(e);
            }
        }
    }
    leases.renew_in_background(times);
    Ok(leases)
}

/// Takes one zone's lease, waiting while another writer holds it.
async fn take(
    store: &Arc<dyn ObjectStore>,
    root: &StorePath,
    zone: &str,
    owner: &Owner,
    times: LeaseTimes,
) -> Result<(StorePath, Holder)> {
    let dir = child(root, &["_cslake_leases", zone]);
    let here = host();
    let deadline = std::time::Instant::now() + times.wait;
    let mut logged = false;
    loop {
        let listed: Vec<object_store::ObjectMeta> = store.list(Some(&dir)).try_collect().await?;
        let newest = listed
            .iter()
            .filter_map(|m| generation_of(&m.location).map(|g| (g, m.location.clone())))
            .max_by_key(|(g, _)| *g);
        let (next, current) = match &newest {
            None => (1, None),
            Some((g, path)) => {
                let holder = read(store, path).await?;
                (g + 1, holder)
            }
        };
        let free = current
            .as_ref()
            .is_none_or(|h| h.released || h.expires_at < Utc::now() || h.dead_here(&here));
        if free {
            let now = Utc::now();
            let holder = Holder {
                run_id: owner.run_id.clone(),
                command: owner.command.clone(),
                actor: owner.actor.clone(),
                host: here.clone(),
                pid: std::process::id(),
                started: process_start(std::process::id()),
                acquired_at: now,
                expires_at: now + ttl(times),
                released: false,
            };
            let path = child(&dir, &[&format!("{next:020}.json")]);
            let body = serde_json::to_vec(&holder).map_err(|e| Error::Job(e.to_string()))?;
            match store
                .put_opts(&path, body.into(), PutOptions::from(PutMode::Create))
                .await
            {
                Ok(_) => {
                    if let Some(h) = &current
                        && !h.released
                    {
                        tracing::warn!(zone, previous = %h.describe(), "took over an expired lease");
                    }
                    // generations before the previous one are history nobody reads
                    for m in &listed {
                        if generation_of(&m.location).is_some_and(|g| g + 1 < next) {
                            let _ = store.delete(&m.location).await;
                        }
                    }
                    return Ok((path, holder));
                }
                // another writer created this generation first: look again
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let holder = current.expect("held means a holder");
        if std::time::Instant::now() >= deadline {
            return Err(Error::Job(format!(
                "the {zone} zone of the lake is being written by {}; waited {}s. Run again when it has finished",
                holder.describe(),
                times.wait.as_secs()
            )));
        }
        if !logged {
            tracing::warn!(zone, holder = %holder.describe(), "waiting for the zone's lease");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ttl(times: LeaseTimes) -> chrono::Duration {
    chrono::Duration::from_std(times.ttl).unwrap_or(chrono::Duration::minutes(2))
}

fn child(root: &StorePath, parts: &[&str]) -> StorePath {
    let mut all: Vec<String> = root.parts().map(|p| p.as_ref().to_string()).collect();
    all.extend(parts.iter().map(|p| (*p).to_string()));
    StorePath::from_iter(all)
}

async fn read(store: &Arc<dyn ObjectStore>, path: &StorePath) -> Result<Option<Holder>> {
    match store.get(path).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            // an unreadable lease (a partial write by a foreign tool) counts as expired
            Ok(serde_json::from_slice(&bytes).ok())
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Checks once per store that a second put-if-absent of one object is refused.
async fn probe(store: &Arc<dyn ObjectStore>, root: &StorePath, location: &str) -> Result<()> {
    if probed().lock().map(|p| p.contains(location)).unwrap_or(false) {
        return Ok(());
    }
    let path = child(
        root,
        &[
            "_cslake_leases",
            &format!(
                ".probe-{}-{}",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ),
        ],
    );
    let create = || PutOptions::from(PutMode::Create);
    store.put_opts(&path, b"1".to_vec().into(), create()).await?;
    let second = store.put_opts(&path, b"2".to_vec().into(), create()).await;
    let _ = store.delete(&path).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => {
            if let Ok(mut p) = probed().lock() {
                p.insert(location.to_string());
            }
            Ok(())
        }
        Ok(_) => Err(Error::Config(format!(
            "the store of the lake {location} accepted a second create of the same object: it does not honour \
             put-if-absent (If-None-Match: *), so two writers could both commit and corrupt the lake. Use a store \
             that does (AWS S3, MinIO, Cloudflare R2), or a local folder"
        ))),
        Err(e) => Err(e.into()),
    }
}

impl Leases {
    /// Renews every lease a third of its life before it ends, from its own thread (a job busy on
    /// every core still keeps its leases).
    fn renew_in_background(&mut self, times: LeaseTimes) {
        if self.taken.is_empty() {
            return;
        }
        let store = self.store.clone();
        let taken = self.taken.clone();
        let (stop, lost) = (self.stop.clone(), self.lost.clone());
        let every = times.ttl / 3;
        self.renewer = std::thread::Builder::new()
            .name("cslake-lease".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                let mut waited = Duration::ZERO;
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    waited += Duration::from_millis(200);
                    if waited < every {
                        continue;
                    }
                    waited = Duration::ZERO;
                    for (zone, path, holder) in &taken {
                        let renewed = Holder {
                            expires_at: Utc::now() + ttl(times),
                            ..holder.clone()
                        };
                        let result = rt.block_on(async {
                            // a newer generation means another writer took over: the lease is lost
                            let dir = StorePath::from_iter(path.parts().take(path.parts().count() - 1));
                            let listed: Vec<object_store::ObjectMeta> =
                                store.list(Some(&dir)).try_collect().await?;
                            let mine = generation_of(path);
                            if listed.iter().any(|m| generation_of(&m.location) > mine) {
                                return Ok::<bool, object_store::Error>(false);
                            }
                            let body = serde_json::to_vec(&renewed).unwrap_or_default();
                            store.put(path, body.into()).await?;
                            Ok(true)
                        });
                        match result {
                            Ok(true) => {}
                            Ok(false) => {
                                if let Ok(mut l) = lost.lock() {
                                    *l = Some(format!(
                                        "the lease on the {zone} zone was taken over by another writer"
                                    ));
                                }
                            }
                            Err(e) => {
                                tracing::warn!(zone = zone.as_str(), error = %e, "could not renew the lease")
                            }
                        }
                    }
                }
            })
            .ok();
    }

    /// Why the leases are no longer held, if another writer took one over (the holder stalled
    /// past its lifetime).
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// Marks every lease released (the next writer takes the zone at once).
    pub async fn release(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        for (zone, path, holder) in std::mem::take(&mut self.taken) {
            let released = Holder {
                released: true,
                ..holder
            };
            let body = serde_json::to_vec(&released).unwrap_or_default();
            if let Err(e) = self.store.put(&path, body.into()).await {
                tracing::warn!(zone = zone.as_str(), error = %e, "could not release the lease: it expires on its own");
            }
            if let Ok(mut h) = held().lock() {
                h.remove(&zone);
            }
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut h) = held().lock() {
            for (zone, _, _) in &self.taken {
                h.remove(zone);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
        PutPayload, PutResult,
    };

    use super::*;

    fn owner(run: &str) -> Owner {
        Owner {
            run_id: run.into(),
            command: "ingest".into(),
            actor: "test".into(),
        }
    }

    fn times(wait_ms: u64) -> LeaseTimes {
        LeaseTimes {
            ttl: Duration::from_secs(30),
            wait: Duration::from_millis(wait_ms),
        }
    }

    #[tokio::test]
    async fn one_writer_per_zone_the_next_after_release_or_expiry() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = StorePath::from("lake");
        let mut a = acquire(
            store.clone(),
            &root,
            "mem://one",
            &["core"],
            &owner("run-a"),
            times(0),
        )
        .await
        .unwrap();
        // held: the second writer waits, then fails naming the holder
        let e = acquire(
            store.clone(),
            &root,
            "mem://one-b",
            &["core"],
            &owner("run-b"),
            times(600),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("the core zone of the lake is being written by run run-a (cslake ingest, test on"),
            "{e}"
        );
        // other zones are free
        let mut other = acquire(
            store.clone(),
            &root,
            "mem://one-b",
            &["scores"],
            &owner("run-b"),
            times(0),
        )
        .await
        .unwrap();
        other.release().await;
        a.release().await;
        let mut b = acquire(
            store.clone(),
            &root,
            "mem://one-b",
            &["core"],
            &owner("run-b"),
            times(0),
        )
        .await
        .unwrap();
        assert_eq!(generation_of(&b.taken[0].1), Some(2));
        b.release().await;

        // an expired lease of another machine is taken over
        let stale = Holder {
            run_id: "run-gone".into(),
            command: "ingest".into(),
            actor: "x".into(),
            host: "elsewhere".into(),
            pid: 1,
            started: None,
            acquired_at: Utc::now() - chrono::Duration::minutes(10),
            expires_at: Utc::now() - chrono::Duration::minutes(5),
            released: false,
        };
        let path = child(&root, &["_cslake_leases", "core", &format!("{:020}.json", 3)]);
        store
            .put(&path, serde_json::to_vec(&stale).unwrap().into())
            .await
            .unwrap();
        let mut c = acquire(
            store.clone(),
            &root,
            "mem://one-b",
            &["core"],
            &owner("run-c"),
            times(0),
        )
        .await
        .unwrap();
        assert_eq!(generation_of(&c.taken[0].1), Some(4));
        c.release().await;

        // a live lease of a process of this machine that has died is taken over at once
        let dead = Holder {
            host: host(),
            pid: u32::MAX - 1,
            expires_at: Utc::now() + chrono::Duration::minutes(5),
            ..stale
        };
        let path = child(&root, &["_cslake_leases", "core", &format!("{:020}.json", 5)]);
        store
            .put(&path, serde_json::to_vec(&dead).unwrap().into())
            .await
            .unwrap();
        let mut d = acquire(
            store.clone(),
            &root,
            "mem://one-b",
            &["core"],
            &owner("run-d"),
            times(0),
        )
        .await
        .unwrap();
        assert_eq!(generation_of(&d.taken[0].1), Some(6));
        d.release().await;
    }

    #[tokio::test]
    async fn two_writers_racing_for_a_zone_get_one_lease() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = StorePath::from("lake");
        let (ox, oy) = (owner("x"), owner("y"));
        let (x, y) = tokio::join!(
            acquire(store.clone(), &root, "mem://race-x", &["core"], &ox, times(0)),
            acquire(store.clone(), &root, "mem://race-y", &["core"], &oy, times(0)),
        );
        assert!(x.is_ok() != y.is_ok(), "exactly one wins");
    }

    /// An S3-compatible server that ignores `If-None-Match`: every put overwrites.
    #[derive(Debug)]
    struct Forgetful(InMemory);

    impl std::fmt::Display for Forgetful {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Forgetful")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Forgetful {
        async fn put_opts(
            &self,
            l: &StorePath,
            p: PutPayload,
            _: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.0.put_opts(l, p, PutOptions::default()).await
        }
        async fn put_multipart_opts(
            &self,
            l: &StorePath,
            o: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &StorePath, o: GetOptions) -> object_store::Result<GetResult> {
            self.0.get_opts(l, o).await
        }
        fn delete_stream(
            &self,
            l: BoxStream<'static, object_store::Result<StorePath>>,
        ) -> BoxStream<'static, object_store::Result<StorePath>> {
            self.0.delete_stream(l)
        }
        fn list(&self, p: Option<&StorePath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(p)
        }
        async fn list_with_delimiter(&self, p: Option<&StorePath>) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, f: &StorePath, t: &StorePath, o: CopyOptions) -> object_store::Result<()> {
            self.0.copy_opts(f, t, o).await
        }
    }

    #[tokio::test]
    async fn a_store_without_put_if_absent_is_refused() {
        let store: Arc<dyn ObjectStore> = Arc::new(Forgetful(InMemory::new()));
        let e = acquire(
            store,
            &StorePath::from("lake"),
            "s3://forgetful/lake",
            &["core"],
            &owner("a"),
            times(0),
        )
        .await
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("does not honour put-if-absent (If-None-Match: *)"),
            "{e}"
        );
    }
}
