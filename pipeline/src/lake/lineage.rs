//! `cslake lineage TABLE`: each version of a table, the run that wrote it, and the versions of the
//! tables that run could read (recorded in the Delta commit as `cslake_inputs`). With Delta time
//! travel, that is enough to rebuild any output from exactly the inputs it was built from.

use futures::StreamExt;

use crate::{Error, Lake, Result};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Version {
    pub version: Option<u64>,
    pub timestamp: Option<String>,
    pub operation: Option<String>,
    pub run_id: Option<String>,
    pub inputs: serde_json::Value,
}

pub async fn lineage(lake: &Lake, table: &str, limit: usize) -> Result<Vec<Version>> {
    let (zone, name) = table.split_once('.').ok_or_else(|| {
        Error::Config(format!(
            "'{table}': name a table as zone.table, e.g. scores.risk_scores"
        ))
    })?;
    let Some(t) = lake.open_table(zone, name).await? else {
        return Err(Error::NotFound {
            what: "table",
            name: table.to_string(),
            hint: " in this lake".into(),
        });
    };
    let latest = t.version().unwrap_or_default();
    let mut out = Vec::new();
    let mut history = t.history(Some(limit));
    while let Some(info) = history.next().await {
        let info = info?;
        // history runs newest first; versions are consecutive down to what maintain kept
        let version = info
            .read_version
            .map(|v| v + 1)
            .or(Some(latest - out.len() as u64));
        out.push(Version {
            version: if out.is_empty() { Some(latest) } else { version },
            timestamp: info
                .timestamp
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            operation: info.operation.clone(),
            run_id: info
                .info
                .get("cslake_run_id")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            inputs: info
                .info
                .get("cslake_inputs")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        });
    }
    Ok(out)
}
