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

/// The hashes of erased identifiers, by kind (`email`, `contact_id`, `account_id`).
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
