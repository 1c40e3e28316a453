//! `[ingest]` and `[[sources]]`: where data comes from and how its fields map to the canonical
//! tables.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// The file-drop folder or URL that `cslake ingest` reads.
    pub source: Option<String>,
    /// Share of rejected rows above which the run fails with exit code 3 (default 0.001 = 0.1%).
    pub reject_threshold: Option<f64>,
    /// `quarantine` (default) or `keep` rows that reference an unknown account.
    pub orphans: Option<String>,
    /// Rows of an event table a run keeps in memory before it moves them to local disk until the
    /// commit (default 1,000,000): memory stays bounded however large the export.
    pub spill_rows: Option<usize>,
    /// Where commands spill what does not fit in their memory budget (default: the system's
    /// temporary folder). Each command has its own folder there, removed when it ends; folders of
    /// killed commands are removed by the next one.
    pub spill_dir: Option<String>,
    /// Per canonical table: which files hold it and how their fields map.
    #[serde(default)]
    pub tables: HashMap<String, TableMapping>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    /// Glob relative to the source root, e.g. `exports/crm_companies_*.csv`.
    pub files: Option<String>,
    /// CSV field delimiter (default `,`; `\t` for `.tsv` files).
    pub delimiter: Option<String>,
    /// canonical column = "source field"
    #[serde(default)]
    pub columns: HashMap<String, String>,
    /// chrono formats tried for date and timestamp columns after the standard ones,
    /// e.g. `["%m/%d/%Y", "%d.%m.%Y %H:%M"]`.
    #[serde(default)]
    pub date_formats: Vec<String>,
    /// Value mapping per canonical column: `[ingest.tables.accounts.values.segment]`
    /// `"Small Business" = "SMB"`. Matching ignores case.
    #[serde(default)]
    pub values: HashMap<String, HashMap<String, String>>,
    /// A value for a canonical column the source lacks (or leaves empty), e.g. `plan = "standard"`.
    #[serde(default)]
    pub constants: HashMap<String, String>,
    /// The only values a column may take (after `values` mapping; case is ignored), e.g.
    /// `allowed = { status = ["active", "canceled", "past_due"] }`: other values are rejected.
    #[serde(default)]
    pub allowed: HashMap<String, Vec<String>>,
    /// Only records whose source fields have these values belong to the table, e.g.
    /// `filter = { type = "track" }` for the track calls of a Segment export (case is ignored).
    #[serde(default)]
    pub filter: HashMap<String, String>,

    // --- API sources only ([sources.tables.NAME]) ---
    /// Endpoint path, relative to the source's `base_url` (or an absolute URL).
    pub path: Option<String>,
    /// `GET` (default) or `POST`.
    pub method: Option<String>,
    /// JSON body sent with `POST`.
    pub body: Option<String>,
    /// Dotted path of the records array in the response (`data`, `results`, `items`, `records`
    /// are found without it; `""` when the response is the array itself).
    pub records: Option<String>,
    /// Query parameters sent with every request.
    #[serde(default)]
    pub params: HashMap<String, String>,
    pub paging: Option<PagingConfig>,
    pub incremental: Option<IncrementalConfig>,
    /// Extra source fields to ask for (HubSpot properties, Salesforce SOQL fields): they land
    /// as attributes unless a column maps them.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Salesforce: the SOQL query (default: the connector's query for the table).
    pub query: Option<String>,
    /// Source fields (or dotted prefixes) not kept as attributes, e.g. `["attributes"]`.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Checks of values that parse but cannot be right, per canonical column, replacing the
    /// built-in one: `mrr = { min = 0 }`, `event_time = { future_days = 2 }`; `{}` turns the
    /// built-in rule off. A row that breaks one is quarantined with the rule named.
    #[serde(default)]
    pub rules: HashMap<String, Rule>,
}

/// A check of one column's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Numbers: the smallest value that can be right.
    pub min: Option<f64>,
    /// Numbers: the largest.
    pub max: Option<f64>,
    /// Dates and times of something that happened: how many days after the time of loading they
    /// may be (clocks and time zones differ by a day or so; a year ahead is an error).
    pub future_days: Option<i64>,
}

impl TableMapping {
    /// Fills what `self` leaves unset from `defaults` (a connector's built-in mapping): the user's
    /// configuration wins field by field and column by column.
    pub fn over(mut self, defaults: &TableMapping) -> TableMapping {
        fn or<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
        fn merge<V: Clone>(a: &mut HashMap<String, V>, b: &HashMap<String, V>) {
            for (k, v) in b {
                a.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        or(&mut self.files, &defaults.files);
        or(&mut self.delimiter, &defaults.delimiter);
        merge(&mut self.columns, &defaults.columns);
        self.date_formats.extend(defaults.date_formats.iter().cloned());
        merge(&mut self.values, &defaults.values);
        merge(&mut self.constants, &defaults.constants);
        merge(&mut self.allowed, &defaults.allowed);
        merge(&mut self.filter, &defaults.filter);
        or(&mut self.path, &defaults.path);
        or(&mut self.method, &defaults.method);
        or(&mut self.body, &defaults.body);
        or(&mut self.records, &defaults.records);
        merge(&mut self.params, &defaults.params);
        or(&mut self.paging, &defaults.paging);
        or(&mut self.incremental, &defaults.incremental);
        for f in &defaults.fields {
            if !self.fields.contains(f) {
                self.fields.push(f.clone());
            }
        }
        or(&mut self.query, &defaults.query);
        self.ignore.extend(defaults.ignore.iter().cloned());
        merge(&mut self.rules, &defaults.rules);
        self
    }

    /// Keys that only mean something for API sources, set here.
    pub fn api_keys_set(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (set, name) in [
            (self.path.is_some(), "path"),
            (self.method.is_some(), "method"),
            (self.body.is_some(), "body"),
            (self.records.is_some(), "records"),
            (!self.params.is_empty(), "params"),
            (self.paging.is_some(), "paging"),
            (self.incremental.is_some(), "incremental"),
            (!self.fields.is_empty(), "fields"),
            (self.query.is_some(), "query"),
        ] {
            if set {
                v.push(name);
            }
        }
        v
    }
}

/// How an API returns the next page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingConfig {
    /// `none`, `cursor` (a token in the body), `next_url` (a URL in the body), `link` (the
    /// `Link: <…>; rel="next"` header), `offset`, `page`, or `last_id` (`starting_after` = the
    /// last record's id).
    #[serde(rename = "type")]
    pub kind: PagingKind,
    /// `cursor` / `next_url`: dotted path of the token or URL in the response.
    pub next: Option<String>,
    /// The query parameter (or POST body field) that receives the cursor, offset, page or id.
    pub param: Option<String>,
    /// The query parameter of the page size, e.g. `limit`.
    pub limit_param: Option<String>,
    pub page_size: Option<u32>,
    /// Dotted path of a boolean that is true while more pages follow (`has_more`).
    pub has_more: Option<String>,
    /// Dotted path of a boolean that is true on the last page (`done`).
    pub done: Option<String>,
    /// `last_id`: the record field holding the id (default `id`).
    pub id_field: Option<String>,
    /// `page`: the number of the first page (default 1).
    pub first_page: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PagingKind {
    #[default]
    None,
    Cursor,
    NextUrl,
    Link,
    Offset,
    Page,
    LastId,
}

/// Incremental reads: the next run asks only for records changed since the last one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// The record field that holds its last-modified (or created) time.
    pub field: String,
    /// The query parameter that receives the cursor (the largest `field` value loaded so far).
    pub param: Option<String>,
    /// Re-read this far behind the cursor to catch late changes, e.g. `"35d"`, `"6h"`.
    pub lookback: Option<String>,
}

/// One API connector: `[[sources]]` in `cslake.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// What `cslake ingest --source NAME` calls it; also recorded as each row's source.
    pub name: String,
    pub kind: SourceKind,
    /// API root (default: the vendor's public endpoint; required for `rest`).
    pub base_url: Option<String>,
    pub auth: Option<AuthConfig>,
    /// Requests per second this source may make (default: unlimited for `rest`, the vendor's
    /// documented limit for the others).
    pub requests_per_second: Option<f64>,
    /// Per request (default 60).
    pub timeout_seconds: Option<u64>,
    /// Retries of a 429, a 5xx or a network error (default 5).
    pub max_retries: Option<u32>,
    /// First retry delay in milliseconds, doubled each time, with jitter (default 500).
    pub backoff_ms: Option<u64>,
    /// Connectors with built-in tables: load only these (default: all of them).
    #[serde(default)]
    pub only: Vec<String>,
    /// Google Calendar: the calendar ids to read (default `["primary"]`).
    #[serde(default)]
    pub calendars: Vec<String>,
    /// Salesforce: the REST API version (default `v60.0`).
    pub api_version: Option<String>,
    #[serde(default)]
    pub tables: HashMap<String, TableMapping>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    Rest,
    Hubspot,
    Salesforce,
    Stripe,
    GoogleCalendar,
}

/// Credentials are always read from environment variables named here, never from the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `none`, `bearer`, `header`, `query`, `basic`, `oauth2_client_credentials` or
    /// `oauth2_refresh_token`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `bearer`, `header`, `query`: the variable holding the token or key.
    pub token_env: Option<String>,
    /// `header` / `query`: the header or parameter name, e.g. `X-Api-Key`.
    pub name: Option<String>,
    /// `basic`
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// OAuth 2.0
    pub token_url: Option<String>,
    pub client_id_env: Option<String>,
    pub client_secret_env: Option<String>,
    pub refresh_token_env: Option<String>,
    pub scope: Option<String>,
}
