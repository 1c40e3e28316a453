//! `cslake cluster scheduler | executor`: the processes of a Ballista cluster that `--engine
//! ballista://HOST:PORT` sends feature builds, training sets and backfills to.

use super::Ctx;
use crate::cli::ClusterAction;
use crate::summary::Summary;

#[cfg(feature = "cluster")]
pub async fn cluster(ctx: &Ctx, action: ClusterAction) -> anyhow::Result<Summary> {
    use cslake_pipeline::Error;
    use cslake_pipeline::cluster::process;
    match action {
        ClusterAction::Scheduler { bind, external_host } => {
            process::scheduler(bind, external_host, ctx.settings.file.storage.clone()).await?;
            Ok(Summary::succeeded("cluster scheduler"))
        }
        ClusterAction::Executor {
            scheduler,
            bind_host,
            external_host,
            port,
            grpc_port,
            work_dir,
            concurrent_tasks,
        } => {
            let scheduler = cslake_pipeline::cluster::host_port(&scheduler)
                .map_err(|why| Error::Usage(format!("--scheduler '{scheduler}': {why}")))?;
            process::executor(process::ExecutorOptions {
                scheduler,
                bind_host,
                external_host,
                port,
                grpc_port,
                work_dir,
                concurrent_tasks,
                memory_limit: ctx.settings.memory_limit,
                storage: ctx.settings.file.storage.clone(),
            })
            .await?;
            Ok(Summary::succeeded("cluster executor"))
        }
    }
}

#[cfg(not(feature = "cluster"))]
pub async fn cluster(_ctx: &Ctx, _action: ClusterAction) -> anyhow::Result<Summary> {
    Err(cslake_pipeline::Error::Usage("this cslake was built without the `cluster` feature".into()).into())
}
