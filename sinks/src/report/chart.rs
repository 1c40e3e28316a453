//! Charts drawn onto a [`Canvas`]: grouped bars, lines over time and a heat map, with axes, nice
//! ticks, legends and labels that are measured before they are placed (shortened, thinned out or
//! left out rather than drawn over each other). Colours: the Okabe–Ito palette, which stays
//! distinguishable with the common colour-vision deficiencies, and a single-hue sequential scale
//! for the heat map, with the cell text in black or white by contrast.

use super::{Anchor, Canvas, Paint, fit, text_width};

/// How values are written on axes and labels.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumFmt {
    Money(String),
    Percent,
    Number,
}

impl NumFmt {
    pub fn format(&self, v: f64) -> String {
        match self {
            NumFmt::Money(c) => super::money(v, c),
            NumFmt::Percent => {
                if v.is_finite() {
                    format!("{:.0}%", v * 100.0)
                } else {
                    "–".into()
                }
            }
            NumFmt::Number => {
                if !v.is_finite() {
                    "–".into()
                } else if v.abs() >= 1e4 {
                    super::money(v, "")
                } else if v.fract() == 0.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            }
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Series {
    pub name: String,
    /// NaN = no value.
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Chart {
    Bars {
        categories: Vec<String>,
        series: Vec<Series>,
        format: NumFmt,
    },
    Lines {
        x: Vec<String>,
        series: Vec<Series>,
        format: NumFmt,
    },
    Heatmap {
        rows: Vec<String>,
        cols: Vec<String>,
        /// Drives the colour.
        values: Vec<Vec<f64>>,
        /// Written in the cell.
        labels: Vec<Vec<String>>,
        row_title: String,
        col_title: String,
    },
}

/// Okabe–Ito: blue, vermillion, bluish green, orange, reddish purple, sky blue, yellow.
pub const PALETTE: [(u8, u8, u8); 7] = [
    (0, 114, 178),
    (213, 94, 0),
    (0, 158, 115),
    (230, 159, 0),
    (204, 121, 167),
    (86, 180, 233),
    (240, 228, 66),
];

pub fn color(i: usize) -> Paint {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    Paint::Rgb(r, g, b)
}

/// About `n` round tick values covering [lo, hi].
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let (lo, hi) = if (hi - lo).abs() < 1e-12 {
        (lo - 1.0_f64.max(lo.abs() * 0.1), hi + 1.0_f64.max(hi.abs() * 0.1))
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).floor() * step;
    let mut t = Vec::new();
    let mut v = start;
    while v <= hi + step * 0.999 && t.len() < 50 {
        t.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    t
}

const AXIS: f32 = 7.5;
const LEGEND: f32 = 8.0;

/// Draws a legend in one row at the top; returns its height.
fn legend(c: &mut Canvas, names: &[String], w: f32) -> f32 {
    if names.len() < 2 {
        return 0.0;
    }
    let mut x = 0.0;
    let mut y = 8.0;
    for (i, n) in names.iter().enumerate() {
        let label = fit(n, w * 0.45, LEGEND, false);
        let item = 12.0 + text_width(&label, LEGEND, false) + 12.0;
        if x + item > w && x > 0.0 {
            x = 0.0;
            y += 12.0;
        }
        c.rect(x, y - 7.0, 8.0, 8.0, Some(color(i)), None);
        c.text(x + 11.0, y, &label, LEGEND, false, Paint::Fg, Anchor::Start);
        x += item;
    }
    y + 8.0
}

/// The y axis (ticks, labels, grid lines) of a plot area; returns the left margin used.
fn y_axis(ticks: &[f64], fmt: &NumFmt) -> f32 {
    ticks
        .iter()
        .map(|t| text_width(&fmt.format(*t), AXIS, false))
        .fold(0.0, f32::max)
        + 6.0
}

struct Plot {
    x: f32,
    y: f32,
    w: f32,
    h: f32,
    lo: f64,
    hi: f64,
}

impl Plot {
    fn y_of(&self, v: f64) -> f32 {
        self.y + self.h - ((v - self.lo) / (self.hi - self.lo)) as f32 * self.h
    }
}

fn grid(c: &mut Canvas, p: &Plot, ticks: &[f64], fmt: &NumFmt) {
    for t in ticks {
        let y = p.y_of(*t);
        c.path(&[(p.x, y), (p.x + p.w, y)], Paint::Grid, 0.5, false);
        c.text(
            p.x - 4.0,
            y + AXIS * 0.35,
            &fmt.format(*t),
            AXIS,
            false,
            Paint::Muted,
            Anchor::End,
        );
    }
    c.path(
        &[(p.x, p.y + p.h), (p.x + p.w, p.y + p.h)],
        Paint::Muted,
        0.8,
        false,
    );
}

/// Draws `chart` into a `w` × `h` box at the canvas origin.
pub fn draw(c: &mut Canvas, chart: &Chart, w: f32, h: f32) {
    match chart {
        Chart::Bars {
            categories,
            series,
            format,
        } => bars(c, categories, series, format, w, h),
        Chart::Lines { x, series, format } => lines(c, x, series, format, w, h),
        Chart::Heatmap {
            rows,
            cols,
            values,
            labels,
            row_title,
            col_title,
        } => heatmap(c, rows, cols, values, labels, row_title, col_title, w, h),
    }
}

fn range(series: &[Series], zero: bool) -> (f64, f64) {
    let vals = series
        .iter()
        .flat_map(|s| s.values.iter())
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = vals.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    if zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    (lo, hi)
}

fn bars(c: &mut Canvas, cats: &[String], series: &[Series], fmt: &NumFmt, w: f32, h: f32) {
    let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
    let top = legend(c, &names, w) + 6.0;
    let (lo, hi) = range(series, true);
    let ticks = nice_ticks(lo, hi, 5);
    let left = y_axis(&ticks, fmt);
    let bottom = 16.0;
    let p = Plot {
        x: left,
        y: top,
        w: w - left,
        h: h - top - bottom,
        lo: *ticks.first().unwrap_or(&lo),
        hi: *ticks.last().unwrap_or(&hi),
    };
    grid(c, &p, &ticks, fmt);
    if cats.is_empty() {
        return;
    }
    let group = p.w / cats.len() as f32;
    let ns = series.len().max(1) as f32;
    let bw = (group * 0.75 / ns).min(40.0);
    for (i, cat) in cats.iter().enumerate() {
        let gx = p.x + group * i as f32 + (group - bw * ns) / 2.0;
        for (j, s) in series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(f64::NAN);
            if !v.is_finite() {
                continue;
            }
            let (y0, y1) = (p.y_of(0.0_f64.max(p.lo)), p.y_of(v));
            let x = gx + bw * j as f32;
            c.rect(x, y0.min(y1), bw, (y0 - y1).abs().max(0.5), Some(color(j)), None);
            // the value on top of its bar when it fits the bar's width and the space above
            let label = fmt.format(v);
            let lw = text_width(&label, 6.5, false);
            if lw <= bw + 2.0 && y1.min(y0) - 9.0 >= p.y {
                c.text(
                    x + bw / 2.0,
                    y1.min(y0) - 2.5,
                    &label,
                    6.5,
                    false,
                    Paint::Fg,
                    Anchor::Middle,
                );
            }
        }
        c.text_fit(
            p.x + group * i as f32 + group / 2.0,
            p.y + p.h + 10.0,
            cat,
            group - 4.0,
            AXIS,
            false,
            Paint::Fg,
            Anchor::Middle,
        );
    }
}

fn lines(c: &mut Canvas, xs: &[String], series: &[Series], fmt: &NumFmt, w: f32, h: f32) {
    let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
    let top = legend(c, &names, w) + 6.0;
    let (lo, hi) = range(series, false);
    let pad = ((hi - lo) * 0.1).max(1e-9);
    let ticks = nice_ticks(lo - pad, hi + pad, 5);
    let left = y_axis(&ticks, fmt);
    let bottom = 16.0;
    let p = Plot {
        x: left,
        y: top,
        w: w - left - 4.0,
        h: h - top - bottom,
        lo: *ticks.first().unwrap_or(&lo),
        hi: *ticks.last().unwrap_or(&hi),
    };
    grid(c, &p, &ticks, fmt);
    let n = xs.len();
    if n == 0 {
        return;
    }
    let x_of = |i: usize| {
        if n == 1 {
            p.x + p.w / 2.0
        } else {
            p.x + p.w * i as f32 / (n - 1) as f32
        }
    };
    // x labels: as many as fit without touching, always the first and the last
    let widest = xs.iter().map(|s| text_width(s, AXIS, false)).fold(0.0, f32::max) + 8.0;
    let fit_n = ((p.w / widest).floor() as usize).clamp(1, n);
    let step = n.div_ceil(fit_n).max(1);
    let mut shown: Vec<usize> = (0..n).step_by(step).collect();
    if let Some(&last) = shown.last()
        && last != n - 1
    {
        if x_of(n - 1) - x_of(last) < widest {
            shown.pop();
        }
        shown.push(n - 1);
    }
    for i in shown {
        let anchor = if i == 0 && n > 1 {
            Anchor::Start
        } else if i == n - 1 && n > 1 {
            Anchor::End
        } else {
            Anchor::Middle
        };
        c.text(
            x_of(i),
            p.y + p.h + 10.0,
            &xs[i],
            AXIS,
            false,
            Paint::Muted,
            anchor,
        );
    }
    for (j, s) in series.iter().enumerate() {
        let mut run: Vec<(f32, f32)> = Vec::new();
        let width = if j == 0 { 2.0 } else { 1.4 };
        for (i, v) in s.values.iter().enumerate() {
            if v.is_finite() {
                run.push((x_of(i), p.y_of(*v)));
            } else if !run.is_empty() {
                c.path(&std::mem::take(&mut run), color(j), width, j >= PALETTE.len());
            }
        }
        if run.len() == 1 {
            let (x, y) = run[0];
            c.rect(x - 1.5, y - 1.5, 3.0, 3.0, Some(color(j)), None);
        } else if !run.is_empty() {
            c.path(&run, color(j), width, j >= PALETTE.len());
        }
    }
}

/// Blues, light to dark.
fn sequential(t: f64) -> (u8, u8, u8) {
    let t = t.clamp(0.0, 1.0);
    let (a, b) = ((239.0, 243.0, 255.0), (8.0, 48.0, 107.0));
    let m = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    (m(a.0, b.0), m(a.1, b.1), m(a.2, b.2))
}

#[allow(clippy::too_many_arguments)]
fn heatmap(
    c: &mut Canvas,
    rows: &[String],
    cols: &[String],
    values: &[Vec<f64>],
    labels: &[Vec<String>],
    row_title: &str,
    col_title: &str,
    w: f32,
    h: f32,
) {
    if rows.is_empty() || cols.is_empty() {
        return;
    }
    let left = rows
        .iter()
        .map(|r| text_width(r, AXIS, true))
        .fold(text_width(row_title, AXIS, false), f32::max)
        + 8.0;
    let left = left.min(w * 0.3);
    let top = 26.0;
    let cw = (w - left) / cols.len() as f32;
    let ch = (h - top) / rows.len() as f32;
    c.text_fit(
        0.0,
        8.0,
        row_title,
        left - 4.0,
        AXIS,
        false,
        Paint::Muted,
        Anchor::Start,
    );
    c.text_fit(
        left + (w - left) / 2.0,
        8.0,
        col_title,
        w - left,
        AXIS,
        false,
        Paint::Muted,
        Anchor::Middle,
    );
    for (j, col) in cols.iter().enumerate() {
        c.text_fit(
            left + cw * (j as f32 + 0.5),
            top - 6.0,
            col,
            cw - 4.0,
            AXIS,
            true,
            Paint::Fg,
            Anchor::Middle,
        );
    }
    let max = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    for (i, row) in rows.iter().enumerate() {
        let y = top + ch * i as f32;
        c.text_fit(
            0.0,
            y + ch / 2.0 + AXIS * 0.35,
            row,
            left - 6.0,
            AXIS,
            true,
            Paint::Fg,
            Anchor::Start,
        );
        for j in 0..cols.len() {
            let v = values.get(i).and_then(|r| r.get(j)).copied().unwrap_or(f64::NAN);
            let t = if max > 0.0 && v.is_finite() {
                (v / max).sqrt()
            } else {
                0.0
            };
            let (r, g, b) = sequential(t);
            let x = left + cw * j as f32;
            c.rect(
                x + 1.0,
                y + 1.0,
                cw - 2.0,
                ch - 2.0,
                Some(Paint::Rgb(r, g, b)),
                None,
            );
            let lum = 0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b);
            let ink = if lum < 140.0 {
                Paint::Rgb(255, 255, 255)
            } else {
                Paint::Rgb(17, 24, 39)
            };
            let label = labels.get(i).and_then(|r| r.get(j)).cloned().unwrap_or_default();
            if ch >= 12.0 {
                c.text_fit(
                    x + cw / 2.0,
                    y + ch / 2.0 + 2.5,
                    &label,
                    cw - 6.0,
                    7.0,
                    false,
                    ink,
                    Anchor::Middle,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = nice_ticks(0.0, 87_000.0, 5);
        assert_eq!(t.first(), Some(&0.0));
        assert!(*t.last().unwrap() >= 87_000.0);
        assert!(
            t.windows(2).all(|w| (w[1] - w[0] - 20_000.0).abs() < 1e-6),
            "{t:?}"
        );
        let t = nice_ticks(0.62, 0.71, 4);
        assert!(t[0] <= 0.62 && *t.last().unwrap() >= 0.71, "{t:?}");
        assert!(!nice_ticks(5.0, 5.0, 5).is_empty());
    }

    #[test]
    fn bar_labels_never_overlap() {
        let chart = Chart::Bars {
            categories: (0..12)
                .map(|i| format!("a rather long segment name {i}"))
                .collect(),
            series: vec![
                Series {
                    name: "Revenue at risk".into(),
                    values: (0..12).map(|i| 1000.0 * i as f64).collect(),
                },
                Series {
                    name: "Pipeline".into(),
                    values: (0..12).map(|i| 700.0 * i as f64).collect(),
                },
            ],
            format: NumFmt::Money("$".into()),
        };
        let mut c = Canvas {
            dx: 40.0,
            dy: 60.0,
            ..Default::default()
        };
        draw(&mut c, &chart, 500.0, 200.0);
        let problems = super::super::check_pages(&[c.ops], 595.0, 842.0, 36.0);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
