//! `cslake tables`: every table of the lake as a reader sees it — its Delta column types, partition
//! columns, version, files and rows — read from the Delta log alone (no data file is opened).

use serde::Serialize;

use super::Lake;
use crate::Result;

/// One column of a table: its name and Delta type as the log declares it (`string`, `long`,
/// `integer`, `double`, `boolean`, `date`, `timestamp`, `array<…>`, `struct<…>`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// `zone.table`
    pub table: String,
    /// Where its files are (a folder or URL under the lake).
    pub location: String,
    pub version: u64,
    /// Rows in the current version, from the log's file statistics (`None` when a file has none).
    pub rows: Option<u64>,
    pub files: usize,
    pub bytes: u64,
    pub partitioned_by: Vec<String>,
    pub columns: Vec<ColumnInfo>,
}

/// Every table of the lake (zone by zone, by name), or only `only` (`zone.table` or a zone).
pub async fn describe(lake: &Lake, only: Option<&str>) -> Result<Vec<TableInfo>> {
    let mut out = Vec::new();
    for (zone, name) in lake.tables().await? {
        let full = format!("{zone}.{name}");
        if only.is_some_and(|o| o != full && o != zone) {
            continue;
        }
        let Some(table) = lake.open_table(&zone, &name).await? else {
            continue;
        };
        let state = table.snapshot()?;
        let schema = state.schema();
        let (mut rows, mut files, mut bytes) = (Some(0u64), 0usize, 0u64);
        for f in state.log_data().iter() {
            files += 1;
            bytes += u64::try_from(f.size()).unwrap_or(0);
            rows = rows.zip(f.num_records()).map(|(r, n)| r + n as u64);
        }
        out.push(TableInfo {
            location: lake.table_url(&zone, &name).to_string(),
            table: full,
            version: state.version(),
            rows,
            files,
            bytes,
            partitioned_by: state.metadata().partition_columns().to_vec(),
            columns: schema
                .fields()
                .map(|f| ColumnInfo {
                    name: f.name().to_string(),
                    ty: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
        });
    }
    if let Some(o) = only
        && out.is_empty()
    {
        return Err(crate::Error::NotFound {
            what: "table or zone",
            name: o.to_string(),
            hint: " in the lake (`cslake tables` lists them)".into(),
        });
    }
    Ok(out)
}

/// The tables as the Markdown reference in docs/tables.md: one section per table, its columns and
/// Delta types (rows and versions left out: they are the lake's, not the contract's).
pub fn markdown(tables: &[TableInfo]) -> String {
    let mut s = String::new();
    for t in tables {
        s.push_str(&format!("### `{}`\n\n", t.table));
        if !t.partitioned_by.is_empty() {
            s.push_str(&format!(
                "Partitioned by `{}`.\n\n",
                t.partitioned_by.join("`, `")
            ));
        }
        s.push_str("| column | type | nulls |\n|---|---|---|\n");
        for c in &t.columns {
            let ty = c.ty.replace('|', "\\|");
            s.push_str(&format!(
                "| `{}` | `{ty}` | {} |\n",
                c.name,
                if c.nullable { "yes" } else { "no" }
            ));
        }
        s.push('\n');
    }
    s
}
