//! HubSpot CRM v3: companies → accounts, contacts, owners → csms, deals. A private-app token
//! in `HUBSPOT_TOKEN` (bearer). Lists page with `after` cursors; once a table has a cursor,
//! companies and contacts are read incrementally through the search API (`hs_lastmodifieddate`
//! / `lastmodifieddate` ≥ the newest change loaded), which stops at 10,000 results per query,
//! so paging starts a new query from the newest record seen. Deals are re-read in full: the
//! search API does not return their company association. Custom properties are asked for with
//! `fields = [...]` and land as attributes unless a column maps them.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};
use url::Url;

use crate::Result;
use crate::ingest::connectors::rest::{ApiSource, Connector, Shape, Stream, build_stream};
use crate::settings::{AuthConfig, IncrementalConfig, PagingConfig, PagingKind, SourceKind, TableMapping};

pub const BASE: &str = "https://api.hubapi.com/";

fn mapping(path: &str, columns: &[(&str, &str)], fields: &[&str]) -> TableMapping {
    TableMapping {
        path: Some(path.into()),
        records: Some("results".into()),
        paging: Some(PagingConfig {
            kind: PagingKind::Cursor,
            next: Some("paging.next.after".into()),
            param: Some("after".into()),
            limit_param: Some("limit".into()),
            page_size: Some(100),
            ..Default::default()
        }),
        columns: columns
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        ignore: vec!["archived".into()],
        ..Default::default()
    }
}

fn incremental(mut m: TableMapping) -> TableMapping {
    m.incremental = Some(IncrementalConfig {
        field: "updatedAt".into(),
        param: None,
        lookback: None,
    });
    m
}

pub fn builtin() -> Vec<(&'static str, TableMapping)> {
    vec![
        (
            "accounts",
            incremental(mapping(
                "crm/v3/objects/companies",
                &[
                    ("account_id", "id"),
                    ("name", "properties.name"),
                    ("industry", "properties.industry"),
                    ("csm_id", "properties.hubspot_owner_id"),
                    ("country", "properties.country"),
                    ("created_date", "properties.createdate"),
                ],
                &[
                    "domain",
                    "numberofemployees",
                    "annualrevenue",
                    "lifecyclestage",
                    "hs_lastmodifieddate",
                ],
            )),
        ),
        (
            "csms",
            mapping(
                "crm/v3/owners",
                &[
                    ("csm_id", "id"),
                    ("name", "{firstName} {lastName}"),
                    ("email", "email"),
                    ("team", "teams.0.name"),
                ],
                &[],
            ),
        ),
        (
            "contacts",
            incremental(mapping(
                "crm/v3/objects/contacts",
                &[
                    ("contact_id", "id"),
                    ("account_id", "properties.associatedcompanyid"),
                    ("email", "properties.email"),
                    ("name", "{properties.firstname} {properties.lastname}"),
                    ("role", "properties.jobtitle"),
                    ("created_date", "properties.createdate"),
                ],
                &["lastmodifieddate"],
            )),
        ),
        (
            "deals",
            mapping(
                "crm/v3/objects/deals",
                &[
                    ("deal_id", "id"),
                    ("account_id", "associations.companies.results.0.id"),
                    ("name", "properties.dealname"),
                    ("stage", "properties.dealstage"),
                    ("kind", "properties.dealtype"),
                    ("amount", "properties.amount"),
                    ("close_date", "properties.closedate"),
                    ("is_closed", "properties.hs_is_closed"),
                    ("is_won", "properties.hs_is_closed_won"),
                    ("csm_id", "properties.hubspot_owner_id"),
                    ("created_date", "properties.createdate"),
                ],
                &["pipeline"],
            ),
        ),
    ]
}

/// The HubSpot property names a mapping needs: the mapped `properties.*` fields (templates
/// included) and the extra `fields`.
fn properties(m: &TableMapping) -> Vec<String> {
    let mut props: Vec<String> = m.fields.clone();
    for src in m.columns.values() {
        let mut rest = src.as_str();
        let mut refs = Vec::new();
        if rest.contains('{') {
            while let Some(i) = rest.find('{') {
                let Some(j) = rest[i..].find('}') else { break };
                refs.push(rest[i + 1..i + j].trim().to_string());
                rest = &rest[i + j + 1..];
            }
        } else {
            refs.push(src.clone());
        }
        for r in refs {
            if let Some(p) = r.strip_prefix("properties.")
                && !props.iter().any(|x| x == p)
            {
                props.push(p.to_string());
            }
        }
    }
    props.sort();
    props
}

fn streams(src: &ApiSource, base: &Url, cursors: &HashMap<String, String>) -> Result<Vec<Stream>> {
    let mut out = Vec::new();
    for (spec, mut m) in src.table_mappings(&builtin())? {
        let props = properties(&m);
        let object = m
            .path
            .as_deref()
            .and_then(|p| p.strip_prefix("crm/v3/objects/"))
            .map(str::to_string);
        let cursor = cursors.get(spec.name);
        match (object, cursor, &m.incremental) {
            (Some(object), Some(c), Some(_)) if spec.name != "deals" => {
                let modified = if object == "contacts" {
                    "lastmodifieddate"
                } else {
                    "hs_lastmodifieddate"
                };
                m.path = Some(format!("crm/v3/objects/{object}/search"));
                m.method = Some("POST".into());
                m.params.clear();
                if let Some(p) = m.paging.as_mut() {
                    p.limit_param = None;
                }
                let body = json!({
                    "filterGroups": [{"filters": [{"propertyName": modified, "operator": "GTE", "value": millis(c)}]}],
                    "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
                    "properties": props,
                    "limit": 100,
                });
                let mut s = build_stream(base, spec, spec.name.into(), m, None, Shape::HubspotSearch)?;
                s.method = Method::POST;
                s.body = Some(body);
                out.push(s);
            }
            (object, _, _) => {
                if object.is_some() && !props.is_empty() {
                    m.params
                        .entry("properties".into())
                        .or_insert_with(|| props.join(","));
                }
                if spec.name == "deals" {
                    m.params
                        .entry("associations".into())
                        .or_insert_with(|| "companies".into());
                }
                m.params
                    .entry("archived".into())
                    .or_insert_with(|| "false".into());
                out.push(build_stream(
                    base,
                    spec,
                    spec.name.into(),
                    m,
                    None,
                    Shape::Records,
                )?);
            }
        }
    }
    Ok(out)
}

/// HubSpot filters datetime properties by epoch milliseconds.
fn millis(cursor: &str) -> String {
    crate::ingest::records::parse_timestamp(cursor)
        .map(|t| t.timestamp_millis().to_string())
        .unwrap_or_else(|| cursor.to_string())
}

/// A new search from the newest change seen, when paging reaches the 10,000-result limit.
pub fn restart_search(body: &mut Value, cursor: &str) {
    if let Some(map) = body.as_object_mut() {
        map.remove("after");
    }
    if let Some(f) = body.pointer_mut("/filterGroups/0/filters/0/value") {
        *f = Value::String(millis(cursor));
    }
}

/// HubSpot CRM v3 (`kind = "hubspot"`).
pub struct HubSpot;

impl Connector for HubSpot {
    fn kind(&self) -> SourceKind {
        SourceKind::Hubspot
    }

    fn base_url(&self) -> Option<&'static str> {
        Some(BASE)
    }

    fn default_auth(&self) -> AuthConfig {
        AuthConfig {
            kind: "bearer".into(),
            token_env: Some("HUBSPOT_TOKEN".into()),
            ..Default::default()
        }
    }

    /// Private apps: 100 requests per 10 s (search: 5/s, paced by the same limit).
    fn requests_per_second(&self) -> Option<f64> {
        Some(9.0)
    }

    fn builtin(&self) -> Vec<(&'static str, TableMapping)> {
        builtin()
    }

    fn streams(&self, src: &ApiSource, base: &Url, cursors: &HashMap<String, String>) -> Result<Vec<Stream>> {
        streams(src, base, cursors)
    }

    fn restart_paging(
        &self,
        stream: &Stream,
        next: &str,
        body: Option<&mut Value>,
        cursor: Option<&str>,
    ) -> bool {
        // the search API stops at 10,000 results: start again from the newest change seen
        match (body, cursor) {
            (Some(b), Some(c))
                if stream.shape == Shape::HubspotSearch && next.parse::<u64>().is_ok_and(|v| v >= 9_900) =>
            {
                restart_search(b, c);
                true
            }
            _ => false,
        }
    }
}
