//! The document model of a report: blocks in reading order (KPI cards, charts, tables, notes).

use super::chart;

/// A report: a title, then blocks in reading order.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub title: String,
    pub subtitle: String,
    /// A short line at the foot of every PDF page.
    pub footer: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// Starts a section (a new page in the PDF when `new_page`).
    Heading {
        text: String,
        new_page: bool,
    },
    Cards {
        cards: Vec<Card>,
    },
    Chart {
        title: String,
        /// What the chart shows, for screen readers and as the figure's caption.
        description: String,
        chart: chart::Chart,
        /// Height in points (the width is the page's).
        height: f32,
    },
    Table(Table),
    /// A paragraph (wrapped).
    Text {
        text: String,
        small: bool,
    },
}

/// A KPI card.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Card {
    /// A stable key (`data-kpi` in the HTML).
    pub key: String,
    pub label: String,
    /// The value as displayed.
    pub value: String,
    /// The number behind it.
    pub raw: Option<f64>,
    pub note: String,
    pub tone: Tone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Neutral,
    Good,
    Bad,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Table {
    pub key: String,
    pub title: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Column {
    pub name: String,
    /// Relative width.
    pub weight: f32,
    /// Right-aligned.
    pub numeric: bool,
}

impl Column {
    pub fn text(name: &str, weight: f32) -> Self {
        Self {
            name: name.into(),
            weight,
            numeric: false,
        }
    }
    pub fn num(name: &str, weight: f32) -> Self {
        Self {
            name: name.into(),
            weight,
            numeric: true,
        }
    }
}
