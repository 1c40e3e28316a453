//! Text the base-14 Helvetica cannot show (Cyrillic, Greek, Hebrew, Arabic, Armenian, Georgian,
//! Latin beyond WinAnsi: customer and CSM names from anywhere) is set in DejaVu Sans (the `dejavu`
//! crate's TrueType files) and embedded in the PDF as a CID font: Identity-H, glyph ids from the
//! font's cmap, widths from its metrics (ttf-parser), only the glyphs used (typst's subsetter), a
//! ToUnicode map so the text can be found and copied. Runs Helvetica can show keep it (nothing embedded for them). Written by hand because
//! pdf-writer writes PDF objects, not fonts, and this is the small part between the two; scripts
//! DejaVu lacks (CJK) are reported by the layout check rather than printed as boxes unnoticed.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use pdf_writer::{Filter, Finish, Name, Pdf, Rect, Ref, Str};

use subsetter::GlyphRemapper;

/// One character in WinAnsiEncoding, if it has a code there.
pub fn win_ansi_byte(c: char) -> Option<u8> {
    Some(match c as u32 {
        0x20..=0x7e | 0xa0..=0xff => c as u32 as u8,
        0x20ac => 0x80,
        0x2026 => 0x85,
        0x2022 => 0x95,
        0x2013 => 0x96,
        0x2014 => 0x97,
        0x2018 => 0x91,
        0x2019 => 0x92,
        0x201c => 0x93,
        0x201d => 0x94,
        0x2122 => 0x99,
        _ => return None,
    })
}

pub struct Font {
    data: &'static [u8],
    face: ttf_parser::Face<'static>,
    units: f32,
}

/// DejaVu Sans, regular or bold.
pub fn font(bold: bool) -> &'static Font {
    static REGULAR: OnceLock<Font> = OnceLock::new();
    static BOLD: OnceLock<Font> = OnceLock::new();
    let (cell, data) = if bold {
        (&BOLD, dejavu::sans::bold())
    } else {
        (&REGULAR, dejavu::sans::regular())
    };
    cell.get_or_init(|| {
        // the bundled files are valid TrueType: a parse failure is a broken build
        let face = ttf_parser::Face::parse(data, 0).expect("DejaVu Sans parses");
        let units = f32::from(face.units_per_em());
        Font { data, face, units }
    })
}

/// Whether `text` needs the embedded font (Helvetica's WinAnsi cannot show some character).
pub fn needs(text: &str) -> bool {
    text.chars().any(|c| win_ansi_byte(c).is_none())
}

impl Font {
    fn glyph(&self, c: char) -> Option<u16> {
        self.face.glyph_index(c).map(|g| g.0)
    }

    /// Advance of a glyph in 1/1000 em.
    fn advance(&self, gid: u16) -> f32 {
        f32::from(self.face.glyph_hor_advance(ttf_parser::GlyphId(gid)).unwrap_or(0)) * 1000.0 / self.units
    }

    /// The width of `text` in points at `size`.
    pub fn width(&self, text: &str, size: f32) -> f32 {
        text.chars()
            .map(|c| self.advance(self.glyph(c).unwrap_or(0)))
            .sum::<f32>()
            * size
            / 1000.0
    }

    /// The characters of `text` the font has no glyph for.
    pub fn missing(&self, text: &str) -> Vec<char> {
        text.chars()
            .filter(|c| !c.is_control() && self.glyph(*c).is_none())
            .collect()
    }

    /// Records the glyphs `text` uses (the font's own ids) and the character each stands for.
    pub fn collect(&self, text: &str, used: &mut BTreeMap<u16, char>) {
        for c in text.chars() {
            used.entry(self.glyph(c).unwrap_or(0)).or_insert(c);
        }
    }

    /// `text` as Identity-H codes: the glyphs' ids in the embedded subset, two bytes each.
    pub fn encode(&self, text: &str, subset: &GlyphRemapper) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let gid = subset.get(self.glyph(c).unwrap_or(0)).unwrap_or(0);
            out.extend_from_slice(&gid.to_be_bytes());
        }
        out
    }

    /// Writes the Type 0 font `id` (and its descendant, descriptor, font file and ToUnicode map
    /// at the refs from `next`) with a subset of the font holding the glyphs in `used` (typst's
    /// subsetter: a few KB instead of the whole file); returns the next free ref number and the
    /// map from the font's glyph ids to the subset's, which [`Font::encode`] needs.
    pub fn write(
        &self,
        pdf: &mut Pdf,
        id: Ref,
        mut next: i32,
        name: &[u8],
        used: &BTreeMap<u16, char>,
    ) -> (i32, GlyphRemapper) {
        let mut subset = GlyphRemapper::new();
        for gid in used.keys() {
            subset.remap(*gid);
        }
        // a subset that fails (it should not for the bundled font) falls back to the whole font
        // with identical ids
        let data = match subsetter::subset(self.data, 0, &subset) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = ?e, "font subsetting failed: embedding the whole font");
                subset = GlyphRemapper::new();
                for gid in 0..self.face.number_of_glyphs() {
                    subset.remap(gid);
                }
                self.data.to_vec()
            }
        };
        let mut alloc = || {
            let r = Ref::new(next);
            next += 1;
            r
        };
        let (cid, descriptor, file, cmap) = (alloc(), alloc(), alloc(), alloc());
        let scale = |v: i16| f32::from(v) * 1000.0 / self.units;
        pdf.type0_font(id)
            .base_font(Name(name))
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(cid)
            .to_unicode(cmap);
        let info = SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        };
        let mut font = pdf.cid_font(cid);
        font.subtype(CidFontType::Type2)
            .base_font(Name(name))
            .system_info(info)
            .font_descriptor(descriptor)
            .default_width(self.advance(0))
            .cid_to_gid_map_predefined(Name(b"Identity"));
        let mut widths = font.widths();
        for gid in used.keys() {
            widths.consecutive(subset.get(*gid).unwrap_or(0), [self.advance(*gid)]);
        }
        widths.finish();
        font.finish();
        let b = self.face.global_bounding_box();
        pdf.font_descriptor(descriptor)
            .name(Name(name))
            .flags(FontFlags::NON_SYMBOLIC)
            .bbox(Rect::new(
                scale(b.x_min),
                scale(b.y_min),
                scale(b.x_max),
                scale(b.y_max),
            ))
            .italic_angle(0.0)
            .ascent(scale(self.face.ascender()))
            .descent(scale(self.face.descender()))
            .cap_height(scale(self.face.capital_height().unwrap_or(self.face.ascender())))
            .stem_v(80.0)
            .font_file2(file);
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&data, 6);
        pdf.stream(file, &packed)
            .filter(Filter::FlateDecode)
            .pair(Name(b"Length1"), data.len() as i32);
        let mut map = pdf_writer::types::UnicodeCmap::new(Name(b"Custom"), info);
        for (gid, c) in used {
            map.pair(subset.get(*gid).unwrap_or(0), *c);
        }
        let map = map.finish();
        pdf.cmap(cmap, map.as_slice());
        (next, subset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_other_scripts_have_glyphs_and_widths() {
        let f = font(false);
        for name in [
            "Łódź Tech",
            "Общество Север",
            "Ελληνική Εταιρεία",
            "חברה בע\"מ",
            "Şirket Ağı",
        ] {
            assert!(needs(name) || name.is_ascii(), "{name}");
            assert!(f.missing(name).is_empty(), "{name}: {:?}", f.missing(name));
            assert!(f.width(name, 10.0) > 10.0, "{name}");
        }
        assert!(!needs("Acme GmbH & Co. – café"));
        // what DejaVu does not cover is known, so the layout check can say so
        assert_eq!(font(true).missing("株式会社"), ['株', '式', '会', '社']);
        let mut used = BTreeMap::new();
        f.collect("Ωx", &mut used);
        assert_eq!(used.values().collect::<String>().len(), "Ωx".len());
        let subset = GlyphRemapper::new_from_glyphs(&used.keys().copied().collect::<Vec<_>>());
        assert_eq!(f.encode("Ωx", &subset).len(), 4);
    }
}
