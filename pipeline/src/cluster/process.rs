//! The cluster's processes, as `cslake cluster scheduler` and `cslake cluster executor`: Ballista's
//! own scheduler and executor (the `ballista-scheduler` and `ballista-executor` crates), with the
//! functions cslake's SQL uses registered, so that the plans cslake sends decode and run there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use deltalake::datafusion::error::{DataFusionError, Result as DFResult};
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::prelude::SessionConfig;
use object_store::ObjectStore;
use url::Url;

use super::exec::MAX_MESSAGE;
use crate::{Error, Result};

fn ballista(e: impl std::fmt::Display) -> Error {
    Error::Job(format!("ballista: {e}"))
}

/// Runs a scheduler listening on `bind` until the process is stopped. `external_host` is the name
/// executors and clients reach it by (default: the bound address); `storage` is `[storage]` of its
/// `cslake.toml` (decoding a plan that reads an S3 lake needs the lake's store).
pub async fn scheduler(
    bind: SocketAddr,
    external_host: Option<String>,
    storage: HashMap<String, String>,
) -> Result<()> {
    // the scheduler's sessions: Ballista's defaults, the lake's stores, cslake's JSON functions
    let sessions = move |config: SessionConfig| -> DFResult<SessionState> {
        let state = ballista_core::utils::default_session_builder(config)?;
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
            .with_object_store_registry(Arc::new(LakeStores::new(storage.clone())))
            .build_arc()?;
        let mut state = SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime)
            .build();
        datafusion_functions_json::register_all(&mut state)?;
        Ok(state)
    };
    let max = u32::try_from(MAX_MESSAGE).unwrap_or(u32::MAX);
    let mut config = SchedulerConfig::default()
        .with_hostname(external_host.unwrap_or_else(|| bind.ip().to_string()))
        .with_port(bind.port())
        .with_grpc_server_max_decoding_message_size(max)
        .with_grpc_server_max_encoding_message_size(max)
        .with_grpc_client_max_message_size(max)
        .with_override_session_builder(Arc::new(sessions));
    config.bind_host = bind.ip().to_string();
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista)?;
    tracing::info!(address = %bind, "Ballista scheduler listening");
    start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(ballista)
}

/// The object stores of a scheduler or executor: the defaults (the local file system), and any other lake's
/// store made on first use from the executor's own `[storage]` options and credential chain (the
/// same code a cslake command opens the lake with), so no credential travels with a plan.
#[derive(Debug)]
struct LakeStores {
    options: HashMap<String, String>,
    known: DefaultObjectStoreRegistry,
}

impl LakeStores {
    fn new(options: HashMap<String, String>) -> Self {
        Self {
            options,
            known: DefaultObjectStoreRegistry::new(),
        }
    }
}

impl ObjectStoreRegistry for LakeStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> DFResult<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> DFResult<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        let root = Url::parse(&format!("{}://{}/", url.scheme(), url.host_str().unwrap_or("")))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let (store, _) = crate::lake::storage::open(&root, &self.options)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.known.register_store(&root, store.clone());
        Ok(store)
    }
}

/// Where an executor listens and what it offers.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: (String, u16),
    /// The address it binds (flight service on `port`, task service on `grpc_port`).
    pub bind_host: String,
    pub external_host: Option<String>,
    pub port: u16,
    pub grpc_port: u16,
    /// Where shuffle files go (default: a temporary folder).
    pub work_dir: Option<PathBuf>,
    /// Tasks run at once (default: the machine's cores).
    pub concurrent_tasks: Option<usize>,
    /// The memory all its tasks share before they spill.
    pub memory_limit: Option<usize>,
    /// `[storage]` of its `cslake.toml`: how it opens an S3 lake's store.
    pub storage: HashMap<String, String>,
}

/// Runs an executor that registers with the scheduler, until the process is stopped.
pub async fn executor(options: ExecutorOptions) -> Result<()> {
    let mut state = SessionStateBuilder::new().with_default_features().build();
    datafusion_functions_json::register_all(&mut state)?;
    let functions = BallistaFunctionRegistry::from(&state);
    let max = u32::try_from(MAX_MESSAGE).unwrap_or(u32::MAX);
    let defaults = ExecutorProcessConfig::default();
    let work_dir = options.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let storage = options.storage.clone();
    let runtime: ballista_core::RuntimeProducer = Arc::new(move |_config: &SessionConfig| {
        Ok(Arc::new(
            RuntimeEnvBuilder::new()
                .with_temp_file_path(work_dir.clone())
                .with_object_store_registry(Arc::new(LakeStores::new(storage.clone())))
                .build()?,
        ))
    });
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: options.external_host.clone(),
        port: options.port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler.0.clone(),
        scheduler_port: options.scheduler.1,
        // wait for a scheduler that starts at the same time
        scheduler_connect_timeout_seconds: 30,
        vcores: options.concurrent_tasks.unwrap_or(defaults.vcores),
        work_dir: options.work_dir.as_ref().map(|p| p.display().to_string()),
        grpc_max_decoding_message_size: max,
        grpc_max_encoding_message_size: max,
        memory_pool_size: options.memory_limit.map(|m| m as u64),
        print_thread_info: false,
        override_function_registry: Some(Arc::new(functions)),
        override_runtime_producer: Some(runtime),
        ..defaults
    };
    tracing::info!(
        scheduler = format!("{}:{}", options.scheduler.0, options.scheduler.1),
        port = options.port,
        grpc_port = options.grpc_port,
        "Ballista executor starting"
    );
    start_executor_process(Arc::new(config)).await.map_err(ballista)
}
