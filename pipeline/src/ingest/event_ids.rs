//! Event ids for sources that have none. An export without an `event_id` still has to load once:
//! re-running a day, or receiving the same rows again in tomorrow's overlapping export, must not
//! count them twice. The id is made from what the row says, so the same row gets the same id
//! whatever file or run it comes in: a hash of its mapped fields (by canonical column, so the
//! order of the export's columns and fields it adds later do not matter), and how many identical
//! rows came before it in the same file, so that two rows alike in every field (a daily export
//! with dates but no times) stay two events.

use std::collections::HashMap;
use std::fmt::Write;

use deltalake::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use sha2::{Digest, Sha256};

/// The identical rows seen so far in the file being read (batches of one file come in order).
#[derive(Debug, Default)]
pub struct EventIds {
    origin: String,
    seen: HashMap<[u8; 16], u32, foldhash::fast::RandomState>,
}

impl EventIds {
    /// Ids for `rows` of a batch from `origin`: `fields` are (canonical column, its source text)
    /// for every mapped column. `h` and 32 hex digits of SHA-256, then `.n` for the n-th repeat.
    pub fn make(&mut self, origin: &str, fields: &[(&str, &StringArray)], rows: &[usize]) -> ArrayRef {
        if self.origin != origin {
            self.origin = origin.to_string();
            self.seen.clear();
        }
        let mut out = StringBuilder::with_capacity(rows.len(), rows.len() * 36);
        for &r in rows {
            let mut h = Sha256::new();
            for (name, col) in fields {
                h.update(name.as_bytes());
                h.update([0x1f]);
                // empty text is missing, as everywhere in ingest (CSV has no null)
                match (!col.is_null(r)).then(|| col.value(r).trim()) {
                    Some(v) if !v.is_empty() => h.update(v.as_bytes()),
                    _ => h.update([0x00]),
                }
                h.update([0x1e]);
            }
            let digest = h.finalize();
            let mut key = [0u8; 16];
            key.copy_from_slice(&digest[..16]);
            let repeat = self.seen.entry(key).or_insert(0);
            // written in place: this runs once per event of an export without ids
            let mut id = String::with_capacity(40);
            id.push('h');
            for b in key {
                let _ = write!(id, "{b:02x}");
            }
            if *repeat > 0 {
                let _ = write!(id, ".{repeat}");
            }
            *repeat += 1;
            out.append_value(id);
        }
        std::sync::Arc::new(out.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::AsArray;

    fn ids(e: &mut EventIds, origin: &str, types: &[&str], days: &[Option<&str>]) -> Vec<String> {
        let t = StringArray::from(types.to_vec());
        let d = StringArray::from(days.to_vec());
        let rows: Vec<usize> = (0..types.len()).collect();
        let a = e.make(origin, &[("event_type", &t), ("occurred_at", &d)], &rows);
        a.as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_same_rows_get_the_same_ids_and_twins_stay_two() {
        let types = ["login", "login", "export", "login"];
        let days = [Some("2026-01-01"), Some("2026-01-01"), None, Some("2026-01-02")];
        let first = ids(&mut EventIds::default(), "a.csv", &types, &days);
        assert_eq!(first[1], format!("{}.1", first[0]), "{first:?}");
        assert_eq!(first[0].len(), 33);
        assert!(first[0].starts_with('h'));
        assert_ne!(first[0], first[3]);
        // another file, another run: the same ids, so the rows are recognised as loaded
        let mut e = EventIds::default();
        assert_eq!(ids(&mut e, "b.csv", &types, &days), first);
        // a later batch of the same file continues the count of repeats
        let more = ids(&mut e, "b.csv", &["login"], &[Some("2026-01-01")]);
        assert_eq!(more[0], format!("{}.2", first[0]));
        // empty text is a missing value, as a CSV writes a Parquet null
        let empty = ids(&mut EventIds::default(), "c.csv", &["export"], &[Some(" ")]);
        assert_eq!(empty[0], first[2]);
    }
}
