//! Google Calendar API v3 (`events.list`): meetings with customers → `interactions` of kind
//! `meeting`, matched to accounts by their attendees exactly as calendar files are
//! ([`crate::ingest::calendar`]). OAuth 2.0 with a refresh token (`GOOGLE_CLIENT_ID`,
//! `GOOGLE_CLIENT_SECRET`, `GOOGLE_REFRESH_TOKEN`), or any `auth` the configuration sets.
//! One stream per calendar in `calendars` (default `primary`), paged by `pageToken`, read
//! incrementally with `updatedMin` (recurring events expanded with `singleEvents=true`).

use std::collections::HashMap;

use serde_json::Value;
use url::Url;

use crate::Result;
use crate::ingest::calendar::HEADER;
use crate::ingest::connectors::rest::{
    ApiSource, Connector, Page, Shape, Stream, build_stream, objects, path, row, text,
};
use crate::ingest::records::RawRecords;
use crate::settings::{AuthConfig, IncrementalConfig, PagingConfig, PagingKind, SourceKind, TableMapping};

pub const BASE: &str = "https://www.googleapis.com/calendar/v3/";

fn builtin() -> Vec<(&'static str, TableMapping)> {
    let mut params = HashMap::new();
    params.insert("singleEvents".to_string(), "true".to_string());
    vec![(
        "interactions",
        TableMapping {
            records: Some("items".into()),
            paging: Some(PagingConfig {
                kind: PagingKind::Cursor,
                next: Some("nextPageToken".into()),
                param: Some("pageToken".into()),
                limit_param: Some("maxResults".into()),
                page_size: Some(250),
                ..Default::default()
            }),
            incremental: Some(IncrementalConfig {
                field: "updated".into(),
                param: Some("updatedMin".into()),
                lookback: None,
            }),
            params,
            // the path is per calendar, set below
            path: Some("calendars/primary/events".into()),
            ..Default::default()
        },
    )]
}

fn streams(src: &ApiSource, base: &Url, cursors: &HashMap<String, String>) -> Result<Vec<Stream>> {
    let calendars = if src.config.calendars.is_empty() {
        vec!["primary".to_string()]
    } else {
        src.config.calendars.clone()
    };
    let mut out = Vec::new();
    for (spec, m) in src.table_mappings(&builtin())? {
        for cal in &calendars {
            let mut m = m.clone();
            let id: String = url::form_urlencoded::byte_serialize(cal.as_bytes()).collect();
            m.path = Some(format!("calendars/{id}/events"));
            let key = format!("{}:{cal}", spec.name);
            let cursor = cursors.get(&key).map(String::as_str);
            out.push(build_stream(base, spec, key, m, cursor, Shape::Meetings)?);
        }
    }
    Ok(out)
}

/// Events as calendar records (the header of [`HEADER`]); all-day events start at midnight UTC.
pub fn meetings(origin: String, items: Vec<Value>) -> RawRecords {
    let rows = items
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let get = |p: &str| path(e, p).and_then(text);
            let id = get("id");
            let start = get("start.dateTime").or_else(|| get("start.date"));
            let attendees: Vec<String> = path(e, "attendees")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|x| x.get("resource").and_then(Value::as_bool) != Some(true))
                        .filter_map(|x| x.get("email").and_then(Value::as_str))
                        .map(|m| m.trim().to_ascii_lowercase())
                        .collect()
                })
                .unwrap_or_default();
            let error = match (&id, &start) {
                (None, _) => Some("the event has no id".to_string()),
                (_, None) if get("status").as_deref() != Some("cancelled") => {
                    Some(format!("event {} has no start", id.clone().unwrap_or_default()))
                }
                _ => None,
            };
            row(
                i + 1,
                vec![
                    id.map(|id| format!("gcal:{id}")),
                    Some("meeting".into()),
                    start,
                    get("summary").or(Some(String::new())),
                    get("status").or(Some("confirmed".into())),
                    get("organizer.email").map(|m| m.to_ascii_lowercase()),
                    Some(attendees.join(";")),
                ],
                error,
            )
        })
        .collect();
    RawRecords {
        origin,
        header: HEADER.iter().map(|h| h.to_string()).collect(),
        rows,
        meetings: true,
    }
}

/// Google Calendar API v3 (`kind = "google_calendar"`).
pub struct GoogleCalendar;

impl Connector for GoogleCalendar {
    fn kind(&self) -> SourceKind {
        SourceKind::GoogleCalendar
    }

    fn base_url(&self) -> Option<&'static str> {
        Some(BASE)
    }

    fn default_auth(&self) -> AuthConfig {
        AuthConfig {
            kind: "oauth2_refresh_token".into(),
            token_url: Some("https://oauth2.googleapis.com/token".into()),
            client_id_env: Some("GOOGLE_CLIENT_ID".into()),
            client_secret_env: Some("GOOGLE_CLIENT_SECRET".into()),
            refresh_token_env: Some("GOOGLE_REFRESH_TOKEN".into()),
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

    fn page(&self, shape: Shape, origin: String, items: Vec<Value>) -> Result<Page> {
        Ok(match shape {
            Shape::Meetings => Page::Meetings(meetings(origin, items)),
            _ => Page::Batch(objects(origin, items)?),
        })
    }
}
