//! `[retention]`: how long rows of each table are kept, and the column they are aged by. Read by
//! `cslake maintain`, which deletes expired rows, and by ingest, which does not land them.

use std::collections::HashMap;

use deltalake::arrow::datatypes::Schema;

use crate::units::parse_days;
use crate::{Error, Result};

/// Tables whose rows are never aged out: audit, erasure hashes, load state, the model registry.
const KEEP: &[&str] = &[
    "ops.erasures",
    "ops.source_state",
    "ops.source_cursors",
    "models.registry",
];

/// The column a table's rows are aged by.
pub fn time_column(table: &str, schema: &Schema) -> Option<String> {
    let named = match table {
        "core.usage_events" | "core.content_events" => Some("event_time"),
        "core.interactions" => Some("occurred_at"),
        "core.invoices" => Some("issued_date"),
        "core.subscriptions" => Some("end_date"),
        "core.deals" => Some("close_date"),
        "ops.runs" => Some("started_at"),
        "ops.quarantine" => Some("quarantined_at"),
        "features.usage_daily" | "features.usage_daily_users" => Some("event_date"),
        _ if KEEP.contains(&table) || table.starts_with("core.") => None,
        _ => schema.field_with_name("as_of_date").ok().map(|_| "as_of_date"),
    };
    named
        .filter(|c| schema.field_with_name(c).is_ok())
        .map(str::to_string)
}

/// The retention of a table: its own entry, its core name, or its zone's.
pub fn retention_days(retention: &HashMap<String, String>, table: &str) -> Result<Option<i64>> {
    let (zone, name) = table.split_once('.').unwrap_or(("", table));
    if table == "features.usage_daily" || table == "features.usage_daily_users" {
        // the rollups hold usage_events' data: they age with them
        return retention_days(retention, "core.usage_events");
    }
    let entry = retention
        .get(table)
        .or_else(|| (zone == "core").then(|| retention.get(name)).flatten())
        .or_else(|| retention.get(zone));
    entry
        .map(|v| parse_days(v).map_err(|e| Error::Config(format!("[retention] {table}: {e}"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_by_table_core_name_or_zone() {
        let r: HashMap<String, String> = [("usage_events", "2y"), ("features", "400d"), ("ops.runs", "52w")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(retention_days(&r, "core.usage_events").unwrap(), Some(730));
        assert_eq!(retention_days(&r, "features.billing").unwrap(), Some(400));
        assert_eq!(retention_days(&r, "ops.runs").unwrap(), Some(364));
        assert_eq!(retention_days(&r, "core.accounts").unwrap(), None);
    }
}
