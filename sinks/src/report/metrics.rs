//! Advance widths of the PDF base-14 Helvetica and Helvetica-Bold (Adobe's AFM files, units of
//! 1/1000 em) for the printable ASCII range; other characters of WinAnsiEncoding use the width of
//! a typical lower-case letter. HTML renders with Helvetica/Arial, which share these metrics.

#[rustfmt::skip]
const REGULAR: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // space … /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0 … ?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @ … O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P … _
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // ` … o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,      // p … ~
];

#[rustfmt::skip]
const BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
];

/// The width of `text` in points at `size`: Helvetica's, or the embedded font's for text Helvetica
/// cannot show (the PDF sets the whole run in it, [`super::unicode`]).
pub fn text_width(text: &str, size: f32, bold: bool) -> f32 {
    if super::unicode::needs(text) {
        return super::unicode::font(bold).width(text, size);
    }
    let table = if bold { &BOLD } else { &REGULAR };
    let units: u32 = text
        .chars()
        .map(|c| match c as u32 {
            32..=126 => u32::from(table[c as usize - 32]),
            // … — • are wide; the rest of WinAnsi is about a letter wide
            0x2026 | 0x2014 => 1000,
            0x2013 => 556,
            0x2022 => 350,
            _ => 611,
        })
        .sum();
    units as f32 * size / 1000.0
}

/// `text` in WinAnsiEncoding (what the base-14 fonts read); characters outside it become `?`.
pub fn win_ansi(text: &str) -> Vec<u8> {
    use super::unicode::win_ansi_byte;
    text.chars().map(|c| win_ansi_byte(c).unwrap_or(b'?')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_afm() {
        assert_eq!(
            text_width("Hello", 1000.0, false),
            722.0 + 556.0 + 222.0 + 222.0 + 556.0
        );
        assert!(text_width("Hello", 10.0, true) > text_width("Hello", 10.0, false));
        assert_eq!(
            win_ansi("€1 – é…✓"),
            vec![0x80, b'1', b' ', 0x96, b' ', 0xe9, 0x85, b'?']
        );
    }
}
