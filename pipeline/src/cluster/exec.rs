//! Running a session's plans on a Ballista cluster.
//!
//! [`ClusterPlanner`] is the session's query planner: it plans every query in this process, as
//! the local engine does, and a plan that reads lake files becomes a [`ClusterExec`], which sends
//! the physical plan to the scheduler (`execute_physical_plan`) and streams the job's results
//! back. Sending the physical plan rather than the SQL means the scheduler needs no catalog:
//! the files to read ([`super::scan::SnapshotScan`]) and any rows cslake holds in memory (a
//! spine, the previous state of a view) travel inside the plan.

use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::BALLISTA_CLIENT_GRPC_MAX_MESSAGE_SIZE;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion_proto::protobuf::PhysicalPlanNode;
use deltalake::datafusion::catalog::Session;
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::datasource::physical_plan::FileScanConfig;
use deltalake::datafusion::datasource::source::DataSourceExec;
use deltalake::datafusion::error::Result as DFResult;
use deltalake::datafusion::execution::context::QueryPlanner;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use deltalake::datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, displayable,
};
use deltalake::datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use deltalake::datafusion::prelude::SessionConfig;
use futures::TryStreamExt;

use crate::{Error, Result};

/// The largest message between client, scheduler and executors: a plan carries the rows cslake
/// holds in memory (a spine, a view's previous state), tens of megabytes for 100K accounts.
pub const MAX_MESSAGE: usize = 1 << 30;

/// Jobs this process has sent to a cluster (reported by the commands that run there).
static JOBS_SENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many jobs this process has sent to a cluster so far.
pub fn jobs_sent() -> usize {
    JOBS_SENT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Plans locally; sends plans that read lake files to the scheduler at `scheduler` (`host:port`).
#[derive(Debug)]
pub struct ClusterPlanner {
    scheduler: String,
}

impl ClusterPlanner {
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            scheduler: format!("{host}:{port}"),
        }
    }
}

/// Whether `plan` reads files (anything else, rows in memory or the catalog, runs here).
fn reads_files(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(source) = plan.downcast_ref::<DataSourceExec>()
        && source.data_source().downcast_ref::<FileScanConfig>().is_some()
    {
        return true;
    }
    plan.children().into_iter().any(reads_files)
}

#[async_trait::async_trait]
impl QueryPlanner for ClusterPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let plan = DefaultPhysicalPlanner::default()
            .create_physical_plan(logical_plan, session)
            .await?;
        if !reads_files(&plan) {
            return Ok(plan);
        }
        Ok(Arc::new(ClusterExec::new(self.scheduler.clone(), plan)))
    }
}

/// A physical plan run as one Ballista job: one output partition, the job's result.
#[derive(Debug)]
pub struct ClusterExec {
    scheduler: String,
    plan: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl ClusterExec {
    pub fn new(scheduler: String, plan: Arc<dyn ExecutionPlan>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(plan.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            scheduler,
            plan,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for ClusterExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "ClusterExec: scheduler={}\n{}",
                self.scheduler,
                displayable(self.plan.as_ref()).indent(false)
            ),
            DisplayFormatType::TreeRender => write!(f, "scheduler={}", self.scheduler),
        }
    }
}

impl ExecutionPlan for ClusterExec {
    fn name(&self) -> &'static str {
        "ClusterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        // the plan it sends is not a child: nothing local optimises or runs it
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, _partition: usize, context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let url = format!("http://{}", self.scheduler);
        let plan = self.plan.clone();
        let session_id = context.session_id();
        let session_config = context.session_config().clone();
        let scheduler = self.scheduler.clone();
        JOBS_SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(scheduler = scheduler.as_str(), "plan sent to the cluster");
        let job = async move {
            let config = SessionConfig::new_with_ballista()
                .set_usize(BALLISTA_CLIENT_GRPC_MAX_MESSAGE_SIZE, MAX_MESSAGE)
                .ballista_config();
            execute_physical_plan::<PhysicalPlanNode>(
                url,
                &config,
                plan,
                &BallistaPhysicalExtensionCodec::default(),
                session_id,
                session_config,
            )
            .await
        };
        let stream = futures::stream::once(job).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.plan.schema(),
            stream,
        )))
    }
}

/// Fails unless the scheduler at `host:port` accepts connections: a command on a cluster that is
/// down stops before it reads or writes anything.
pub async fn check_reachable(host: &str, port: u16) -> Result<()> {
    let address = format!("{host}:{port}");
    let connect = tokio::net::TcpStream::connect(address.as_str());
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Job(format!(
            "the Ballista scheduler at ballista://{address} cannot be reached: {e}; nothing was read or written \
             (start it with `cslake cluster scheduler`, or run on the local engine without --engine)"
        ))),
        Err(_) => Err(Error::Job(format!(
            "the Ballista scheduler at ballista://{address} did not answer within 10 s; nothing was read or written"
        ))),
    }
}

/// A stream read once, as a table: what a cluster job returns, handed to a local writer.
struct OneShot {
    schema: deltalake::arrow::datatypes::SchemaRef,
    stream: std::sync::Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneShot")
    }
}

impl deltalake::datafusion::physical_plan::streaming::PartitionStream for OneShot {
    fn schema(&self) -> &deltalake::arrow::datatypes::SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(s) => s,
            None => Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async {
                    Err(deltalake::datafusion::error::DataFusionError::Execution(
                        "a cluster job's results can be read once".into(),
                    ))
                }),
            )),
        }
    }
}

/// `df` run on the cluster, as a DataFrame a local plan (a Delta write) reads as it streams in:
/// delta-rs plans its writes with its own planner, which would otherwise run `df` here.
pub async fn pulled(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    df: deltalake::datafusion::prelude::DataFrame,
) -> Result<deltalake::datafusion::prelude::DataFrame> {
    use deltalake::datafusion::catalog::streaming::StreamingTable;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let stream = df.execute_stream().await?;
    let one = Arc::new(OneShot {
        schema: schema.clone(),
        stream: std::sync::Mutex::new(Some(stream)),
    });
    let table = StreamingTable::try_new(schema, vec![one])?;
    Ok(ctx.read_table(Arc::new(table))?)
}
