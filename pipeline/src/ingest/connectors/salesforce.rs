//! Salesforce REST: SOQL queries paged with `nextRecordsUrl`, OAuth 2.0 (client credentials by
//! default; `oauth2_refresh_token` for a connected app's refresh token). The API host is the
//! `instance_url` of the token response. Account → accounts, Contact → contacts, User → csms,
//! Opportunity → deals, Case → interactions (tickets). Incremental by `SystemModstamp`. Extra
//! fields (custom `__c` fields) with `fields = [...]`, or a whole `query` per table.

use std::collections::HashMap;

use url::Url;

use crate::ingest::connectors::rest::{ApiSource, Connector, Shape, Stream, build_stream};
use crate::settings::{AuthConfig, IncrementalConfig, PagingConfig, PagingKind, SourceKind, TableMapping};
use crate::{Error, Result};

const MODIFIED: &str = "SystemModstamp";

fn mapping(object: &str, columns: &[(&str, &str)], constants: &[(&str, &str)]) -> TableMapping {
    TableMapping {
        // the SOQL FROM clause; the query itself is assembled in `streams`
        query: Some(format!("FROM {object}")),
        records: Some("records".into()),
        paging: Some(PagingConfig {
            kind: PagingKind::NextUrl,
            next: Some("nextRecordsUrl".into()),
            done: Some("done".into()),
            ..Default::default()
        }),
        incremental: Some(IncrementalConfig {
            field: MODIFIED.into(),
            param: None,
            lookback: None,
        }),
        columns: columns
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        constants: constants
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ignore: vec!["attributes".into()],
        ..Default::default()
    }
}

pub fn builtin() -> Vec<(&'static str, TableMapping)> {
    vec![
        (
            "accounts",
            mapping(
                "Account",
                &[
                    ("account_id", "Id"),
                    ("name", "Name"),
                    ("industry", "Industry"),
                    ("csm_id", "OwnerId"),
                    ("country", "BillingCountry"),
                    ("created_date", "CreatedDate"),
                ],
                &[],
            ),
        ),
        (
            "csms",
            mapping(
                "User",
                &[
                    ("csm_id", "Id"),
                    ("name", "Name"),
                    ("email", "Email"),
                    ("team", "Department"),
                ],
                &[],
            ),
        ),
        (
            "contacts",
            mapping(
                "Contact",
                &[
                    ("contact_id", "Id"),
                    ("account_id", "AccountId"),
                    ("email", "Email"),
                    ("name", "Name"),
                    ("role", "Title"),
                    ("created_date", "CreatedDate"),
                ],
                &[],
            ),
        ),
        (
            "deals",
            mapping(
                "Opportunity",
                &[
                    ("deal_id", "Id"),
                    ("account_id", "AccountId"),
                    ("name", "Name"),
                    ("stage", "StageName"),
                    ("kind", "Type"),
                    ("amount", "Amount"),
                    ("close_date", "CloseDate"),
                    ("is_closed", "IsClosed"),
                    ("is_won", "IsWon"),
                    ("csm_id", "OwnerId"),
                    ("created_date", "CreatedDate"),
                ],
                &[],
            ),
        ),
        (
            "interactions",
            mapping(
                "Case",
                &[
                    ("interaction_id", "Id"),
                    ("account_id", "AccountId"),
                    ("contact_id", "ContactId"),
                    ("occurred_at", "CreatedDate"),
                    ("resolved_at", "ClosedDate"),
                    ("status", "Status"),
                    ("priority", "Priority"),
                    ("subject", "Subject"),
                    ("csm_id", "OwnerId"),
                ],
                &[("kind", "ticket")],
            ),
        ),
    ]
}

/// The SOQL for one table: a full `SELECT …` from the configuration as it is, or the fields the
/// mapping needs `FROM` the object; then `SystemModstamp >= cursor` when there is a cursor.
pub fn soql(m: &TableMapping, cursor: Option<&str>) -> String {
    let q = m.query.clone().unwrap_or_default();
    let mut q = if q.trim_start().to_ascii_uppercase().starts_with("SELECT") {
        q
    } else {
        let mut fields: Vec<String> = vec!["Id".into()];
        let mut add = |f: &str| {
            let f = f.trim();
            if !f.is_empty() && !fields.iter().any(|x| x.eq_ignore_ascii_case(f)) {
                fields.push(f.to_string());
            }
        };
        let mut sources: Vec<&String> = m.columns.values().collect();
        sources.sort();
        for src in sources {
            if src.contains('{') {
                for part in src.split('{').skip(1) {
                    add(part.split('}').next().unwrap_or_default());
                }
            } else {
                add(src);
            }
        }
        for f in &m.fields {
            add(f);
        }
        if m.incremental.is_some() {
            add(MODIFIED);
        }
        format!("SELECT {} {}", fields.join(", "), q.trim())
    };
    if let (Some(c), Some(inc)) = (cursor, &m.incremental) {
        // SOQL datetime literals: no quotes, seconds precision, UTC
        let literal = crate::ingest::records::parse_timestamp(c)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| c.to_string());
        q = add_condition(&q, &format!("{} >= {literal}", inc.field));
        let upper = q.to_ascii_uppercase();
        if !upper.contains(" ORDER BY ") {
            let at = upper.find(" LIMIT ").unwrap_or(q.len());
            q = format!("{} ORDER BY {}{}", &q[..at], inc.field, &q[at..]);
        }
    }
    q
}

/// Adds `cond` to a query's WHERE clause (creating one before ORDER BY / LIMIT if needed).
fn add_condition(q: &str, cond: &str) -> String {
    let upper = q.to_ascii_uppercase();
    let tail = [" ORDER BY ", " LIMIT ", " GROUP BY "]
        .iter()
        .filter_map(|k| upper.find(k))
        .min()
        .unwrap_or(q.len());
    let (head, rest) = q.split_at(tail);
    if upper[..tail].contains(" WHERE ") {
        format!("{head} AND {cond}{rest}")
    } else {
        format!("{head} WHERE {cond}{rest}")
    }
}

fn streams(src: &ApiSource, base: &Url, cursors: &HashMap<String, String>) -> Result<Vec<Stream>> {
    let version = src.config.api_version.clone().unwrap_or_else(|| "v60.0".into());
    let mut out = Vec::new();
    for (spec, mut m) in src.table_mappings(&builtin())? {
        if m.query.is_none() {
            return Err(Error::Config(format!(
                "source '{}': [sources.tables.{}] needs a `query` (SOQL)",
                src.name(),
                spec.name
            )));
        }
        let q = soql(&m, cursors.get(spec.name).map(String::as_str));
        m.path = Some(format!("services/data/{version}/query"));
        m.params.insert("q".into(), q);
        out.push(build_stream(
            base,
            spec,
            spec.name.into(),
            m,
            None,
            Shape::Records,
        )?);
    }
    Ok(out)
}

/// Salesforce REST API (`kind = "salesforce"`).
pub struct Salesforce;

impl Connector for Salesforce {
    fn kind(&self) -> SourceKind {
        SourceKind::Salesforce
    }

    fn base_from_token(&self) -> Option<&'static str> {
        Some("instance_url")
    }

    fn default_auth(&self) -> AuthConfig {
        AuthConfig {
            kind: "oauth2_client_credentials".into(),
            token_url: Some("https://login.salesforce.com/services/oauth2/token".into()),
            client_id_env: Some("SALESFORCE_CLIENT_ID".into()),
            client_secret_env: Some("SALESFORCE_CLIENT_SECRET".into()),
            ..Default::default()
        }
    }

    fn requests_per_second(&self) -> Option<f64> {
        Some(10.0)
    }

    fn builtin(&self) -> Vec<(&'static str, TableMapping)> {
        builtin()
    }

    fn streams(&self, src: &ApiSource, base: &Url, cursors: &HashMap<String, String>) -> Result<Vec<Stream>> {
        streams(src, base, cursors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soql_from_the_mapping_and_the_cursor() {
        let (_, m) = builtin().into_iter().find(|(t, _)| *t == "contacts").unwrap();
        let q = soql(&m, None);
        assert!(
            q.starts_with(
                "SELECT Id, AccountId, CreatedDate, Email, Name, Title, SystemModstamp FROM Contact"
            ),
            "{q}"
        );
        let q = soql(&m, Some("2026-03-01T10:00:00.000+0000"));
        assert!(
            q.ends_with("FROM Contact WHERE SystemModstamp >= 2026-03-01T10:00:00Z ORDER BY SystemModstamp"),
            "{q}"
        );
        let mut custom = m.clone();
        custom.query = Some("SELECT Id, AccountId FROM Contact WHERE IsDeleted = false LIMIT 5000".into());
        assert_eq!(
            soql(&custom, Some("2026-03-01T10:00:00Z")),
            "SELECT Id, AccountId FROM Contact WHERE IsDeleted = false AND SystemModstamp >= 2026-03-01T10:00:00Z ORDER BY SystemModstamp LIMIT 5000"
        );
    }
}
