//! Where a command's queries run: in this process (the default), or on an Apache Ballista cluster
//! (`--engine ballista://host:port`, or `[engine] url` in `cslake.toml`).
//!
//! On a cluster the client still does what only cslake can do: it resolves each Delta table to
//! the exact files of its current snapshot ([`scan::SnapshotScan`]), plans every query itself
//! (cslake's views, rollups and training-set SQL unchanged), and hands the physical plan to the
//! scheduler ([`exec::ClusterPlanner`]), which splits it into stages and runs them on its
//! executors. Results stream back, and cslake commits them to Delta once, as it does locally:
//! executors never write to the lake. A plan that reads no lake file (an `information_schema`
//! lookup, rows already in memory) runs in this process.
//!
//! The scheduler and the executors are cslake itself (`cslake cluster scheduler|executor`, built
//! from the `ballista-scheduler` and `ballista-executor` crates) so that they know the functions
//! cslake's SQL uses (`json_get_str`, ...). Executors read the lake's files directly: a local
//! folder must be at the same path on every executor; an S3 lake's credentials travel with each
//! job (see [`exec`]).

#[cfg(feature = "cluster")]
pub mod exec;
#[cfg(feature = "cluster")]
pub mod process;
#[cfg(feature = "cluster")]
pub mod scan;

use crate::{Error, Result};

/// The engine that runs a command's queries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// DataFusion in this process.
    #[default]
    Local,
    /// The Ballista scheduler at `host:port`.
    Ballista { host: String, port: u16 },
}

impl Engine {
    /// `local`, or `ballista://HOST:PORT` (`df://` is Ballista's own spelling, accepted too).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() || text == "local" {
            return Ok(Engine::Local);
        }
        let rest = text
            .strip_prefix("ballista://")
            .or_else(|| text.strip_prefix("df://"))
            .ok_or_else(|| {
                Error::Config(format!(
                    "engine '{text}': `local` or `ballista://HOST:PORT` (the scheduler's address)"
                ))
            })?;
        let (host, port) = host_port(rest.trim_end_matches('/'))
            .map_err(|why| Error::Config(format!("engine '{text}': {why}")))?;
        if !cfg!(feature = "cluster") {
            return Err(Error::Config(format!(
                "engine '{text}': this cslake was built without the `cluster` feature"
            )));
        }
        Ok(Engine::Ballista { host, port })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Engine::Ballista { .. })
    }

    /// The scheduler's address as given (`ballista://host:port`), for messages and lineage.
    pub fn address(&self) -> Option<String> {
        match self {
            Engine::Local => None,
            Engine::Ballista { host, port } => Some(format!("ballista://{host}:{port}")),
        }
    }
}

/// `HOST:PORT` (a scheduler's address), or what is wrong with it.
pub fn host_port(text: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "the scheduler's port is missing (HOST:PORT, e.g. :50050)".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port number"))?;
    if host.is_empty() {
        return Err("the scheduler's host is missing".into());
    }
    Ok((host.to_string(), port))
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.address() {
            Some(a) => f.write_str(&a),
            None => f.write_str("local"),
        }
    }
}

/// Jobs this process has sent to a cluster so far.
#[cfg(feature = "cluster")]
pub use exec::jobs_sent;

/// Jobs this process has sent to a cluster so far: none without the `cluster` feature.
#[cfg(not(feature = "cluster"))]
pub fn jobs_sent() -> usize {
    0
}

/// `df` ready for a local writer: on a cluster, the job runs there and its rows stream back as
/// they come (see [`exec::pulled`]); locally, `df` itself.
pub async fn for_writer(
    engine: &Engine,
    ctx: &deltalake::datafusion::prelude::SessionContext,
    df: deltalake::datafusion::prelude::DataFrame,
) -> Result<deltalake::datafusion::prelude::DataFrame> {
    match engine {
        Engine::Local => Ok(df),
        #[cfg(feature = "cluster")]
        Engine::Ballista { .. } => exec::pulled(ctx, df).await,
        #[cfg(not(feature = "cluster"))]
        Engine::Ballista { .. } => {
            let _ = ctx;
            Err(Error::Config(format!(
                "engine {engine}: this cslake was built without the `cluster` feature"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Engine, host_port};

    #[test]
    fn engines_parse_from_their_address_and_say_what_is_wrong() {
        assert_eq!(Engine::parse("local").unwrap(), Engine::Local);
        assert_eq!(Engine::parse("").unwrap(), Engine::Local);
        let e = Engine::parse("ballista://10.0.0.5:50050").unwrap();
        assert_eq!(
            e,
            Engine::Ballista {
                host: "10.0.0.5".into(),
                port: 50050
            }
        );
        assert_eq!(e.to_string(), "ballista://10.0.0.5:50050");
        assert_eq!(
            Engine::parse("df://sched:1/").unwrap().to_string(),
            "ballista://sched:1"
        );
        for (bad, says) in [
            ("spark://x:1", "`local` or `ballista://HOST:PORT`"),
            ("ballista://sched", "port is missing"),
            ("ballista://sched:http", "'http' is not a port number"),
            ("ballista://:50050", "host is missing"),
        ] {
            let err = Engine::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // an executor's --scheduler: the same address without the scheme
        assert_eq!(
            host_port("sched.internal:50050"),
            Ok(("sched.internal".into(), 50050))
        );
        assert!(
            host_port("sched.internal")
                .unwrap_err()
                .contains("port is missing")
        );
    }
}
