//! The file-drop connector: CSV, NDJSON/JSON and Parquet files from any object-store URL.

use chrono::NaiveDate;
use std::collections::HashMap;
use std::sync::Arc;

use cslake_sinks::FileFormat;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use url::Url;

use crate::ingest::read::{FileBatches, Format, Location};
use crate::ingest::records::RawRecords;
use crate::lake::schema::TableSpec;
use crate::settings::TableMapping;
use crate::{Error, Result};

/// A folder or object-store prefix holding exported files.
pub struct FileDrop {
    pub url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    tables: HashMap<String, TableMapping>,
}

impl FileDrop {
    pub fn open(
        location: &str,
        storage: &HashMap<String, String>,
        tables: HashMap<String, TableMapping>,
    ) -> Result<Self> {
        let url = crate::lake::location_url(location, false)?;
        if url.scheme() == "file" && url.to_file_path().is_ok_and(|p| !p.is_dir()) {
            return Err(Error::Config(format!(
                "source folder '{location}' does not exist"
            )));
        }
        let (store, prefix) = crate::lake::storage::open(&url, storage)
            .map_err(|e| Error::Config(format!("source '{location}': {e}")))?;
        Ok(Self {
            url,
            store,
            prefix,
            tables,
        })
    }

    pub fn mapping(&self, table: &str) -> Option<&TableMapping> {
        self.tables.get(table)
    }

    /// The files that hold `table`: those matching its configured glob, or by default files
    /// named after the table (`accounts.csv`, `accounts-2026-01.csv`, `usage_events/part-1.csv`).
    pub async fn files_for(&self, table: &TableSpec) -> Result<Vec<ObjectMeta>> {
        let all: Vec<ObjectMeta> = self.store.list(Some(&self.prefix)).try_collect().await?;
        let glob = self.tables.get(table.name).and_then(|m| m.files.clone());
        let mut files: Vec<ObjectMeta> = all
            .into_iter()
            .filter(|m| {
                let rel = self.relative(&m.location);
                if FileFormat::from_path(&rel).is_none() && !is_calendar(&rel) {
                    return false;
                }
                match &glob {
                    Some(g) => glob_match(g, &rel),
                    None => default_match(table.name, &rel),
                }
            })
            .collect();
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    fn relative(&self, loc: &StorePath) -> String {
        let prefix: Vec<_> = self.prefix.parts().collect();
        loc.parts()
            .skip(prefix.len())
            .map(|p| p.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The file's path relative to the source root.
    pub fn relative_name(&self, meta: &ObjectMeta) -> String {
        self.relative(&meta.location)
    }

    pub fn origin(&self, meta: &ObjectMeta) -> String {
        format!("{}{}", self.url, self.relative(&meta.location))
    }

    /// Starts reading one file: a calendar whole (its events recur and refer to each other), any
    /// other file as a stream of batches ([`crate::ingest::read`]).
    /// `today` is the run's date (recurring meetings are expanded a year past it).
    pub async fn read(&self, table: &TableSpec, meta: &ObjectMeta, today: NaiveDate) -> Result<Input> {
        let origin = self.origin(meta);
        if is_calendar(&origin) {
            let bytes = self.store.get(&meta.location).await?.bytes().await?;
            return Ok(Input::Records(crate::ingest::calendar::read_ics(
                &bytes, origin, today,
            )));
        }
        let format = match FileFormat::from_path(&origin) {
            Some(FileFormat::Csv) => Format::Csv {
                delimiter: self.delimiter(table, &origin),
            },
            Some(FileFormat::Ndjson) => Format::Json,
            Some(FileFormat::Parquet) => Format::Parquet,
            None => {
                return Err(Error::Input {
                    origin,
                    message: "unknown file type".into(),
                });
            }
        };
        let local = (self.url.scheme() == "file")
            .then(|| self.url.to_file_path().ok())
            .flatten()
            .map(|root| root.join(self.relative(&meta.location)));
        let file = Location {
            store: self.store.clone(),
            path: meta.location.clone(),
            size: meta.size,
            local,
        };
        Ok(Input::Batches(
            crate::ingest::read::open(file, format, origin).await?,
        ))
    }

    fn delimiter(&self, table: &TableSpec, origin: &str) -> u8 {
        self.tables
            .get(table.name)
            .and_then(|m| m.delimiter.as_deref())
            .map(|d| {
                if d == "\\t" {
                    b'\t'
                } else {
                    d.as_bytes().first().copied().unwrap_or(b',')
                }
            })
            .unwrap_or(if origin.to_ascii_lowercase().ends_with(".tsv") {
                b'\t'
            } else {
                b','
            })
    }
}

/// What a file gives.
pub enum Input {
    /// Calendar events, whole.
    Records(RawRecords),
    Batches(FileBatches),
}

/// iCalendar files: meetings, read by [`crate::ingest::calendar`].
pub fn is_calendar(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".ics")
}

/// A file belongs to a table by a folder named after the table anywhere in its path
/// (`usage_events/part-1.csv`, `2026-03-31/usage_events/part-1.csv`), or else by its file name
/// (`accounts.csv`, `accounts-2026-01.csv`, `2026-03-31/accounts.csv`).
fn default_match(table: &str, rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let (file, dirs) = parts.split_last().unwrap_or((&"", &[]));
    if let Some(dir) = dirs
        .iter()
        .rev()
        .find(|d| crate::lake::schema::core_table(d).is_some())
    {
        return *dir == table;
    }
    let stem = file.split('.').next().unwrap_or_default();
    stem == table
        || stem.strip_prefix(table).is_some_and(|rest| {
            rest.starts_with('-') || rest.starts_with('_') && !rest[1..].starts_with(char::is_alphabetic)
        })
}

/// `*` matches within a path segment, `**` across segments, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) if p.get(1) == Some(&b'*') => {
                let rest = if p.get(2) == Some(&b'/') { &p[3..] } else { &p[2..] };
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            (Some(b'*'), _) => (0..=t.len())
                .take_while(|i| *i == 0 || t[*i - 1] != b'/')
                .any(|i| go(&p[1..], &t[i..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_default_file_names() {
        assert!(glob_match("exports/*.csv", "exports/a.csv"));
        assert!(!glob_match("exports/*.csv", "exports/x/a.csv"));
        assert!(glob_match("exports/**/*.csv", "exports/x/a.csv"));
        assert!(glob_match("crm_??.csv", "crm_01.csv"));
        assert!(default_match("accounts", "accounts.csv"));
        assert!(default_match("accounts", "accounts-2026-01.csv"));
        assert!(default_match("usage_events", "usage_events/part-00001.parquet"));
        assert!(!default_match("accounts", "accounts_extra.csv"));
        assert!(!default_match("contacts", "accounts.csv"));
        assert!(default_match("accounts", "2026-03-31/accounts.csv"));
        assert!(default_match(
            "usage_events",
            "2026-03-31/usage_events/part-1.csv"
        ));
        assert!(!default_match("contacts", "2026-03-31/usage_events/contacts.csv"));
    }
}
