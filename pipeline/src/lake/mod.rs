//! The lake catalog: where each table lives, the object store, and a DataFusion session with
//! every table registered as `zone.name` (and by its bare name); and, in its modules, what every
//! stage shares about the lake: the object stores ([`storage`]), the canonical `core/` tables
//! ([`schema`]), the audit log and quarantine ([`ops`]), personal data at rest ([`pii`]), the
//! erasure list ([`erasures`]), retention ([`retention`]), lineage ([`lineage`]) and the
//! helpers that query tables and read their batches ([`query`]).

pub mod describe;
pub mod erasures;
pub mod lease;
pub mod lineage;
pub mod ops;
pub mod pii;
pub mod query;
pub mod retention;
pub mod schema;
pub mod spill;
pub mod storage;

use std::collections::HashMap;
use std::sync::Arc;

use cslake_sinks::DeltaTarget;
use deltalake::DeltaTable;
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use deltalake::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

pub use schema::ZONES;

use crate::{Error, Result};

/// Tables whose logs a session reads at once: opening one is a few sequential reads (the last
/// checkpoint, the log since), so on an object store a session's opening is latency, not work.
const OPEN_AT_ONCE: usize = 8;

/// A command's spill folder and the DataFusion runtime that spills into it.
type Runtime = (Arc<spill::SpillDir>, Arc<RuntimeEnv>);

#[derive(Clone)]
pub struct Lake {
    pub root: Url,
    pub storage_options: HashMap<String, String>,
    datafusion_options: HashMap<String, String>,
    /// Bytes DataFusion may hold before it spills to disk (`None`: unbounded).
    memory_limit: Option<usize>,
    /// Where the spill folder goes (`[ingest] spill_dir`; default the system's temporary folder).
    spill_root: std::path::PathBuf,
    /// The command's spill folder and DataFusion runtime (one memory pool for every session of
    /// the command), made on first use.
    runtime: Arc<std::sync::Mutex<Option<Runtime>>>,
    /// How long a writer's lease on a zone lasts, and how long a writer waits for one.
    lease_times: lease::LeaseTimes,
    store: Arc<dyn ObjectStore>,
    store_prefix: StorePath,
    /// The version of every table the last session registered: what jobs could read, recorded as
    /// lineage with what they write.
    read_versions: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
    /// Where sessions run their queries (see [`crate::cluster`]).
    engine: crate::cluster::Engine,
    /// Whether the cluster answered once this command (it is asked before the first session).
    engine_checked: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").field("root", &self.root.as_str()).finish()
    }
}

/// A folder path or URL as a URL; folders are made absolute and created.
pub fn location_url(location: &str, create: bool) -> Result<Url> {
    if location.contains("://") {
        let mut url = Url::parse(location)
            .map_err(|e| Error::Config(format!("'{location}' is not a valid URL: {e}")))?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        return Ok(url);
    }
    let path = std::path::Path::new(location);
    if create {
        std::fs::create_dir_all(path).map_err(|source| Error::Io {
            path: location.to_string(),
            source,
        })?;
    }
    let abs = std::path::absolute(path).map_err(|source| Error::Io {
        path: location.to_string(),
        source,
    })?;
    // `../lake` is a folder like any other: resolve `..` and `.` (object stores refuse them)
    let mut clean = std::path::PathBuf::new();
    for part in abs.components() {
        match part {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    Url::from_directory_path(&clean)
        .map_err(|_| Error::Config(format!("'{location}' is not a usable folder path")))
}

impl Lake {
    pub fn open(
        location: &str,
        storage: &HashMap<String, String>,
        datafusion: &HashMap<String, String>,
    ) -> Result<Self> {
        let root = location_url(location, true)?;
        let (store, prefix) = crate::lake::storage::open(&root, storage)
            .map_err(|e| Error::Config(format!("lake '{location}': {e}")))?;
        Ok(Self {
            root,
            storage_options: storage.clone(),
            datafusion_options: datafusion.clone(),
            memory_limit: None,
            spill_root: spill::default_root(),
            runtime: Arc::default(),
            lease_times: lease::LeaseTimes::default(),
            store,
            store_prefix: prefix,
            read_versions: Arc::default(),
            engine: crate::cluster::Engine::Local,
            engine_checked: Arc::default(),
        })
    }

    /// The lake the settings name, which must already exist and hold at least one table: for
    /// every command but those that land data, so a mistyped `--lake` is refused (exit 2)
    /// instead of reading an empty lake it would create.
    pub async fn existing(settings: &crate::Settings) -> Result<Self> {
        let location = &settings.lake;
        let creators = "`ingest`, `run`, `demo` or `restore --from` create one";
        if !location.contains("://") && !std::path::Path::new(location).is_dir() {
            return Err(Error::Usage(format!(
                "no lake at '{location}': the folder does not exist ({creators})"
            )));
        }
        let lake = Self::from_settings(settings)?;
        if lake.tables().await?.is_empty() {
            return Err(Error::Usage(format!(
                "no lake at '{location}': it holds no cslake tables ({creators})"
            )));
        }
        Ok(lake)
    }

    /// The lake the settings name, with their storage, DataFusion and memory options; a local
    /// folder is created if missing.
    pub fn from_settings(settings: &crate::Settings) -> Result<Self> {
        Ok(
            Self::open(&settings.lake, &settings.file.storage, &settings.file.datafusion)?
                .with_memory_limit(settings.memory_limit)
                .with_spill_root(settings.spill_root())
                .with_lease_times(settings.lease_times()?),
        )
    }

    /// Runs the queries of its sessions on `engine`.
    pub fn with_engine(mut self, engine: crate::cluster::Engine) -> Self {
        self.engine = engine;
        self.engine_checked = Arc::default();
        self
    }

    /// This lake with the engine of `settings` (`--engine`, `[engine] url`): for the commands that
    /// run there (feature builds, training sets, backfills).
    pub fn on_engine(&self, settings: &crate::Settings) -> Self {
        self.clone().with_engine(settings.engine.clone())
    }

    /// Where the queries of its sessions run.
    pub fn engine(&self) -> &crate::cluster::Engine {
        &self.engine
    }

    /// How long leases last and how long a writer waits for a held one.
    pub fn with_lease_times(mut self, times: lease::LeaseTimes) -> Self {
        self.lease_times = times;
        self
    }

    /// Takes the leases of `zones` for a run: no other writer writes them until they are released
    /// (see [`lease`]).
    pub async fn lease(&self, zones: &[&str], owner: &lease::Owner) -> Result<lease::Leases> {
        lease::acquire(
            self.store.clone(),
            &self.store_prefix,
            self.root.as_str(),
            zones,
            owner,
            self.lease_times,
        )
        .await
    }

    /// Bounds the memory of queries: sorts, joins and aggregations spill to disk beyond it.
    pub fn with_memory_limit(mut self, bytes: Option<usize>) -> Self {
        self.memory_limit = bytes;
        self.runtime = Arc::default();
        self
    }

    /// The memory budget (`None`: unbounded).
    pub fn memory_limit(&self) -> Option<usize> {
        self.memory_limit
    }

    /// Puts the spill folder under `root`.
    pub fn with_spill_root(mut self, root: std::path::PathBuf) -> Self {
        self.spill_root = root;
        self.runtime = Arc::default();
        self
    }

    /// The command's spill folder and DataFusion runtime: one memory pool for all its sessions,
    /// spilling into the folder. Made on first use, removed when the last handle on the lake goes.
    fn runtime(&self) -> Result<Runtime> {
        let mut slot = self
            .runtime
            .lock()
            .map_err(|_| Error::Job("the lake's runtime lock is poisoned".into()))?;
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let dir = Arc::new(spill::SpillDir::create(&self.spill_root)?);
        let mut runtime = RuntimeEnvBuilder::new().with_temp_file_path(dir.path());
        if let Some(limit) = self.memory_limit {
            // the pool names its largest consumers when it refuses memory
            let top = std::num::NonZeroUsize::new(3).expect("3 is not zero");
            runtime =
                runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(FairSpillPool::new(limit), top)));
        }
        let r = (dir, runtime.build_arc()?);
        *slot = Some(r.clone());
        Ok(r)
    }

    /// The command's spill folder (see [`spill`]).
    pub fn spill_dir(&self) -> Result<Arc<spill::SpillDir>> {
        Ok(self.runtime()?.0)
    }

    pub fn table_url(&self, zone: &str, name: &str) -> Url {
        // zone and name are identifiers of ours, so the join cannot fail
        self.root
            .join(&format!("{zone}/{name}/"))
            .unwrap_or_else(|_| self.root.clone())
    }

    pub fn target(&self, zone: &str, name: &str) -> DeltaTarget {
        let full = format!("{zone}.{name}");
        let target = DeltaTarget::new(
            full.clone(),
            self.table_url(zone, name),
            self.storage_options.clone(),
        );
        let inputs: serde_json::Map<String, serde_json::Value> = self
            .read_versions
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(t, _)| **t != full && !t.starts_with("ops."))
                    .map(|(t, v)| (t.clone(), serde_json::json!(v)))
                    .collect()
            })
            .unwrap_or_default();
        if inputs.is_empty() {
            target
        } else {
            target.with_inputs(serde_json::Value::Object(inputs))
        }
    }

    pub async fn open_table(&self, zone: &str, name: &str) -> Result<Option<DeltaTable>> {
        Ok(self.target(zone, name).open().await?)
    }

    /// The object store and the path of `rel` in it (for model artifacts and other files).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn path(&self, rel: &str) -> StorePath {
        let mut parts: Vec<String> = self
            .store_prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(rel.split('/').filter(|s| !s.is_empty()).map(str::to_string));
        StorePath::from_iter(parts)
    }

    /// The tables that exist, as `(zone, name)`.
    pub async fn tables(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for zone in ZONES {
            let listing = self.store.list_with_delimiter(Some(&self.path(zone))).await?;
            let mut names: Vec<String> = listing
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .collect();
            names.sort();
            // one listing per table: side by side, which an object store's latency rewards
            let logged: Vec<Option<String>> = futures::stream::iter(names)
                .map(|name| async move {
                    let log = self.path(&format!("{zone}/{name}/_delta_log"));
                    let has_log = self
                        .store
                        .list_with_delimiter(Some(&log))
                        .await
                        .is_ok_and(|l| !l.objects.is_empty());
                    has_log.then_some(name)
                })
                .buffered(OPEN_AT_ONCE)
                .collect()
                .await;
            out.extend(logged.into_iter().flatten().map(|name| (zone.to_string(), name)));
        }
        Ok(out)
    }

    /// A DataFusion session with every existing table registered.
    pub async fn session(&self) -> Result<SessionContext> {
        let mut config = SessionConfig::new().with_information_schema(true);
        if let Some(limit) = self.memory_limit {
            // each sort keeps this much back to merge what it spilled: a fixed 10 MB per sort
            // and partition does not fit a small budget
            let reserve = (limit / 64).clamp(1 << 20, 10 << 20);
            config = config.with_sort_spill_reservation_bytes(reserve);
        }
        for (k, v) in &self.datafusion_options {
            config
                .options_mut()
                .set(k, v)
                .map_err(|e| Error::Config(format!("[datafusion] {k}: {e}")))?;
        }
        let mut ctx = self.new_context(config).await?;
        datafusion_functions_json::register_all(&mut ctx)?;
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Job("DataFusion session has no default catalog".into()))?;
        for zone in ZONES {
            catalog.register_schema(zone, Arc::new(MemorySchemaProvider::new()))?;
        }
        let started = std::time::Instant::now();
        // every table's log read side by side (on an object store each is a few round trips),
        // registered in order: the first zone's table takes the bare name
        let opened: Vec<Option<(String, String, DeltaTable)>> = futures::stream::iter(self.tables().await?)
            .map(|(zone, name)| async move {
                Ok::<_, Error>(self.open_table(&zone, &name).await?.map(|t| (zone, name, t)))
            })
            .buffered(OPEN_AT_ONCE)
            .try_collect()
            .await?;
        let mut bare: Vec<String> = Vec::new();
        for (zone, name, table) in opened.into_iter().flatten() {
            let first = !bare.contains(&name);
            self.register(&ctx, &zone, &name, &table, first).await?;
            if first {
                bare.push(name);
            }
        }
        tracing::debug!(
            tables = bare.len(),
            seconds = started.elapsed().as_secs_f64(),
            "session opened"
        );
        Ok(ctx)
    }

    /// Registers `table` in `ctx` as `zone.name`, and under its bare name when `bare`,
    /// replacing what was there, and notes the version read (lineage).
    async fn register(
        &self,
        ctx: &SessionContext,
        zone: &str,
        name: &str,
        table: &DeltaTable,
        bare: bool,
    ) -> Result<()> {
        table.update_datafusion_session(&ctx.state())?;
        if let (Some(v), Ok(mut seen)) = (table.version(), self.read_versions.lock()) {
            seen.insert(format!("{zone}.{name}"), v);
        }
        #[allow(unused_mut)] // replaced only on a cluster
        let mut provider = table.table_provider().await?;
        #[cfg(feature = "cluster")]
        if self.engine.is_cluster() {
            // the executors read the snapshot's Parquet files (see `cluster::scan`)
            let scan = crate::cluster::scan::SnapshotScan::new(
                &format!("{zone}.{name}"),
                table,
                &self.table_url(zone, name),
                provider.schema(),
            )?;
            provider = Arc::new(scan);
        }
        let full = TableReference::partial(zone, name);
        ctx.deregister_table(full.clone())?;
        ctx.register_table(full, provider.clone())?;
        if bare {
            ctx.deregister_table(name)?;
            ctx.register_table(name, provider)?;
        }
        Ok(())
    }

    /// Registers the current versions of `tables` (`(zone, name)`) in a session of this lake in
    /// place of the versions it opened: after the run wrote them, for much less than a new
    /// session (which reads every table's log). A table that does not exist is left alone.
    pub async fn reopen(&self, ctx: &SessionContext, tables: &[(&str, &str)]) -> Result<()> {
        for (zone, name) in tables {
            let Some(table) = self.open_table(zone, name).await? else {
                continue;
            };
            // the bare name is the first zone's (as in `session`)
            let earlier = ZONES.iter().take_while(|z| *z != zone).any(|z| {
                ctx.table_exist(TableReference::partial(*z, *name))
                    .unwrap_or(false)
            });
            self.register(ctx, zone, name, &table, !earlier).await?;
        }
        Ok(())
    }

    /// A context whose queries run on the lake's engine.
    async fn new_context(&self, config: SessionConfig) -> Result<SessionContext> {
        let runtime = self.runtime()?.1;
        match &self.engine {
            crate::cluster::Engine::Local => Ok(SessionContext::new_with_config_rt(config, runtime)),
            #[cfg(feature = "cluster")]
            crate::cluster::Engine::Ballista { host, port } => {
                use std::sync::atomic::Ordering;
                if !self.engine_checked.load(Ordering::Relaxed) {
                    crate::cluster::exec::check_reachable(host, *port).await?;
                    self.engine_checked.store(true, Ordering::Relaxed);
                }
                // dynamic filters tie a join's probe side to its build side in one process; the
                // scheduler re-plans joins per stage, which must find none built
                let mut config = config;
                config
                    .options_mut()
                    .set("datafusion.optimizer.enable_dynamic_filter_pushdown", "false")?;
                let state = deltalake::datafusion::execution::SessionStateBuilder::new()
                    .with_config(config)
                    .with_runtime_env(runtime)
                    .with_default_features()
                    .with_query_planner(Arc::new(crate::cluster::exec::ClusterPlanner::new(host, *port)))
                    .build();
                Ok(SessionContext::new_with_state(state))
            }
            #[cfg(not(feature = "cluster"))]
            crate::cluster::Engine::Ballista { .. } => Err(Error::Config(format!(
                "engine {}: this cslake was built without the `cluster` feature",
                self.engine
            ))),
        }
    }

    /// Runs one read-only statement over every table of the lake (`cslake query`, the command
    /// analysts and BI users are given). Anything that would write (INSERT, UPDATE, DELETE, MERGE,
    /// CREATE, DROP, COPY, SET, ...) is refused before the lake is opened, from the parsed
    /// statement ([`query::read_only`]); the plan is checked again on the way in, so a statement
    /// the parser lets through cannot write either.
    pub async fn query(&self, sql: &str) -> Result<Vec<deltalake::arrow::array::RecordBatch>> {
        query::read_only(sql)?;
        let options = deltalake::datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let ctx = self.session().await?;
        let df = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|e| match e.find_root() {
                deltalake::datafusion::error::DataFusionError::Plan(m) if m.contains("not supported") => {
                    Error::Usage(format!("cslake query is read-only: {m}"))
                }
                _ => e.into(),
            })?;
        Ok(df.collect().await?)
    }

    /// Writes a small file (model artifacts, markers).
    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.store.put(&self.path(rel), bytes.into()).await?;
        Ok(())
    }

    /// Removes a file; a missing file is not an error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, rel: &str) -> Result<Vec<u8>> {
        Ok(self.store.get(&self.path(rel)).await?.bytes().await?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn the_audit_keeps_a_query_without_the_values_it_looked_up() {
        use super::query::without_literals;
        assert_eq!(
            without_literals("SELECT * FROM contacts WHERE email = 'ann@x.io' AND name <> 'O''Brien'"),
            "SELECT * FROM contacts WHERE email = '***' AND name <> '***'"
        );
        assert_eq!(without_literals("SELECT \"a'b\" FROM t"), "SELECT \"a'b\" FROM t");
        assert_eq!(without_literals("SELECT 1"), "SELECT 1");
        assert_eq!(without_literals("SELECT 'unterminated"), "SELECT '***'");
    }

    #[test]
    fn query_accepts_reads_and_refuses_every_kind_of_write_by_name() {
        for ok in [
            "SELECT 1",
            "WITH t AS (SELECT 1 AS x) SELECT * FROM t",
            "SELECT 'INSERT INTO runs' AS s -- DROP TABLE runs",
            "EXPLAIN SELECT * FROM runs",
            "VALUES (1), (2)",
        ] {
            assert!(super::query::read_only(ok).is_ok(), "{ok}");
        }
        for (sql, kind) in [
            (
                "INSERT INTO ops.runs SELECT * FROM ops.runs LIMIT 1",
                "INSERT INTO",
            ),
            ("UPDATE runs SET actor = 'x'", "UPDATE"),
            ("DELETE FROM runs", "DELETE FROM"),
            (
                "MERGE INTO runs t USING runs s ON t.run_id = s.run_id WHEN MATCHED THEN DELETE",
                "MERGE INTO",
            ),
            ("CREATE TABLE x AS SELECT 1", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            (
                "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x'",
                "CREATE EXTERNAL TABLE",
            ),
            ("DROP TABLE runs", "DROP TABLE"),
            ("COPY runs TO '/tmp/runs.parquet'", "COPY"),
            ("TRUNCATE TABLE runs", "TRUNCATE TABLE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("EXPLAIN ANALYZE INSERT INTO runs VALUES (1)", "INSERT INTO"),
        ] {
            let e = super::query::read_only(sql).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{sql}");
            assert!(
                e.to_string()
                    .starts_with(&format!("cslake query is read-only: {kind} is refused")),
                "{sql}: {e}"
            );
        }
        let two = super::query::read_only("SELECT 1; DROP TABLE runs").unwrap_err();
        assert!(two.to_string().contains("one statement at a time"), "{two}");
    }

    #[tokio::test]
    async fn a_refused_write_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lake = super::Lake::open(
            &dir.path().display().to_string(),
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        lake.target("ops", "runs")
            .overwrite(vec![batch], "r1")
            .await
            .unwrap();
        let before = lake.open_table("ops", "runs").await.unwrap().unwrap().version();
        let e = lake
            .query("INSERT INTO ops.runs SELECT n FROM ops.runs")
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        let after = lake.open_table("ops", "runs").await.unwrap().unwrap().version();
        assert_eq!(before, after);
        let rows = lake.query("SELECT COUNT(*) AS n FROM ops.runs").await.unwrap();
        assert_eq!(rows[0].num_rows(), 1);
    }

    #[test]
    fn relative_folders_resolve_dot_dot() {
        let here = std::env::current_dir().unwrap();
        let url = super::location_url("../x/./y/../lake", false).unwrap();
        let want = here.parent().unwrap_or(&here).join("x/lake/");
        assert_eq!(url.to_file_path().unwrap(), want);
        assert!(!url.as_str().contains(".."));
    }
}
