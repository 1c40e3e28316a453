//! The PDF rendering: A4 portrait pages laid out top to bottom, written with pdf-writer using
//! the base-14 Helvetica fonts for WinAnsi text and DejaVu Sans, embedded, for text in other
//! scripts ([`super::unicode`]).

use std::collections::BTreeMap;

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::chart::draw;
use super::metrics::win_ansi;
use super::unicode;
use super::{
    Anchor, Block, Canvas, Op, Paint, Report, Table, Tone, check_pages, fit, fit_size, is_number, text_width,
    wrap,
};

pub const PAGE_W: f32 = 595.28;
pub const PAGE_H: f32 = 841.89;
pub const MARGIN: f32 = 36.0;
const TOP: f32 = 50.0;
const BOTTOM: f32 = PAGE_H - 44.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;

/// The light theme's colours for the roles.
fn rgb(p: Paint) -> (f32, f32, f32) {
    let (r, g, b) = match p {
        Paint::Fg => (17, 24, 39),
        Paint::Muted => (75, 85, 99),
        Paint::Grid => (218, 222, 228),
        Paint::Surface => (243, 244, 246),
        Paint::Rgb(r, g, b) => (r, g, b),
    };
    (f32::from(r) / 255.0, f32::from(g) / 255.0, f32::from(b) / 255.0)
}

fn tone_paint(t: Tone) -> Paint {
    match t {
        Tone::Neutral => Paint::Muted,
        // dark enough for text on white (WCAG AA)
        Tone::Good => Paint::Rgb(0, 110, 80),
        Tone::Bad => Paint::Rgb(180, 60, 0),
    }
}

struct Layout {
    pages: Vec<Canvas>,
    y: f32,
}

impl Layout {
    fn page(&mut self) -> &mut Canvas {
        self.pages.last_mut().expect("a page")
    }
    fn new_page(&mut self) {
        self.pages.push(Canvas::default());
        self.y = TOP;
    }
    /// Starts a new page unless `h` points fit on this one.
    fn need(&mut self, h: f32) {
        if self.y + h > BOTTOM && self.y > TOP {
            self.new_page();
        }
    }
    fn title(&mut self, text: &str) {
        self.need(40.0);
        let y = self.y + 12.0;
        self.page()
            .text_fit(MARGIN, y, text, CONTENT_W, 12.0, true, Paint::Fg, Anchor::Start);
        self.y += 20.0;
    }
}

fn cards(l: &mut Layout, cards: &[super::Card]) {
    let per_row = 4;
    let gap = 8.0;
    let cw = (CONTENT_W - gap * (per_row as f32 - 1.0)) / per_row as f32;
    let ch = 68.0;
    for row in cards.chunks(per_row) {
        l.need(ch + gap);
        let y = l.y;
        for (i, card) in row.iter().enumerate() {
            let x = MARGIN + (cw + gap) * i as f32;
            let p = l.page();
            p.rect(x, y, cw, ch, Some(Paint::Surface), None);
            p.rect(x, y, 3.0, ch, Some(tone_paint(card.tone)), None);
            p.text_fit(
                x + 10.0,
                y + 15.0,
                &card.label,
                cw - 16.0,
                8.0,
                false,
                Paint::Muted,
                Anchor::Start,
            );
            p.text_fit(
                x + 10.0,
                y + 37.0,
                &card.value,
                cw - 16.0,
                18.0,
                true,
                Paint::Fg,
                Anchor::Start,
            );
            let mut lines = wrap(&card.note, cw - 16.0, 7.0, false);
            if lines.len() > 2 {
                lines[1] = fit(
                    &format!("{} {}", lines[1], lines[2..].join(" ")),
                    cw - 16.0,
                    7.0,
                    false,
                );
                lines.truncate(2);
            }
            for (k, line) in lines.iter().enumerate() {
                p.text(
                    x + 10.0,
                    y + 51.0 + 9.0 * k as f32,
                    line,
                    7.0,
                    false,
                    tone_paint(card.tone),
                    Anchor::Start,
                );
            }
        }
        l.y += ch + gap;
    }
    l.y += 6.0;
}

fn table(l: &mut Layout, t: &Table) {
    let row_h = 13.0;
    let head_h = 16.0;
    let size = 7.5;
    let widths = column_widths(t, size);
    let header = |l: &mut Layout, cont: bool| {
        let title = if cont {
            format!("{} (continued)", t.title)
        } else {
            t.title.clone()
        };
        l.title(&title);
        let y = l.y;
        let p = l.page();
        p.rect(MARGIN, y, CONTENT_W, head_h, Some(Paint::Surface), None);
        let mut x = MARGIN;
        for (c, w) in t.columns.iter().zip(&widths) {
            let (tx, anchor) = if c.numeric {
                (x + w - 4.0, Anchor::End)
            } else {
                (x + 4.0, Anchor::Start)
            };
            p.text_fit(tx, y + 10.5, &c.name, w - 8.0, size, true, Paint::Fg, anchor);
            x += w;
        }
        l.y += head_h;
    };
    l.need(20.0 + head_h + row_h * t.rows.len().clamp(1, 3) as f32);
    header(l, false);
    if t.rows.is_empty() {
        let y = l.y + 10.0;
        l.page().text(
            MARGIN + 4.0,
            y,
            "No rows for this date.",
            size,
            false,
            Paint::Muted,
            Anchor::Start,
        );
        l.y += row_h + 8.0;
        return;
    }
    for (i, row) in t.rows.iter().enumerate() {
        // text cells wrap to two lines at most (the second shortened with "…"), numbers stay on one
        // numbers are never cut: one that is wider than its column is set smaller
        let cells: Vec<(Vec<String>, f32)> = t
            .columns
            .iter()
            .zip(&widths)
            .zip(row)
            .map(|((c, w), cell)| {
                if c.numeric || is_number(cell) {
                    return (vec![cell.clone()], fit_size(cell, w - 8.0, size, false));
                }
                let mut lines = wrap(cell, w - 8.0, size, false);
                if lines.len() > 2 {
                    lines[1] = fit(&lines[1..].join(" "), w - 8.0, size, false);
                    lines.truncate(2);
                }
                (lines, size)
            })
            .collect();
        let lines = cells.iter().map(|c| c.0.len()).max().unwrap_or(1).max(1);
        let h = row_h + 9.0 * (lines - 1) as f32;
        if l.y + h > BOTTOM {
            l.new_page();
            header(l, true);
        }
        let y = l.y;
        let p = l.page();
        if i % 2 == 1 {
            p.rect(MARGIN, y, CONTENT_W, h, Some(Paint::Rgb(249, 250, 251)), None);
        }
        let mut x = MARGIN;
        for ((c, w), (cell, cell_size)) in t.columns.iter().zip(&widths).zip(&cells) {
            let (tx, anchor) = if c.numeric {
                (x + w - 4.0, Anchor::End)
            } else {
                (x + 4.0, Anchor::Start)
            };
            for (k, line) in cell.iter().enumerate() {
                p.text(
                    tx,
                    y + 9.0 + 9.0 * k as f32,
                    line,
                    *cell_size,
                    false,
                    Paint::Fg,
                    anchor,
                );
            }
            x += w;
        }
        p.path(
            &[(MARGIN, y + h), (MARGIN + CONTENT_W, y + h)],
            Paint::Grid,
            0.4,
            false,
        );
        l.y += h;
    }
    l.y += 12.0;
}

/// Column widths: every header in full (while the headers fit the page at all), the rest of the
/// width shared by weight.
fn column_widths(t: &Table, size: f32) -> Vec<f32> {
    // a column of numbers needs its widest number as well as its header
    let need: Vec<f32> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let widest = if c.numeric {
                t.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|v| text_width(v, size, false))
                    .fold(0.0, f32::max)
            } else {
                0.0
            };
            text_width(&c.name, size, true).max(widest) + 10.0
        })
        .collect();
    let total_need: f32 = need.iter().sum();
    if total_need >= CONTENT_W {
        return need.iter().map(|n| n / total_need * CONTENT_W).collect();
    }
    // shares by weight, raised to the header's width where that is wider; repeat until stable
    let mut fixed = vec![false; need.len()];
    loop {
        let free = CONTENT_W
            - need
                .iter()
                .zip(&fixed)
                .filter(|(_, f)| **f)
                .map(|(n, _)| n)
                .sum::<f32>();
        let weight: f32 = t
            .columns
            .iter()
            .zip(&fixed)
            .filter(|(_, f)| !**f)
            .map(|(c, _)| c.weight)
            .sum::<f32>()
            .max(1e-3);
        let widths: Vec<f32> = t
            .columns
            .iter()
            .zip(&need)
            .zip(&fixed)
            .map(|((c, n), f)| if *f { *n } else { c.weight / weight * free })
            .collect();
        let mut changed = false;
        for i in 0..widths.len() {
            if !fixed[i] && widths[i] < need[i] {
                fixed[i] = true;
                changed = true;
            }
        }
        if !changed {
            return widths;
        }
    }
}

/// Lays the report out in pages of drawing operations.
pub fn layout(report: &Report) -> Vec<Vec<Op>> {
    let mut l = Layout {
        pages: vec![Canvas::default()],
        y: TOP,
    };
    // the title block
    let y = l.y;
    l.page().text_fit(
        MARGIN,
        y + 16.0,
        &report.title,
        CONTENT_W,
        20.0,
        true,
        Paint::Fg,
        Anchor::Start,
    );
    l.page().text_fit(
        MARGIN,
        y + 32.0,
        &report.subtitle,
        CONTENT_W,
        9.0,
        false,
        Paint::Muted,
        Anchor::Start,
    );
    l.y += 46.0;
    for block in &report.blocks {
        match block {
            Block::Heading { text, new_page } => {
                if *new_page && l.y > TOP {
                    l.new_page();
                }
                l.need(80.0);
                let y = l.y + 14.0;
                l.page()
                    .text_fit(MARGIN, y, text, CONTENT_W, 15.0, true, Paint::Fg, Anchor::Start);
                let y = l.y + 20.0;
                l.page()
                    .path(&[(MARGIN, y), (MARGIN + CONTENT_W, y)], Paint::Grid, 0.8, false);
                l.y += 30.0;
            }
            Block::Cards { cards: cs } => cards(&mut l, cs),
            Block::Chart {
                title,
                description,
                chart,
                height,
            } => {
                let caption = wrap(description, CONTENT_W, 7.5, false);
                l.need(20.0 + height + 10.0 * caption.len() as f32 + 14.0);
                l.title(title);
                let y = l.y;
                let p = l.page();
                p.dx = MARGIN;
                p.dy = y;
                draw(p, chart, CONTENT_W, *height);
                p.dx = 0.0;
                p.dy = 0.0;
                l.y += height + 12.0;
                for line in caption {
                    let y = l.y;
                    l.page()
                        .text(MARGIN, y, &line, 7.5, false, Paint::Muted, Anchor::Start);
                    l.y += 10.0;
                }
                l.y += 12.0;
            }
            Block::Table(t) => table(&mut l, t),
            Block::Text { text, small } => {
                let size = if *small { 7.0 } else { 9.0 };
                let lead = size * 1.4;
                for para in text.split('\n') {
                    for line in wrap(para, CONTENT_W, size, false) {
                        l.need(lead);
                        let y = l.y + size;
                        l.page()
                            .text(MARGIN, y, &line, size, false, Paint::Muted, Anchor::Start);
                        l.y += lead;
                    }
                }
                l.y += 8.0;
            }
        }
    }
    // running header and footer
    let n = l.pages.len();
    let mut pages: Vec<Vec<Op>> = Vec::with_capacity(n);
    for (i, mut p) in l.pages.into_iter().enumerate() {
        if i > 0 {
            let t = fit(&report.title, CONTENT_W * 0.7, 7.5, false);
            p.text(MARGIN, 30.0, &t, 7.5, false, Paint::Muted, Anchor::Start);
        }
        p.text(
            PAGE_W - MARGIN,
            PAGE_H - 22.0,
            &format!("Page {} of {n}", i + 1),
            7.5,
            false,
            Paint::Muted,
            Anchor::End,
        );
        let foot = fit(&report.footer, CONTENT_W * 0.7, 7.5, false);
        p.text(
            MARGIN,
            PAGE_H - 22.0,
            &foot,
            7.5,
            false,
            Paint::Muted,
            Anchor::Start,
        );
        pages.push(p.ops);
    }
    pages
}

/// The PDF, its number of pages, and what [`check_pages`] found wrong with its layout (empty
/// when nothing).
pub fn render_pdf(report: &Report) -> (Vec<u8>, usize, Vec<String>) {
    let pages = layout(report);
    let problems = check_pages(&pages, PAGE_W, PAGE_H, MARGIN);
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let mut next = 6;
    let mut ids = Vec::new();
    for _ in &pages {
        ids.push((Ref::new(next), Ref::new(next + 1)));
        next += 2;
    }
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(ids.iter().map(|(p, _)| *p))
        .count(ids.len() as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    // text Helvetica cannot show is set in the embedded DejaVu Sans (F3 regular, F4 bold)
    let mut used: [BTreeMap<u16, char>; 2] = Default::default();
    for op in pages.iter().flatten() {
        if let Op::Text { text, bold, .. } = op
            && unicode::needs(text)
        {
            unicode::font(*bold).collect(text, &mut used[usize::from(*bold)]);
        }
    }
    let mut unicode_fonts = Vec::new();
    let mut subsets: [Option<subsetter::GlyphRemapper>; 2] = Default::default();
    for (k, name) in [(0usize, "F3"), (1, "F4")] {
        if !used[k].is_empty() {
            let id = Ref::new(next);
            // a subset's name starts with a six-letter tag
            let base: &[u8] = if k == 1 {
                b"CSLAKE+DejaVuSans-Bold"
            } else {
                b"CSLAKE+DejaVuSans"
            };
            let (after, subset) = unicode::font(k == 1).write(&mut pdf, id, next + 1, base, &used[k]);
            next = after;
            subsets[k] = Some(subset);
            unicode_fonts.push((name, id));
        }
    }
    pdf.document_info(info)
        .title(TextStr(&report.title))
        .subject(TextStr(&report.subtitle))
        .creator(TextStr("cslake"))
        .producer(TextStr("cslake (pdf-writer)"));
    for (ops, (page_id, content_id)) in pages.iter().zip(&ids) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree);
        page.contents(*content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(Name(b"F1"), regular).pair(Name(b"F2"), bold);
        for (name, id) in &unicode_fonts {
            fonts.pair(Name(name.as_bytes()), *id);
        }
        fonts.finish();
        resources.finish();
        page.finish();
        let mut c = Content::new();
        for op in ops {
            emit(&mut c, op, &subsets);
        }
        pdf.stream(*content_id, &c.finish());
    }
    (pdf.finish(), pages.len(), problems)
}

fn emit(c: &mut Content, op: &Op, subsets: &[Option<subsetter::GlyphRemapper>; 2]) {
    let fy = |y: f32| PAGE_H - y;
    match op {
        Op::Rect {
            x,
            y,
            w,
            h,
            fill,
            stroke,
        } => {
            if let Some(f) = fill {
                let (r, g, b) = rgb(*f);
                c.set_fill_rgb(r, g, b);
                c.rect(*x, fy(y + h), *w, *h);
                c.fill_nonzero();
            }
            if let Some((s, width)) = stroke {
                let (r, g, b) = rgb(*s);
                c.set_stroke_rgb(r, g, b);
                c.set_line_width(*width);
                c.rect(*x, fy(y + h), *w, *h);
                c.stroke();
            }
        }
        Op::Path {
            points,
            stroke,
            width,
            dashed,
        } => {
            let Some((first, rest)) = points.split_first() else {
                return;
            };
            let (r, g, b) = rgb(*stroke);
            c.set_stroke_rgb(r, g, b);
            c.set_line_width(*width);
            if *dashed {
                c.set_dash_pattern([3.0, 2.0], 0.0);
            }
            c.move_to(first.0, fy(first.1));
            for (x, y) in rest {
                c.line_to(*x, fy(*y));
            }
            c.stroke();
            if *dashed {
                c.set_dash_pattern([], 0.0);
            }
        }
        Op::Text {
            x,
            y,
            size,
            bold,
            paint,
            anchor,
            text,
        } => {
            let w = text_width(text, *size, *bold);
            let x0 = match anchor {
                Anchor::Start => *x,
                Anchor::Middle => x - w / 2.0,
                Anchor::End => x - w,
            };
            let (r, g, b) = rgb(*paint);
            c.set_fill_rgb(r, g, b);
            c.begin_text();
            if unicode::needs(text)
                && let Some(subset) = &subsets[usize::from(*bold)]
            {
                c.set_font(Name(if *bold { b"F4" } else { b"F3" }), *size);
                c.next_line(x0, fy(*y));
                c.show(Str(&unicode::font(*bold).encode(text, subset)));
            } else {
                c.set_font(Name(if *bold { b"F2" } else { b"F1" }), *size);
                c.next_line(x0, fy(*y));
                c.show(Str(&win_ansi(text)));
            }
            c.end_text();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Column, Table};

    /// Names in other scripts print as themselves (pdftotext reads them back), in the embedded
    /// font, and the layout check has nothing to say.
    #[test]
    fn names_in_other_scripts_print_as_themselves() {
        let names = [
            "Общество Север",
            "Łódź Analytics",
            "Ελληνική Εταιρεία",
            "Acme Corp",
        ];
        let report = Report {
            title: "Отчёт — Ωmega".into(),
            subtitle: "as of 2026-10-31".into(),
            footer: "cslake".into(),
            blocks: vec![Block::Table(Table {
                key: "accounts".into(),
                title: "Accounts".into(),
                columns: vec![Column::text("Account", 2.0), Column::num("MRR", 1.0)],
                rows: names
                    .iter()
                    .map(|n| vec![n.to_string(), "$1,200".into()])
                    .collect(),
            })],
        };
        let (bytes, pages, problems) = render_pdf(&report);
        assert_eq!(pages, 1);
        assert!(problems.is_empty(), "{problems:?}");
        // only the glyphs used are embedded, not the 750 KB font
        assert!(bytes.len() < 60_000, "{} bytes", bytes.len());
        let dir = tempfile::tempdir().unwrap();
        let pdf = dir.path().join("r.pdf");
        std::fs::write(&pdf, &bytes).unwrap();
        let out = std::process::Command::new("pdftotext")
            .arg(&pdf)
            .arg("-")
            .output()
            .expect("pdftotext (poppler-utils, installed by .ci/setup) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        for n in names.iter().chain(&["Отчёт — Ωmega"]) {
            assert!(text.contains(n), "{n} not in:\n{text}");
        }
        // a script no embedded font covers is reported, not printed as boxes unnoticed
        let mut cjk = report.clone();
        cjk.title = "株式会社".into();
        let (_, _, problems) = render_pdf(&cjk);
        assert!(problems.iter().any(|p| p.contains("株式会社")), "{problems:?}");
    }
}
