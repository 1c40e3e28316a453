//! The one JSON line every command ends stdout with, for schedulers (Airflow pushes it to XCom):
//! `status`, the `command`, its `run_id` when it wrote an audit row, and the command's own report.

use cslake_pipeline::RunContext;
use serde::Serialize;
use serde_json::{Map, Value};

/// `println!` for stdout that ends the process quietly when the reader has gone away
/// (`cslake query ... | head`), instead of panicking on the broken pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::summary::emit(format_args!($($arg)*))
    };
}

pub fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}")
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Succeeded,
    Failed,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten)]
    fields: Map<String, Value>,
    /// Printed but not a success: the summary line says failed, the exit code is 1.
    #[serde(skip)]
    pub unsuccessful: Option<String>,
    /// Not printed: stdout is data (`cslake query --format csv|json`).
    #[serde(skip)]
    silent: bool,
}

impl Summary {
    pub fn succeeded(command: &str) -> Self {
        Self {
            status: Status::Succeeded,
            command: Some(command.to_string()),
            run_id: None,
            exit_code: None,
            error: None,
            fields: Map::new(),
            unsuccessful: None,
            silent: false,
        }
    }

    /// The command ran to its end but did not succeed (a damaged backup, an undelivered
    /// report): its report is in the line, and the process exits 1 with `why`.
    pub fn unsuccessful(mut self, why: String) -> Self {
        self.status = Status::Failed;
        self.exit_code = Some(1);
        self.error = Some(why.clone());
        self.unsuccessful = Some(why);
        self
    }

    /// A command that failed with `error` (exit code `code`).
    pub fn failed(code: i32, error: String) -> Self {
        Self {
            status: Status::Failed,
            command: None,
            run_id: None,
            exit_code: Some(code),
            error: Some(error),
            fields: Map::new(),
            unsuccessful: None,
            silent: false,
        }
    }

    /// The audit row the command wrote.
    pub fn run(mut self, run: &RunContext) -> Self {
        self.run_id = Some(run.run_id.clone());
        self
    }

    /// The rows the command printed, when it says.
    pub fn rows(&self) -> Option<u64> {
        self.fields.get("rows").and_then(Value::as_u64)
    }

    /// Adds a field.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.fields.insert(key.to_string(), to_value(value));
        self
    }

    /// Adds every field of a report at the top level.
    pub fn merge(mut self, report: impl Serialize) -> Self {
        if let Value::Object(m) = to_value(report) {
            self.fields.extend(m);
        }
        self
    }

    /// Leaves stdout to the data the command printed.
    pub fn silent(mut self) -> Self {
        self.silent = true;
        self
    }

    pub fn print(&self) {
        if self.silent {
            return;
        }
        let line = serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"status\":\"failed\",\"error\":\"{e}\"}}"));
        // no secret leaves the process, whatever a server echoed into an error
        let line = cslake_pipeline::mask(&line);
        match self.status {
            Status::Succeeded => out!("{line}"),
            // the reader may be gone, but the exit code must still say the command failed:
            // the caller exits with it, whether or not the line could be written
            Status::Failed => {
                use std::io::Write;
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        }
    }
}

fn to_value(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| Value::String(format!("(not serialisable: {e})")))
}
