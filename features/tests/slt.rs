//! Runs the sqllogictest files in `sql/tests/` against DataFusion, one session per file.
//!
//! Besides plain SQL, a file can materialise a feature view of the registry as of a date:
//!
//! ```text
//! statement ok
//! MATERIALIZE support AS OF '2026-03-31'
//! ```
//!
//! registers the spine (customers on that date) and the view's rows as a table named after the
//! view, which the following `query` records read. With `-- --complete` the expected results
//! are rewritten from what the SQL returns (review the diff before committing it).
#![allow(clippy::print_stdout)] // a test harness reports on stdout

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use cslake_features::{LabelSpec, Registry, compute_view, register_rollups, register_spine};
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure(e.to_string())
}

struct Db {
    ctx: SessionContext,
    registry: Registry,
}

impl Db {
    /// `MATERIALIZE <view> AS OF '<date>'`
    async fn materialize(&mut self, sql: &str) -> Result<usize, Failure> {
        let words: Vec<&str> = sql.split_whitespace().collect();
        let (name, date) = match words.as_slice() {
            [_, name, a, o, date] if a.eq_ignore_ascii_case("AS") && o.eq_ignore_ascii_case("OF") => {
                (*name, date.trim_matches('\''))
            }
            _ => {
                return Err(Failure(format!(
                    "expected MATERIALIZE <view> AS OF '<date>', got: {sql}"
                )));
            }
        };
        let as_of = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(fail)?;
        let view = self
            .registry
            .views
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| Failure(format!("no feature view '{name}'")))?
            .clone();
        register_rollups(&self.ctx, false).await.map_err(fail)?;
        register_spine(&self.ctx, as_of, &LabelSpec::default())
            .await
            .map_err(fail)?;
        let batches = compute_view(&self.ctx, &self.registry, &view, as_of)
            .await
            .map_err(fail)?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| Failure(format!("{name} returned no batches")))?;
        self.ctx.deregister_table(name).map_err(fail)?;
        let table = datafusion::datasource::MemTable::try_new(schema, vec![batches]).map_err(fail)?;
        self.ctx.register_table(name, Arc::new(table)).map_err(fail)?;
        Ok(rows)
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = Failure;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failure> {
        let first = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if first == "MATERIALIZE" {
            return Ok(DBOutput::StatementComplete(self.materialize(sql).await? as u64));
        }
        let df = self.ctx.sql(sql).await.map_err(fail)?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await.map_err(fail)?;
        if matches!(first.as_str(), "CREATE" | "INSERT" | "DROP" | "SET") {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                    DefaultColumnType::Integer
                }
                DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
                    DefaultColumnType::FloatingPoint
                }
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => DefaultColumnType::Text,
                _ => DefaultColumnType::Any,
            })
            .collect();
        let mut rows = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                let row = b
                    .columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(i) {
                            Ok("NULL".to_string())
                        } else {
                            array_value_to_string(c, i)
                                .map(|s| if s.is_empty() { "(empty)".into() } else { s })
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(fail)?;
                rows.push(row);
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "datafusion"
    }
}

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    files
}

fn main() {
    let complete = std::env::args().any(|a| a == "--complete");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let files = files();
    let mut failed = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let mut runner = sqllogictest::Runner::new(|| async {
            Ok(Db {
                ctx: SessionContext::new(),
                registry: Registry::builtin().map_err(fail)?,
            })
        });
        let result = rt.block_on(async {
            if complete {
                runner
                    .update_test_file(
                        file,
                        " ",
                        sqllogictest::default_validator,
                        sqllogictest::default_normalizer,
                        sqllogictest::default_column_validator,
                    )
                    .await
                    .map_err(|e| e.to_string())
            } else {
                runner
                    .run_file_async(file)
                    .await
                    .map_err(|e| e.display(true).to_string())
            }
        });
        match result {
            Ok(()) => println!("test slt::{name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("test slt::{name} ... FAILED\n{e}");
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out",
        if failed == 0 { "ok" } else { "FAILED" },
        files.len() - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
