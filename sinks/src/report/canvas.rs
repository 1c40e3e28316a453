//! The display list both renderers draw onto ([`Canvas`]), and the layout helpers that measure
//! text with the font's real metrics: `fit` shortens, `wrap` breaks lines, `check_pages` finds
//! text outside the printable area or over other text.

use super::metrics::text_width;

/// A colour: theme roles (resolved by each renderer: CSS variables in HTML, the light theme in
/// the PDF) or a fixed colour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Paint {
    Fg,
    Muted,
    Grid,
    Surface,
    Rgb(u8, u8, u8),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// A box: (x0, top, x1, bottom).
pub type Bounds = (f32, f32, f32, f32);

/// One drawing operation, in points, origin top-left, y down.
#[derive(Debug, Clone)]
pub enum Op {
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Paint>,
        stroke: Option<(Paint, f32)>,
    },
    Path {
        points: Vec<(f32, f32)>,
        stroke: Paint,
        width: f32,
        dashed: bool,
    },
    Text {
        x: f32,
        /// The baseline.
        y: f32,
        size: f32,
        bold: bool,
        paint: Paint,
        anchor: Anchor,
        text: String,
    },
}

impl Op {
    /// The box a text occupies: (x0, top, x1, bottom).
    pub fn text_box(&self) -> Option<(f32, f32, f32, f32)> {
        let Op::Text {
            x,
            y,
            size,
            bold,
            anchor,
            text,
            ..
        } = self
        else {
            return None;
        };
        let w = text_width(text, *size, *bold);
        let x0 = match anchor {
            Anchor::Start => *x,
            Anchor::Middle => x - w / 2.0,
            Anchor::End => x - w,
        };
        Some((x0, y - 0.72 * size, x0 + w, y + 0.21 * size))
    }

    /// The box any operation covers.
    fn bounds(&self) -> (f32, f32, f32, f32) {
        match self {
            Op::Rect { x, y, w, h, .. } => (*x, *y, x + w, y + h),
            Op::Path { points, .. } => points.iter().fold(
                (f32::MAX, f32::MAX, f32::MIN, f32::MIN),
                |(a, b, c, d), (x, y)| (a.min(*x), b.min(*y), c.max(*x), d.max(*y)),
            ),
            Op::Text { .. } => self.text_box().unwrap_or_default(),
        }
    }
}

/// A display list being drawn, with an offset (charts draw at their own origin).
#[derive(Debug, Default)]
pub struct Canvas {
    pub ops: Vec<Op>,
    pub dx: f32,
    pub dy: f32,
}

impl Canvas {
    pub fn rect(
        &mut self,
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Paint>,
        stroke: Option<(Paint, f32)>,
    ) {
        self.ops.push(Op::Rect {
            x: x + self.dx,
            y: y + self.dy,
            w,
            h,
            fill,
            stroke,
        });
    }

    pub fn path(&mut self, points: &[(f32, f32)], stroke: Paint, width: f32, dashed: bool) {
        self.ops.push(Op::Path {
            points: points.iter().map(|(x, y)| (x + self.dx, y + self.dy)).collect(),
            stroke,
            width,
            dashed,
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub fn text(&mut self, x: f32, y: f32, text: &str, size: f32, bold: bool, paint: Paint, anchor: Anchor) {
        if text.is_empty() {
            return;
        }
        self.ops.push(Op::Text {
            x: x + self.dx,
            y: y + self.dy,
            size,
            bold,
            paint,
            anchor,
            text: text.to_string(),
        });
    }

    /// Text shortened with "…" to fit `max_w`.
    #[allow(clippy::too_many_arguments)]
    pub fn text_fit(
        &mut self,
        x: f32,
        y: f32,
        text: &str,
        max_w: f32,
        size: f32,
        bold: bool,
        paint: Paint,
        anchor: Anchor,
    ) {
        if is_number(text) {
            // a number is never shortened: it is set smaller until it fits
            let size = fit_size(text, max_w, size, bold);
            self.text(x, y, text, size, bold, paint, anchor);
        } else {
            let t = fit(text, max_w, size, bold);
            self.text(x, y, &t, size, bold, paint, anchor);
        }
    }
}

/// Whether `text` reads as a number (`$1.2M`, `135.4`, `79.8%`, `12/54`, `-3`): a digit, and more
/// digits than letters (unit suffixes such as K, M, B).
pub fn is_number(text: &str) -> bool {
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    digits > 0 && letters < digits && !text.contains(' ')
}

/// The font size, at most `size` and at least 4 points, at which `text` is at most `max_w` wide.
pub fn fit_size(text: &str, max_w: f32, size: f32, bold: bool) -> f32 {
    let w = text_width(text, size, bold);
    if w <= max_w || w <= 0.0 {
        size
    } else {
        (size * max_w / w * 0.98).max(4.0)
    }
}

/// `text`, shortened with "…" until it is at most `max_w` wide: whole words are dropped first, and
/// a cut never ends inside a number (`$1.2…` would misstate it).
pub fn fit(text: &str, max_w: f32, size: f32, bold: bool) -> String {
    if text_width(text, size, bold) <= max_w {
        return text.to_string();
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    for n in (1..words.len()).rev() {
        let t = format!("{} …", words[..n].join(" "));
        if text_width(&t, size, bold) <= max_w {
            return t;
        }
    }
    // one word wider than the space: cut it, but not in the middle of a number
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        while chars
            .last()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '$' | '€' | '£' | '-' | '+'))
        {
            chars.pop();
        }
        let t: String = chars.iter().collect::<String>().trim_end().to_string() + "…";
        if text_width(&t, size, bold) <= max_w {
            return t;
        }
    }
    String::new()
}

/// Whether `text` shows a number cut short: "…" right after a digit or a number's punctuation.
pub fn cuts_a_number(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(2)
        .any(|w| w[1] == '…' && (w[0].is_ascii_digit() || matches!(w[0], '.' | ',' | '$' | '€' | '£' | '%')))
}

/// Words of `text` in lines at most `max_w` wide.
pub fn wrap(text: &str, max_w: f32, size: f32, bold: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if text_width(&candidate, size, bold) <= max_w || line.is_empty() {
            line = if text_width(&candidate, size, bold) <= max_w {
                candidate
            } else {
                fit(&candidate, max_w, size, bold)
            };
        } else {
            lines.push(std::mem::take(&mut line));
            line = fit(word, max_w, size, bold);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// What a reader would notice on a page: anything outside the printable area, text over text,
/// a page with nothing on it.
pub fn check_pages(pages: &[Vec<Op>], width: f32, height: f32, margin: f32) -> Vec<String> {
    let mut problems = Vec::new();
    let eps = 0.5;
    for (i, ops) in pages.iter().enumerate() {
        let page = i + 1;
        let content = ops.iter().filter(|o| matches!(o, Op::Text { .. })).count();
        if content <= 2 {
            problems.push(format!("page {page} is empty"));
        }
        for o in ops {
            let (x0, y0, x1, y1) = o.bounds();
            if x0 < margin - eps
                || y0 < margin / 2.0 - eps
                || x1 > width - margin + eps
                || y1 > height - margin / 2.0 + eps
            {
                let what = match o {
                    Op::Text { text, .. } => format!("text \"{text}\""),
                    _ => "a shape".to_string(),
                };
                problems.push(format!(
                    "page {page}: {what} at ({x0:.0}, {y0:.0})-({x1:.0}, {y1:.0}) is outside the printable area"
                ));
            }
        }
        for o in ops {
            if let Op::Text { text, .. } = o
                && cuts_a_number(text)
            {
                problems.push(format!("page {page}: \"{text}\" cuts a number short"));
            }
        }
        for o in ops {
            if let Op::Text { text, bold, .. } = o
                && super::unicode::needs(text)
            {
                let missing = super::unicode::font(*bold).missing(text);
                if !missing.is_empty() {
                    let chars: String = missing.iter().collect();
                    problems.push(format!(
                        "page {page}: \"{text}\" has characters no font of the PDF has ({chars}: they print as empty boxes; the HTML shows them)"
                    ));
                }
            }
        }
        let boxes: Vec<(&str, Bounds)> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Text { text, .. } => Some((text.as_str(), o.text_box()?)),
                _ => None,
            })
            .collect();
        for (a, (ta, ba)) in boxes.iter().enumerate() {
            for (tb, bb) in &boxes[a + 1..] {
                let overlap_x = ba.2.min(bb.2) - ba.0.max(bb.0);
                let overlap_y = ba.3.min(bb.3) - ba.1.max(bb.1);
                if overlap_x > eps && overlap_y > eps {
                    problems.push(format!("page {page}: \"{ta}\" overlaps \"{tb}\""));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_and_wrap_respect_the_width() {
        let s = "Revenue at risk by segment and plan over the trailing twelve months";
        let f = fit(s, 100.0, 10.0, false);
        assert!(f.ends_with('…') && text_width(&f, 10.0, false) <= 100.0, "{f}");
        assert_eq!(fit("short", 100.0, 10.0, false), "short");
        // words are dropped whole, and numbers are never cut
        let f = fit("usage fell 45% over the last 30 days", 90.0, 10.0, false);
        assert!(f.ends_with(" …") && !cuts_a_number(&f), "{f}");
        let f = fit("$1,234,567.89", 30.0, 10.0, false);
        assert!(!cuts_a_number(&f), "{f}");
        assert!(cuts_a_number("$1.2…") && cuts_a_number("135.…") && !cuts_a_number("Pioneer …"));
        assert!(is_number("$1.2M") && is_number("79.8%") && is_number("12/54") && !is_number("ACME 12"));
        let size = fit_size("$1,234,567.89", 40.0, 10.0, false);
        assert!(size < 10.0 && text_width("$1,234,567.89", size, false) <= 40.0);
        let lines = wrap(s, 120.0, 10.0, false);
        assert!(lines.len() > 2);
        assert!(lines.iter().all(|l| text_width(l, 10.0, false) <= 120.0));
        assert_eq!(lines.join(" ").replace('…', ""), s);
    }

    #[test]
    fn check_pages_finds_overlap_and_overflow() {
        let t = |x: f32, y: f32, s: &str| Op::Text {
            x,
            y,
            size: 10.0,
            bold: false,
            paint: Paint::Fg,
            anchor: Anchor::Start,
            text: s.into(),
        };
        let ok = vec![
            t(40.0, 60.0, "one"),
            t(40.0, 80.0, "two"),
            t(40.0, 100.0, "three"),
        ];
        assert!(check_pages(&[ok], 595.0, 842.0, 36.0).is_empty());
        let bad = vec![
            t(40.0, 60.0, "one"),
            t(45.0, 62.0, "two"),
            t(590.0, 100.0, "three"),
        ];
        let p = check_pages(&[bad], 595.0, 842.0, 36.0);
        assert!(p.iter().any(|m| m.contains("\"one\" overlaps \"two\"")), "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("\"three\" at") && m.contains("outside")),
            "{p:?}"
        );
    }
}
