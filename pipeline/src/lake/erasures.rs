//! `ops.erasures`: the identifiers `cslake gdpr erase` removed, kept only as SHA-256 hashes, so
//! that later ingests keep the subject out and nothing of the subject itself stays in the lake.

use std::collections::HashSet;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;
use sha2::{Digest, Sha256};

use super::query::{has_table, sql, strings};
use super::schema::ColType;
use crate::Result;

/// The hex SHA-256 of a text, as `ops.erasures` stores identifiers.
pub fn sha256(s: &str) -> String {
    sha256_bytes(s.as_bytes())
}

pub fn sha256_bytes(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|b| format!("{b:02x}")).collect()
}

/// The longest name, in words, that ingest looks for in free text.
pub const NAME_WORDS_MAX: usize = 6;

/// The words of a name or of free text, as byte ranges: runs of letters and digits (so
/// "O'Brien, Anna" and "o brien anna" have the same words).
pub fn name_words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// How `ops.erasures` keeps a name (kind `name`): its words, lower-cased, one space apart; `None`
/// for a name too short to find in text without blanking ordinary words (under 3 letters) or
/// longer than [`NAME_WORDS_MAX`] words.
pub fn name_key(name: &str) -> Option<String> {
    let words = name_words(name);
    if words.is_empty() || words.len() > NAME_WORDS_MAX {
        return None;
    }
    let key = words
        .iter()
        .map(|&(a, b)| name[a..b].to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    (key.chars().filter(|c| c.is_alphanumeric()).count() >= 3).then_some(key)
}

/// The byte ranges of `text` that spell a name whose [`name_key`] hash `is_erased` accepts.
pub fn erased_names_in(text: &str, is_erased: impl Fn(&str) -> bool) -> Vec<(usize, usize)> {
    let words = name_words(text);
    let lower: Vec<String> = words.iter().map(|&(a, b)| text[a..b].to_lowercase()).collect();
    let mut hits = Vec::new();
    let mut i = 0;
    while i < words.len() {
        // the longest name that starts at this word
        let found = (1..=NAME_WORDS_MAX.min(words.len() - i)).rev().find(|n| {
            let key = lower[i..i + n].join(" ");
            key.chars().count() >= 3 && is_erased(&sha256(&key))
        });
        match found {
            Some(n) => {
                hits.push((words[i].0, words[i + n - 1].1));
                i += n;
            }
            None => i += 1,
        }
    }
    hits
}

/// The hashes of erased identifiers, by kind (`email`, `contact_id`, `account_id`, `name`).
pub async fn erased(ctx: &SessionContext) -> Result<HashSet<(String, String)>> {
    let mut out = HashSet::new();
    if !has_table(ctx, "ops.erasures") {
        return Ok(out);
    }
    for b in sql(ctx, "SELECT identifier_kind, identifier_sha256 FROM ops.erasures").await? {
        for (k, h) in strings(&b, "identifier_kind")?
            .into_iter()
            .zip(strings(&b, "identifier_sha256")?)
        {
            if let (Some(k), Some(h)) = (k, h) {
                out.insert((k, h));
            }
        }
    }
    Ok(out)
}

/// The columns of `ops.erasures`.
pub fn schema() -> Arc<Schema> {
    let ts = ColType::Timestamp.arrow();
    Arc::new(Schema::new(vec![
        Field::new("erasure_id", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("identifier_kind", DataType::Utf8, false),
        Field::new("identifier_sha256", DataType::Utf8, false),
        Field::new("tables", DataType::Utf8, false),
        Field::new("actor", DataType::Utf8, false),
        Field::new("erased_at", ts, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_in_text_whatever_their_case_and_punctuation() {
        assert_eq!(name_key("  O'Brien,  Anna "), Some("o brien anna".into()));
        assert_eq!(name_key("Al"), None, "too short to look for");
        assert_eq!(name_key("Ann"), Some("ann".into()));
        let erased = [sha256("o brien anna"), sha256("acme corp")];
        let text = "Call O'BRIEN ANNA (Acme Corp.) about Annabel; acme corporation is fine";
        let hits: Vec<&str> = erased_names_in(text, |h| erased.iter().any(|e| e == h))
            .into_iter()
            .map(|(a, b)| &text[a..b])
            .collect();
        assert_eq!(hits, ["O'BRIEN ANNA", "Acme Corp"]);
        assert!(erased_names_in("", |_| true).is_empty());
    }
}
