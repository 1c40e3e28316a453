//! The generic REST engine of API sources (`[[sources]]`): requests, paging (cursor, next URL,
//! `Link` header, offset, page, last id), incremental cursors with look-back, and the records of
//! each page, driven by configuration. A vendor is a [`Connector`]: its defaults (endpoint,
//! authentication, rate limit, built-in tables and mappings) and the few rules where its API
//! differs; [`Rest`] is the connector of a REST API described by configuration alone. Every page
//! becomes an Arrow batch ([`Page`]) and goes through the same validation, quarantine and loading
//! as a file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::Value;
use url::Url;

use crate::http::{HttpClient, Options};
use crate::ingest::batch::SourceBatch;
use crate::ingest::records::{RawRecords, RawRow};
use crate::lake::schema::{TableSpec, core_table};
use crate::settings::{AuthConfig, PagingKind, SourceConfig, SourceKind, TableMapping};
use crate::{Error, Progress, Result};

/// How a response's records become raw records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Objects, flattened to dotted fields.
    Records,
    /// Google Calendar events: meetings whose account comes from the attendees.
    Meetings,
    /// Stripe subscriptions: MRR, plan and seats derived from the items.
    StripeSubscription,
    /// Stripe invoices: amounts from minor units, failed payment attempts.
    StripeInvoice,
    /// HubSpot search: at most 10,000 results per query, so paging restarts from the cursor.
    HubspotSearch,
}

/// One page's items, as the ingest takes them.
#[derive(Debug)]
pub enum Page {
    /// Objects flattened to text columns, a row per item.
    Batch(SourceBatch),
    /// Calendar events (`ingest::calendar::HEADER`), whose account comes from their attendees
    /// once they are matched to the contacts (a calendar's meetings are few: rows of text).
    Meetings(RawRecords),
}

/// One request sequence that fills one table.
#[derive(Debug, Clone)]
pub struct Stream {
    pub table: &'static TableSpec,
    /// Names the stream's cursor in `ops.source_cursors` (the table, or table:calendar).
    pub key: String,
    pub mapping: TableMapping,
    pub method: Method,
    pub url: Url,
    pub body: Option<Value>,
    pub shape: Shape,
}

/// What one stream read.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Pages read.
    pub pages: usize,
    /// The largest value of the incremental field seen (or the previous cursor).
    pub cursor: Option<String>,
    pub records: usize,
}

/// A vendor's API as cslake reads it. The engine ([`ApiSource`]) makes the requests, pages, keeps
/// the cursors and retries for every connector; a connector supplies defaults and the rules where
/// its API is not plain REST. Each is tested by the same conformance suite (`tests/conformance.rs`)
/// against a local server speaking the vendor's documented shapes.
pub trait Connector: Send + Sync {
    /// The `kind` of `[[sources]]` it serves.
    fn kind(&self) -> SourceKind;

    /// The vendor's public API root (`None`: it must be configured, or comes with the token).
    fn base_url(&self) -> Option<&'static str> {
        None
    }

    /// The field of the OAuth token response that holds the API root when none is configured
    /// (Salesforce's `instance_url`: each org has its own host).
    fn base_from_token(&self) -> Option<&'static str> {
        None
    }

    /// Authentication when `auth` is not configured: which environment variables hold what.
    fn default_auth(&self) -> AuthConfig {
        AuthConfig {
            kind: "none".into(),
            ..Default::default()
        }
    }

    /// Requests per second when `requests_per_second` is not configured (the vendor's documented
    /// limit; `None`: unlimited).
    fn requests_per_second(&self) -> Option<f64> {
        None
    }

    /// The tables the connector fills without configuration, with their mappings.
    fn builtin(&self) -> Vec<(&'static str, TableMapping)> {
        Vec::new()
    }

    /// What a run reads, given the cursors earlier runs left: by default one stream per table of
    /// the built-in and configured mappings.
    fn streams(&self, src: &ApiSource, base: &Url, cursors: &HashMap<String, String>) -> Result<Vec<Stream>> {
        src.table_mappings(&self.builtin())?
            .into_iter()
            .map(|(spec, m)| {
                let cursor = cursors.get(spec.name).map(String::as_str);
                build_stream(base, spec, spec.name.into(), m, cursor, Shape::Records)
            })
            .collect()
    }

    /// One page's items: by default, objects flattened to dotted fields.
    fn page(&self, _shape: Shape, origin: String, items: Vec<Value>) -> Result<Page> {
        Ok(Page::Batch(objects(origin, items)?))
    }

    /// Called before asking for the next page (`next` is the cursor, offset or id about to be
    /// sent): `true` when the connector restarted the request instead (HubSpot's search stops at
    /// 10,000 results, so a new search starts from the newest change seen).
    fn restart_paging(
        &self,
        _stream: &Stream,
        _next: &str,
        _body: Option<&mut Value>,
        _cursor: Option<&str>,
    ) -> bool {
        false
    }
}

/// A REST API described by configuration alone (`kind = "rest"`).
pub struct Rest;

impl Connector for Rest {
    fn kind(&self) -> SourceKind {
        SourceKind::Rest
    }
}

pub struct ApiSource {
    pub config: SourceConfig,
    pub client: HttpClient,
    connector: &'static dyn Connector,
}

impl ApiSource {
    /// The source `config` describes, read through `connector` (see `connectors::open`).
    pub fn open(config: &SourceConfig, connector: &'static dyn Connector) -> Result<Self> {
        let auth = config.auth.clone().unwrap_or_else(|| connector.default_auth());
        let opts = Options {
            timeout: Duration::from_secs(config.timeout_seconds.unwrap_or(60)),
            max_retries: config.max_retries.unwrap_or(5),
            backoff: Duration::from_millis(config.backoff_ms.unwrap_or(500)),
            requests_per_second: config.requests_per_second.or(connector.requests_per_second()),
        };
        Ok(Self {
            client: HttpClient::new(&config.name, &auth, opts)?,
            config: config.clone(),
            connector,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The API root every path is relative to.
    pub async fn base_url(&self) -> Result<Url> {
        let configured = match (&self.config.base_url, self.connector.base_url()) {
            (Some(b), _) => b.clone(),
            (None, Some(b)) => b.to_string(),
            (None, None) => match self.connector.base_from_token() {
                // the org's own host comes with the access token
                Some(field) => {
                    self.client.authenticate().await?;
                    let extras = self.client.token_extras.lock().await;
                    extras
                        .get(field)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| self.err(format!("the token response has no {field}: set base_url")))?
                }
                None => return Err(self.err(format!("a `{}` source needs a base_url", self.kind_name()))),
            },
        };
        let mut url = Url::parse(&configured)
            .map_err(|e| Error::Config(format!("source '{}': base_url '{configured}': {e}", self.name())))?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(url)
    }

    fn err(&self, message: String) -> Error {
        Error::Http {
            name: self.config.name.clone(),
            message,
            refused: true,
        }
    }

    /// The tables this source fills: the connector's built-in ones (narrowed by `only`) and
    /// any the configuration adds, each with the user's mapping over the built-in one.
    pub fn table_mappings(
        &self,
        builtin: &[(&str, TableMapping)],
    ) -> Result<Vec<(&'static TableSpec, TableMapping)>> {
        let mut out = Vec::new();
        for spec in crate::lake::schema::CORE_TABLES {
            let default = builtin.iter().find(|(t, _)| *t == spec.name).map(|(_, m)| m);
            let user = self.config.tables.get(spec.name);
            if default.is_none() && user.is_none() {
                continue;
            }
            if !self.config.only.is_empty() && !self.config.only.iter().any(|o| o == spec.name) {
                continue;
            }
            let mapping = match (user, default) {
                (Some(u), Some(d)) => u.clone().over(d),
                (Some(u), None) => u.clone(),
                (None, Some(d)) => d.clone(),
                (None, None) => unreachable!(),
            };
            if mapping.path.is_none() && mapping.query.is_none() {
                return Err(Error::Config(format!(
                    "source '{}': [sources.tables.{}] needs a `path`",
                    self.name(),
                    spec.name
                )));
            }
            out.push((spec, mapping));
        }
        for o in &self.config.only {
            if core_table(o).is_none() {
                return Err(Error::Config(format!(
                    "source '{}': only = '{o}': no such core table",
                    self.name()
                )));
            }
        }
        Ok(out)
    }

    /// What this source reads on this run, given the cursors earlier runs left.
    pub async fn streams(&self, cursors: &HashMap<String, String>) -> Result<Vec<Stream>> {
        let base = self.base_url().await?;
        self.connector.streams(self, &base, cursors)
    }

    fn kind_name(&self) -> &'static str {
        match self.connector.kind() {
            SourceKind::Rest => "rest",
            SourceKind::Hubspot => "hubspot",
            SourceKind::Salesforce => "salesforce",
            SourceKind::Stripe => "stripe",
            SourceKind::GoogleCalendar => "google_calendar",
        }
    }

    /// Reads every page of a stream, handing each to `page` as it arrives: a stream of any
    /// length is never held whole.
    pub async fn fetch(
        &self,
        stream: &Stream,
        cursor: Option<&str>,
        progress: &dyn Progress,
        mut page_read: impl AsyncFnMut(Page) -> Result<()>,
    ) -> Result<Fetched> {
        let paging = stream.mapping.paging.clone().unwrap_or_default();
        let page_size = paging.page_size.map(|p| p as usize);
        let mut url = stream.url.clone();
        let mut body = stream.body.clone();
        let mut out = Fetched {
            cursor: cursor.map(str::to_string),
            ..Default::default()
        };
        let mut asked: HashSet<String> = HashSet::new();
        let mut offset = 0usize;
        let mut page_number = paging.first_page.unwrap_or(1);
        progress.start(&format!("{} {}", self.name(), stream.key), None);
        for page_no in 1usize.. {
            let request_id = format!(
                "{url} {}",
                body.as_ref().map(Value::to_string).unwrap_or_default()
            );
            if !asked.insert(request_id) {
                return Err(self.err(format!(
                    "{}: paging does not advance (page {page_no} asks for a page already read)",
                    self.client.redact(url.as_str())
                )));
            }
            let page = self
                .client
                .json(stream.method.clone(), &url, body.as_ref())
                .await?;
            let origin = format!("{}#page={page_no}", self.client.redact(url.as_str()));
            let items = records_at(&page.body, stream.mapping.records.as_deref())
                .map_err(|m| self.err(format!("{origin}: {m}")))?;
            let n = items.len();
            if let Some(inc) = &stream.mapping.incremental {
                for item in &items {
                    if let Some(v) = path(item, &inc.field).and_then(text)
                        && out.cursor.as_deref().is_none_or(|c| later(&v, c))
                    {
                        out.cursor = Some(v);
                    }
                }
            }
            let last_id = items
                .last()
                .and_then(|i| path(i, paging.id_field.as_deref().unwrap_or("id")).and_then(text));
            out.records += n;
            let mut read = self.connector.page(stream.shape, origin.clone(), items)?;
            if let Page::Batch(b) = &mut read {
                drop_fields(b, &stream.mapping.ignore)?;
            }
            out.pages += 1;
            page_read(read).await?;
            tracing::info!(
                source = self.name(),
                stream = stream.key.as_str(),
                page = page_no,
                records = n,
                "page"
            );
            progress.advance(1);
            let flag = |p: &Option<String>| {
                p.as_deref()
                    .and_then(|p| path(&page.body, p))
                    .and_then(Value::as_bool)
            };
            if flag(&paging.done) == Some(true) || flag(&paging.has_more) == Some(false) || n == 0 {
                break;
            }
            let param = paging.param.clone();
            let next: Option<(String, String)> = match paging.kind {
                PagingKind::None => None,
                PagingKind::Cursor => {
                    let at = paging.next.as_deref().unwrap_or("next");
                    path(&page.body, at)
                        .and_then(text)
                        .filter(|c| !c.is_empty())
                        .map(|c| (param.clone().unwrap_or_else(|| "cursor".into()), c))
                }
                PagingKind::NextUrl => {
                    let at = paging.next.as_deref().unwrap_or("next");
                    match path(&page.body, at).and_then(text).filter(|c| !c.is_empty()) {
                        Some(next) => {
                            url = url
                                .join(&next)
                                .map_err(|e| self.err(format!("{origin}: next page URL '{next}': {e}")))?;
                            continue;
                        }
                        None => None,
                    }
                }
                PagingKind::Link => match page.next_link {
                    Some(next) => {
                        url = url
                            .join(&next)
                            .map_err(|e| self.err(format!("{origin}: Link next '{next}': {e}")))?;
                        continue;
                    }
                    None => None,
                },
                PagingKind::Offset => {
                    offset += n;
                    (page_size.is_none_or(|s| n >= s)).then(|| {
                        (
                            param.clone().unwrap_or_else(|| "offset".into()),
                            offset.to_string(),
                        )
                    })
                }
                PagingKind::Page => {
                    page_number += 1;
                    (page_size.is_none_or(|s| n >= s)).then(|| {
                        (
                            param.clone().unwrap_or_else(|| "page".into()),
                            page_number.to_string(),
                        )
                    })
                }
                PagingKind::LastId => {
                    last_id.map(|id| (param.clone().unwrap_or_else(|| "starting_after".into()), id))
                }
            };
            let Some((name, value)) = next else { break };
            if self
                .connector
                .restart_paging(stream, &value, body.as_mut(), out.cursor.as_deref())
            {
                asked.clear();
                continue;
            }
            match body.as_mut() {
                Some(Value::Object(map)) if stream.method == Method::POST => {
                    map.insert(name, Value::String(value));
                }
                _ => set_query(&mut url, &name, &value),
            }
        }
        progress.finish();
        Ok(out)
    }
}

/// The first request of a stream: path, parameters, page size, and the incremental cursor
/// (moved back by the lookback).
pub fn build_stream(
    base: &Url,
    table: &'static TableSpec,
    key: String,
    mapping: TableMapping,
    cursor: Option<&str>,
    shape: Shape,
) -> Result<Stream> {
    let path = mapping.path.clone().unwrap_or_default();
    let mut url = base
        .join(path.trim_start_matches('/'))
        .map_err(|e| Error::Config(format!("[sources.tables.{}] path '{path}': {e}", table.name)))?;
    let params: BTreeMap<&String, &String> = mapping.params.iter().collect();
    for (k, v) in params {
        url.query_pairs_mut().append_pair(k, v);
    }
    if let Some(p) = &mapping.paging {
        if let (Some(lp), Some(size)) = (&p.limit_param, p.page_size) {
            set_query(&mut url, lp, &size.to_string());
        }
        if p.kind == PagingKind::Page
            && let Some(first) = p.first_page
        {
            set_query(&mut url, p.param.as_deref().unwrap_or("page"), &first.to_string());
        }
    }
    if let (Some(inc), Some(c)) = (&mapping.incremental, cursor)
        && let Some(param) = &inc.param
    {
        let since = look_back(c, inc.lookback.as_deref())?;
        set_query(&mut url, param, &since);
    }
    let method = match mapping.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("GET") => Method::GET,
        Some("POST") => Method::POST,
        Some(other) => {
            return Err(Error::Config(format!(
                "[sources.tables.{}] method '{other}': GET or POST",
                table.name
            )));
        }
    };
    let body = mapping
        .body
        .as_deref()
        .map(|b| {
            serde_json::from_str(b)
                .map_err(|e| Error::Config(format!("[sources.tables.{}] body is not JSON: {e}", table.name)))
        })
        .transpose()?;
    Ok(Stream {
        table,
        key,
        mapping,
        method,
        url,
        body,
        shape,
    })
}

/// Replaces (or adds) one query parameter.
pub fn set_query(url: &mut Url, name: &str, value: &str) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut q = url.query_pairs_mut();
    q.clear();
    for (k, v) in &kept {
        q.append_pair(k, v);
    }
    q.append_pair(name, value);
}

/// The cursor moved back by `lookback`, in the cursor's own format (epoch seconds or
/// milliseconds stay numbers; timestamps stay RFC 3339).
pub fn look_back(cursor: &str, lookback: Option<&str>) -> Result<String> {
    let Some(lb) = lookback else {
        return Ok(cursor.to_string());
    };
    let d = crate::units::parse_duration(lb).map_err(|e| Error::Config(format!("lookback {e}")))?;
    if let Ok(n) = cursor.parse::<i64>() {
        let millis = cursor.len() >= 13;
        let step = if millis {
            d.num_milliseconds()
        } else {
            d.num_seconds()
        };
        return Ok((n - step).to_string());
    }
    match crate::ingest::records::parse_timestamp(cursor) {
        Some(t) => Ok((t - d).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => Ok(cursor.to_string()),
    }
}

/// Whether cursor value `a` is after `b`: as numbers, as timestamps, or as text.
pub fn later(a: &str, b: &str) -> bool {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x > y;
    }
    let ts = |s: &str| -> Option<DateTime<Utc>> { crate::ingest::records::parse_timestamp(s) };
    match (ts(a), ts(b)) {
        (Some(x), Some(y)) => x > y,
        _ => a > b,
    }
}

/// A dotted path into JSON (`paging.next.after`, `items.0.id`).
pub fn path<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    if p.is_empty() {
        return Some(v);
    }
    p.split('.').try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A scalar as text (`None` for null, objects and arrays).
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The records array of a response.
fn records_at(body: &Value, at: Option<&str>) -> std::result::Result<Vec<Value>, String> {
    let found = match at {
        Some(p) => path(body, p).ok_or_else(|| {
            format!(
                "the response has no '{p}' (it has: {})",
                match body {
                    Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
                    other => format!("a JSON {}", kind(other)),
                }
            )
        })?,
        None if body.is_array() => body,
        None => ["data", "results", "items", "records"]
            .iter()
            .find_map(|k| body.get(k).filter(|v| v.is_array()))
            .ok_or_else(|| {
                "cannot tell where the records are: set `records` to the path of the array".to_string()
            })?,
    };
    match found {
        Value::Array(a) => Ok(a.clone()),
        Value::Null => Ok(Vec::new()),
        other => Err(format!(
            "'{}' is a JSON {}, not an array of records",
            at.unwrap_or(""),
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Items as a batch: objects flattened to dotted fields (anything else is rejected with the row).
pub fn objects(origin: String, items: Vec<Value>) -> Result<SourceBatch> {
    crate::ingest::read::page_batch(origin, items)
}

/// Removes fields named in `ignore`, at any depth (`attributes` drops `Owner.attributes.url`).
fn drop_fields(page: &mut SourceBatch, ignore: &[String]) -> Result<()> {
    if ignore.is_empty() {
        return Ok(());
    }
    let keep: Vec<usize> = (0..page.batch.num_columns())
        .filter(|i| !crate::ingest::records::ignored(page.batch.schema().field(*i).name(), ignore))
        .collect();
    if keep.len() < page.batch.num_columns() {
        page.batch = page.batch.project(&keep)?;
    }
    Ok(())
}

/// A raw row for records the connector builds itself.
pub fn row(number: usize, values: Vec<Option<String>>, error: Option<String>) -> RawRow {
    RawRow {
        number,
        values,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursors_compare_and_look_back_in_their_own_format() {
        assert!(later("1700000100", "1700000000"));
        assert!(later("2026-01-02T00:00:00Z", "2026-01-01T23:00:00.000+0000"));
        assert_eq!(look_back("1700000000", Some("1d")).unwrap(), "1699913600");
        assert_eq!(
            look_back("2026-03-10T12:00:00Z", Some("35d")).unwrap(),
            "2026-02-03T12:00:00.000Z"
        );
    }

    #[test]
    fn records_are_found_and_paths_walk_arrays() {
        let body = json!({"results": [{"id": "1"}], "paging": {"next": {"after": "2"}}});
        assert_eq!(records_at(&body, None).unwrap().len(), 1);
        assert_eq!(
            path(&body, "paging.next.after").and_then(text).as_deref(),
            Some("2")
        );
        assert_eq!(path(&body, "results.0.id").and_then(text).as_deref(), Some("1"));
        let e = records_at(&body, Some("data")).unwrap_err();
        assert!(e.contains("has no 'data' (it has: paging, results)"), "{e}");
    }
}
