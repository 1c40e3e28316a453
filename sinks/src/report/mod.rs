//! Reports people open: a [`Report`] (KPI cards, charts, tables, notes) rendered to a PDF (vector
//! charts, the PDF base-14 Helvetica, and DejaVu Sans embedded for text in other scripts) and to one self-contained HTML file
//! (inline SVG charts, light and dark themes). Both renderings draw the charts with the same code
//! ([`chart`]) onto a display list ([`Canvas`]), so the figures agree by construction.
//!
//! Layout is computed with the font's real metrics: numbers are never shortened (columns of numbers
//! are as wide as their widest value; one that still does not fit is set smaller), other text that
//! would not fit drops whole words for "…", blocks that do not fit a page move to the next one,
//! tables continue on the next page with their header. [`check_pages`] verifies the result
//! (nothing outside the printable area, no text over other text, no number cut short, no empty
//! page) and the PDF renderer returns its findings.

mod canvas;
pub mod chart;
mod document;
mod format;
mod html;
mod metrics;
mod pdf;
mod unicode;

pub use canvas::{
    Anchor, Bounds, Canvas, Op, Paint, check_pages, cuts_a_number, fit, fit_size, is_number, wrap,
};
pub use document::{Block, Card, Column, Report, Table, Tone};
pub use format::{money, percent};
pub use html::render_html;
pub use metrics::text_width;
pub use pdf::render_pdf;
