//! Writes the report: the PDF, the light/dark HTML page and `report.json` with every KPI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cslake_sinks::report::Report;

use crate::{Error, Result};

/// What `cslake report` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportOutput {
    pub as_of: String,
    pub files: Vec<PathBuf>,
    pub pages: usize,
    /// Layout problems found in the PDF (text over text, outside the page); empty when none.
    pub layout_problems: Vec<String>,
    /// Every KPI card: key → {label, value as shown, raw number}.
    pub kpis: BTreeMap<String, serde_json::Value>,
    #[serde(skip)]
    pub report: Report,
    #[serde(skip)]
    pub pdf: Option<Vec<u8>>,
    #[serde(skip)]
    pub html: Option<String>,
}

/// Renders the formats asked for and writes them (and `report.json`) under `out`.
pub fn write(mut r: ReportOutput, formats: &[String], out: &Path) -> Result<ReportOutput> {
    if let Some(other) = formats.iter().find(|f| !matches!(f.as_str(), "pdf" | "html")) {
        return Err(Error::Config(format!(
            "--format {other}: expected pdf, html or both (pdf,html)"
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.display().to_string(),
        source,
    })?;
    let base = format!("cslake-report-{}", r.as_of);
    let put = |name: String, bytes: &[u8]| -> Result<PathBuf> {
        let p = out.join(name);
        let tmp = p.with_extension("partial");
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?;
        Ok(p)
    };
    for f in formats {
        match f.as_str() {
            "pdf" => {
                let (bytes, pages, problems) = cslake_sinks::report::render_pdf(&r.report);
                r.pages = pages;
                for p in &problems {
                    tracing::warn!(problem = %p, "report layout");
                }
                r.layout_problems = problems;
                r.files.push(put(format!("{base}.pdf"), &bytes)?);
                r.pdf = Some(bytes);
            }
            "html" => {
                let html = cslake_sinks::report::render_html(&r.report);
                r.files.push(put(format!("{base}.html"), html.as_bytes())?);
                r.html = Some(html);
            }
            _ => unreachable!("formats are checked above"),
        }
    }
    let json = serde_json::json!({"as_of": r.as_of, "kpis": r.kpis, "report": r.report});
    r.files.push(put(
        format!("{base}.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default().as_bytes(),
    )?);
    Ok(r)
}
