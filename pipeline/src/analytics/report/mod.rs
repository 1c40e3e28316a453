//! `cslake report --as-of D --format pdf,html --out DIR [--deliver]`: the executive report.
//!
//! Every figure comes from the tables a BI user reads (`analytics.financial_impact`,
//! `analytics.benchmarks`, `analytics.team_performance`, `analytics.team_goals`, `scores.*`), so
//! the report and a dashboard agree; `report.json` beside the files lists every KPI as shown and
//! the number behind it.

pub mod build;
pub mod deliver;
pub mod write;

pub use build::build;
pub use deliver::{ReportDelivery, deliver};
pub use write::{ReportOutput, write};
