//! The HTML rendering: one self-contained file (no scripts or fonts fetched), KPI cards, charts
//! as inline SVG drawn by the same chart code as the PDF, tables with real headers. Light and dark
//! themes follow the reader's system setting, and a button switches between them.

use std::fmt::Write;

use super::chart::draw;
use super::{Anchor, Block, Canvas, Op, Paint, Report, Tone};

/// Charts are drawn in a box this wide (points, as in the PDF) and scaled to the page's width, so
/// their text reads at about the size of the body text.
const CHART_W: f32 = 600.0;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn paint(p: Paint) -> String {
    match p {
        Paint::Fg => "var(--fg)".into(),
        Paint::Muted => "var(--muted)".into(),
        Paint::Grid => "var(--grid)".into(),
        Paint::Surface => "var(--surface)".into(),
        Paint::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
    }
}

fn svg(ops: &[Op], w: f32, h: f32, label: &str) -> String {
    let mut s = format!(
        "<svg viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"{}\" font-family=\"Helvetica, Arial, sans-serif\"><title>{}</title>",
        esc(label),
        esc(label)
    );
    for op in ops {
        match op {
            Op::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                let fill = fill.map(paint).unwrap_or_else(|| "none".into());
                let stroke = stroke
                    .map(|(p, sw)| format!(";stroke:{};stroke-width:{sw}", paint(p)))
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" style=\"fill:{fill}{stroke}\"/>"
                );
            }
            Op::Path {
                points,
                stroke,
                width,
                dashed,
            } => {
                let pts: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let dash = if *dashed { ";stroke-dasharray:3 2" } else { "" };
                let _ = write!(
                    s,
                    "<polyline points=\"{}\" style=\"fill:none;stroke:{};stroke-width:{width}{dash}\"/>",
                    pts.join(" "),
                    paint(*stroke)
                );
            }
            Op::Text {
                x,
                y,
                size,
                bold,
                paint: p,
                anchor,
                text,
            } => {
                let a = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let weight = if *bold { ";font-weight:bold" } else { "" };
                let _ = write!(
                    s,
                    "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{a}\" style=\"font-size:{size}px;fill:{}{weight}\">{}</text>",
                    paint(*p),
                    esc(text)
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --bg: #ffffff; --fg: #111827; --muted: #4b5563; --grid: #dadee4; --surface: #f3f4f6; --good: #006e50; --bad: #b43c00; --accent: #0072b2; }
@media (prefers-color-scheme: dark) { :root:not([data-theme="light"]) { --bg: #111827; --fg: #f3f4f6; --muted: #b6bcc6; --grid: #374151; --surface: #1f2937; --good: #4cc9a0; --bad: #ff9a5c; --accent: #56b4e9; } }
:root[data-theme="dark"] { --bg: #111827; --fg: #f3f4f6; --muted: #b6bcc6; --grid: #374151; --surface: #1f2937; --good: #4cc9a0; --bad: #ff9a5c; --accent: #56b4e9; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.45 Helvetica, Arial, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 24px; }
header { display: flex; justify-content: space-between; align-items: flex-start; gap: 16px; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin: 32px 0 12px; font-size: 20px; border-bottom: 1px solid var(--grid); padding-bottom: 6px; }
h3 { margin: 20px 0 8px; font-size: 15px; }
.subtitle, figcaption, .note { color: var(--muted); font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 12px; }
.card { background: var(--surface); border-radius: 6px; padding: 12px 14px; border-left: 4px solid var(--muted); }
.card.good { border-left-color: var(--good); } .card.bad { border-left-color: var(--bad); }
.card .label { color: var(--muted); font-size: 13px; } .card .value { font-size: 26px; font-weight: bold; }
.card .sub { font-size: 12px; color: var(--muted); } .card.good .sub { color: var(--good); } .card.bad .sub { color: var(--bad); }
figure { margin: 0 0 16px; } svg { width: 100%; height: auto; display: block; }
table { width: 100%; border-collapse: collapse; font-size: 13px; margin-bottom: 12px; }
caption { text-align: left; font-weight: bold; padding: 8px 0; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--grid); text-align: left; vertical-align: top; }
th { background: var(--surface); } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
button { font: inherit; color: var(--fg); background: var(--surface); border: 1px solid var(--grid); border-radius: 6px; padding: 6px 10px; cursor: pointer; }
@media print { button { display: none; } h2 { break-before: auto; } figure, table { break-inside: avoid; } }
"#;

const SCRIPT: &str = r#"
(function () {
  var root = document.documentElement, b = document.getElementById('theme');
  var saved = null; try { saved = localStorage.getItem('cslake-theme'); } catch (e) {}
  if (saved) root.setAttribute('data-theme', saved);
  b.addEventListener('click', function () {
    var dark = root.getAttribute('data-theme') ? root.getAttribute('data-theme') === 'dark'
      : window.matchMedia('(prefers-color-scheme: dark)').matches;
    var next = dark ? 'light' : 'dark';
    root.setAttribute('data-theme', next);
    try { localStorage.setItem('cslake-theme', next); } catch (e) {}
  });
})();
"#;

/// The report as one HTML file.
pub fn render_html(report: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"cslake\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <header><div><h1>{}</h1><div class=\"subtitle\">{}</div></div>\
         <button id=\"theme\" type=\"button\" aria-label=\"Switch between light and dark theme\">Light / dark</button></header>\n",
        esc(&report.title),
        esc(&report.title),
        esc(&report.subtitle)
    );
    for block in &report.blocks {
        match block {
            Block::Heading { text, .. } => {
                let _ = writeln!(h, "<h2>{}</h2>", esc(text));
            }
            Block::Cards { cards } => {
                h.push_str("<section class=\"cards\">\n");
                for c in cards {
                    let tone = match c.tone {
                        Tone::Neutral => "",
                        Tone::Good => " good",
                        Tone::Bad => " bad",
                    };
                    let raw = c.raw.map(|v| format!(" data-value=\"{v}\"")).unwrap_or_default();
                    let _ = writeln!(
                        h,
                        "<div class=\"card{tone}\" data-kpi=\"{}\"{raw}><div class=\"label\">{}</div><div class=\"value\">{}</div><div class=\"sub\">{}</div></div>",
                        esc(&c.key),
                        esc(&c.label),
                        esc(&c.value),
                        esc(&c.note)
                    );
                }
                h.push_str("</section>\n");
            }
            Block::Chart {
                title,
                description,
                chart,
                height,
            } => {
                let ch = height * 1.15;
                let mut canvas = Canvas::default();
                draw(&mut canvas, chart, CHART_W, ch);
                let _ = writeln!(
                    h,
                    "<figure><h3>{}</h3>{}<figcaption>{}</figcaption></figure>",
                    esc(title),
                    svg(&canvas.ops, CHART_W, ch, &format!("{title}. {description}")),
                    esc(description)
                );
            }
            Block::Table(t) => {
                let _ = write!(
                    h,
                    "<table data-table=\"{}\"><caption>{}</caption><thead><tr>",
                    esc(&t.key),
                    esc(&t.title)
                );
                for c in &t.columns {
                    let class = if c.numeric { " class=\"num\"" } else { "" };
                    let _ = write!(h, "<th scope=\"col\"{class}>{}</th>", esc(&c.name));
                }
                h.push_str("</tr></thead><tbody>");
                if t.rows.is_empty() {
                    let _ = write!(
                        h,
                        "<tr><td colspan=\"{}\" class=\"note\">No rows for this date.</td></tr>",
                        t.columns.len()
                    );
                }
                for row in &t.rows {
                    h.push_str("<tr>");
                    for (c, cell) in t.columns.iter().zip(row) {
                        let class = if c.numeric { " class=\"num\"" } else { "" };
                        let _ = write!(h, "<td{class}>{}</td>", esc(cell));
                    }
                    h.push_str("</tr>");
                }
                h.push_str("</tbody></table>\n");
            }
            Block::Text { text, small } => {
                let class = if *small { " class=\"note\"" } else { "" };
                for para in text.split('\n') {
                    let _ = writeln!(h, "<p{class}>{}</p>", esc(para));
                }
            }
        }
    }
    let _ = write!(h, "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_marks_kpis() {
        let r = Report {
            title: "Q&A <report>".into(),
            subtitle: "s".into(),
            footer: "f".into(),
            blocks: vec![Block::Cards {
                cards: vec![super::super::Card {
                    key: "grr".into(),
                    label: "GRR".into(),
                    value: "91.0%".into(),
                    raw: Some(0.91),
                    note: "".into(),
                    tone: Tone::Good,
                }],
            }],
        };
        let h = render_html(&r);
        assert!(h.contains("<title>Q&amp;A &lt;report&gt;</title>"));
        assert!(h.contains("data-kpi=\"grr\" data-value=\"0.91\""));
        assert!(h.contains("prefers-color-scheme: dark"));
    }
}
