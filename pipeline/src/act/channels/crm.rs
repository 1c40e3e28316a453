//! CRM write-back: scores and top factors onto the CRM's account records, and playbook tasks as
//! CRM tasks. HubSpot: `POST /crm/v3/objects/companies/batch/update` (100 per request) and
//! `/crm/v3/objects/tasks/batch/create` associated with the company. Salesforce: the sObject
//! Collections API `PATCH /services/data/vXX/composite/sobjects` (200 per request, not all or
//! none) for Accounts and `POST` for Tasks with `WhatId`. Per-record failures are reported
//! one by one, so one bad record does not hold back the others. A [`Crm`] is a [`Channel`]:
//! `cslake act` sends it record updates and tasks as deliveries.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Map, Value, json};
use url::Url;

use crate::act::channels::channel::{Channel, Delivery, Outcome};
use crate::http::{HttpClient, Options};
use crate::ingest::connectors::connector;
use crate::settings::SourceKind;
use crate::settings::{CrmConfig, DeliveryConfig};
use crate::{Error, Result};

/// New values for one CRM record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecordUpdate {
    pub object_id: String,
    pub fields: BTreeMap<String, Value>,
}

/// A task to create in the CRM.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CrmTask {
    pub task_id: String,
    pub object_id: String,
    pub subject: String,
    pub body: String,
    pub due_date: chrono::NaiveDate,
    /// low, medium, high, urgent
    pub priority: String,
}

pub struct Crm {
    pub config: CrmConfig,
    http: HttpClient,
    kind: SourceKind,
    salesforce: bool,
}

impl Crm {
    /// The CRM `config` names, with the timeouts and retries of `[actions.delivery]`.
    pub fn open(config: &CrmConfig, delivery: &DeliveryConfig) -> Result<Self> {
        let kind = match config.kind.as_str() {
            "hubspot" => SourceKind::Hubspot,
            "salesforce" => SourceKind::Salesforce,
            other => {
                return Err(Error::Config(format!(
                    "[[actions.crm]] '{}': kind '{other}': expected hubspot or salesforce",
                    config.name
                )));
            }
        };
        let auth = config
            .auth
            .clone()
            .unwrap_or_else(|| connector(kind).default_auth());
        let http = HttpClient::new(
            &format!("crm {}", config.name),
            &auth,
            Options {
                timeout: Duration::from_secs(delivery.timeout_seconds),
                max_retries: delivery.max_retries,
                backoff: Duration::from_millis(delivery.backoff_ms),
                // HubSpot allows 100 requests per 10 s; Salesforce's daily limits are per org
                requests_per_second: Some(9.0),
            },
        )?;
        Ok(Self {
            config: config.clone(),
            http,
            kind,
            salesforce: kind == SourceKind::Salesforce,
        })
    }

    fn batch(&self) -> usize {
        self.config
            .batch_size
            .unwrap_or(if self.salesforce { 200 } else { 100 })
            .max(1)
    }

    async fn base(&self) -> Result<Url> {
        let vendor = connector(self.kind);
        let raw = match (&self.config.base_url, vendor.base_url(), vendor.base_from_token()) {
            (Some(b), _, _) => b.clone(),
            (None, Some(b), _) => b.to_string(),
            (None, None, Some(field)) => {
                // the org's own host comes with the access token
                self.http.authenticate().await?;
                let extras = self.http.token_extras.lock().await;
                extras
                    .get(field)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "[[actions.crm]] '{}': the token response has no {field}: set base_url",
                            self.config.name
                        ))
                    })?
            }
            (None, None, None) => {
                return Err(Error::Config(format!(
                    "[[actions.crm]] '{}': set base_url",
                    self.config.name
                )));
            }
        };
        let mut url = Url::parse(&raw)
            .map_err(|e| Error::Config(format!("[[actions.crm]] '{}': base_url: {e}", self.config.name)))?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(url)
    }

    fn sobjects(&self, base: &Url) -> Result<Url> {
        let v = self.config.api_version.as_deref().unwrap_or("v60.0");
        let v = if v.starts_with('v') {
            v.to_string()
        } else {
            format!("v{v}")
        };
        join(base, &format!("services/data/{v}/composite/sobjects"))
    }

    /// Sends the updates; returns per record `Ok` or the CRM's reason.
    async fn update(&self, updates: &[RecordUpdate]) -> Result<Vec<(String, Result<(), Failure>)>> {
        let base = self.base().await?;
        let mut out = Vec::with_capacity(updates.len());
        for chunk in updates.chunks(self.batch()) {
            let ids: Vec<String> = chunk.iter().map(|u| u.object_id.clone()).collect();
            let result = if self.salesforce {
                let records: Vec<Value> = chunk
                    .iter()
                    .map(|u| {
                        let mut m = Map::new();
                        m.insert("attributes".into(), json!({"type": "Account"}));
                        m.insert("id".into(), json!(u.object_id));
                        m.extend(u.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                        Value::Object(m)
                    })
                    .collect();
                let body = json!({"allOrNone": false, "records": records});
                self.http
                    .json(Method::PATCH, &self.sobjects(&base)?, Some(&body))
                    .await
                    .map(|p| salesforce_results(&ids, &p.body))
            } else {
                let inputs: Vec<Value> = chunk
                    .iter()
                    .map(|u| {
                        let props: Map<String, Value> = u
                            .fields
                            .iter()
                            .map(|(k, v)| (k.clone(), hubspot_value(v)))
                            .collect();
                        json!({"id": u.object_id, "properties": props})
                    })
                    .collect();
                let url = join(&base, "crm/v3/objects/companies/batch/update")?;
                self.http
                    .json(Method::POST, &url, Some(&json!({"inputs": inputs})))
                    .await
                    .map(|p| hubspot_results(&ids, &p.body))
            };
            match result {
                Ok(r) => out.extend(r.into_iter().map(|(id, r)| (id, r.map(|_| ())))),
                // credentials are a configuration problem: stop, nothing more can pass
                Err(e @ Error::Credentials { .. }) => return Err(e),
                Err(e) => out.extend(ids.into_iter().map(|id| (id, Err(Failure::of(&e))))),
            }
        }
        Ok(out)
    }

    /// Creates tasks; returns per task the CRM's id for it, or the reason it failed.
    async fn create_tasks(&self, tasks: &[CrmTask]) -> Result<Vec<(String, Result<String, Failure>)>> {
        let base = self.base().await?;
        let mut out = Vec::with_capacity(tasks.len());
        for chunk in tasks.chunks(self.batch()) {
            let ids: Vec<String> = chunk.iter().map(|t| t.task_id.clone()).collect();
            let result = if self.salesforce {
                let records: Vec<Value> = chunk
                    .iter()
                    .map(|t| {
                        json!({
                            "attributes": {"type": "Task"},
                            "WhatId": t.object_id,
                            "Subject": t.subject,
                            "Description": t.body,
                            "ActivityDate": t.due_date.to_string(),
                            "Priority": match t.priority.as_str() { "high" | "urgent" => "High", "low" => "Low", _ => "Normal" },
                            "Status": "Not Started",
                        })
                    })
                    .collect();
                let body = json!({"allOrNone": false, "records": records});
                self.http
                    .json(Method::POST, &self.sobjects(&base)?, Some(&body))
                    .await
                    .map(|p| salesforce_results(&ids, &p.body))
            } else {
                let inputs: Vec<Value> = chunk
                    .iter()
                    .map(|t| {
                        let due = t
                            .due_date
                            .and_hms_opt(17, 0, 0)
                            .map(|d| d.and_utc().timestamp_millis())
                            .unwrap_or_default();
                        json!({
                            "properties": {
                                "hs_task_subject": t.subject,
                                "hs_task_body": t.body,
                                "hs_timestamp": due.to_string(),
                                "hs_task_status": "NOT_STARTED",
                                "hs_task_priority": match t.priority.as_str() { "high" | "urgent" => "HIGH", "low" => "LOW", _ => "MEDIUM" },
                                "hs_task_type": "TODO",
                            },
                            // 192: task to company (HubSpot-defined association type)
                            "associations": [{
                                "to": {"id": t.object_id},
                                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}]
                            }]
                        })
                    })
                    .collect();
                let url = join(&base, "crm/v3/objects/tasks/batch/create")?;
                self.http
                    .json(Method::POST, &url, Some(&json!({"inputs": inputs})))
                    .await
                    .map(|p| {
                        // results come back in no promised order: match them by subject + company
                        let results = p
                            .body
                            .get("results")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        let mut used = vec![false; results.len()];
                        chunk
                            .iter()
                            .map(|t| {
                                let found = results.iter().enumerate().find(|(i, r)| {
                                    !used[*i]
                                        && r.pointer("/properties/hs_task_subject").and_then(Value::as_str)
                                            == Some(t.subject.as_str())
                                });
                                match found {
                                    Some((i, r)) => {
                                        used[i] = true;
                                        (t.task_id.clone(), Ok(id_of(r)))
                                    }
                                    None => (t.task_id.clone(), Err(Failure::Refused(errors_text(&p.body)))),
                                }
                            })
                            .collect()
                    })
            };
            match result {
                Ok(r) => out.extend(r),
                Err(e @ Error::Credentials { .. }) => return Err(e),
                Err(e) => out.extend(ids.into_iter().map(|id| (id, Err(Failure::of(&e))))),
            }
        }
        Ok(out)
    }
}

impl Crm {
    /// Which of these CRM tasks are done (HubSpot `hs_task_status = COMPLETED`, Salesforce
    /// `IsClosed`): how completion made in the CRM comes back to `actions.tasks`.
    /// The tasks among `crm_ids` their owners have closed in the CRM, with when, where the CRM
    /// says (HubSpot `hs_task_completion_date`, Salesforce `CompletedDateTime`), in microseconds.
    pub async fn completed_tasks(&self, crm_ids: &[String]) -> Result<Vec<(String, Option<i64>)>> {
        let base = self.base().await?;
        let mut done = Vec::new();
        for chunk in crm_ids.chunks(self.batch()) {
            if self.salesforce {
                let mut url = self.sobjects(&base)?;
                url.set_path(&format!("{}/Task", url.path()));
                url.query_pairs_mut()
                    .append_pair("ids", &chunk.join(","))
                    .append_pair("fields", "Id,IsClosed,Status,CompletedDateTime");
                let page = self.http.json(Method::GET, &url, None).await?;
                for r in page.body.as_array().into_iter().flatten() {
                    if r.get("IsClosed").and_then(Value::as_bool) == Some(true) {
                        done.push((
                            id_of(&json!({"id": r.get("Id").cloned().unwrap_or(Value::Null)})),
                            r.get("CompletedDateTime").and_then(crm_time),
                        ));
                    }
                }
            } else {
                let url = join(&base, "crm/v3/objects/tasks/batch/read")?;
                let body = json!({
                    "properties": ["hs_task_status", "hs_task_completion_date"],
                    "inputs": chunk.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
                });
                let page = self.http.json(Method::POST, &url, Some(&body)).await?;
                for r in page
                    .body
                    .get("results")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if r.pointer("/properties/hs_task_status").and_then(Value::as_str) == Some("COMPLETED") {
                        done.push((
                            id_of(r),
                            r.pointer("/properties/hs_task_completion_date")
                                .and_then(crm_time),
                        ));
                    }
                }
            }
        }
        Ok(done)
    }
}

/// A CRM's timestamp in microseconds: ISO 8601 (HubSpot `2026-06-30T14:05:00.000Z`, Salesforce
/// `2026-06-30T14:05:00.000+0000`) or milliseconds since the epoch (older HubSpot properties).
fn crm_time(v: &Value) -> Option<i64> {
    let s = match v {
        Value::Number(n) => return n.as_i64().map(|ms| ms * 1000),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms * 1000);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.timestamp_micros())
}

/// A CRM takes two kinds of delivery: `record_update` (`data`: `object_id` and the `fields` to
/// set) and `task` (`data`: `task_id`, `object_id`, `subject`, `body`, `due_date`, `priority`),
/// sent in batches of the CRM's size. A created task's CRM id comes back as the outcome's
/// `reference`. Rejected credentials stop everything sent to it: [`Outcome::Unauthorized`].
impl Channel for Crm {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> &'static str {
        if self.salesforce { "salesforce" } else { "hubspot" }
    }

    fn send<'a>(&'a self, deliveries: &'a [Delivery]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let mut out: Vec<Option<Outcome>> = vec![None; deliveries.len()];
            let mut updates = Vec::new();
            let mut tasks = Vec::new();
            for (i, d) in deliveries.iter().enumerate() {
                let parsed = match d.kind.as_str() {
                    "record_update" => {
                        serde_json::from_value::<RecordUpdate>(d.data.clone()).map(|u| updates.push((i, u)))
                    }
                    "task" => serde_json::from_value::<CrmTask>(d.data.clone()).map(|t| tasks.push((i, t))),
                    other => {
                        out[i] = Some(Outcome::Failed {
                            error: format!("a CRM takes record updates and tasks, not '{other}'"),
                            transient: false,
                        });
                        Ok(())
                    }
                };
                if let Err(e) = parsed {
                    out[i] = Some(Outcome::Failed {
                        error: format!("not a {} of the CRM: {e}", d.kind),
                        transient: false,
                    });
                }
            }
            let failed = |e: &Error| match e {
                Error::Credentials { message, .. } => Outcome::Unauthorized {
                    error: message.clone(),
                },
                _ => Outcome::Failed {
                    error: e.to_string(),
                    transient: true,
                },
            };
            if !updates.is_empty() {
                let list: Vec<RecordUpdate> = updates.iter().map(|(_, u)| u.clone()).collect();
                match self.update(&list).await {
                    Ok(results) => {
                        for ((i, _), (_, r)) in updates.iter().zip(results) {
                            out[*i] = Some(outcome(r.map(|()| None)));
                        }
                    }
                    Err(e) => updates.iter().for_each(|(i, _)| out[*i] = Some(failed(&e))),
                }
            }
            if !tasks.is_empty() {
                let list: Vec<CrmTask> = tasks.iter().map(|(_, t)| t.clone()).collect();
                match self.create_tasks(&list).await {
                    Ok(results) => {
                        for ((i, _), (_, r)) in tasks.iter().zip(results) {
                            out[*i] = Some(outcome(r.map(Some)));
                        }
                    }
                    Err(e) => tasks.iter().for_each(|(i, _)| out[*i] = Some(failed(&e))),
                }
            }
            out.into_iter()
                .map(|o| {
                    o.unwrap_or(Outcome::Failed {
                        error: "the CRM did not answer for it".into(),
                        transient: true,
                    })
                })
                .collect()
        })
    }
}

/// A record's result as an outcome.
fn outcome(r: std::result::Result<Option<String>, Failure>) -> Outcome {
    match r {
        Ok(reference) => Outcome::Sent {
            status: None,
            reference,
        },
        Err(Failure::Refused(error)) => Outcome::Failed {
            error,
            transient: false,
        },
        Err(Failure::Unreached(error)) => Outcome::Failed {
            error,
            transient: true,
        },
    }
}

/// Why one record did not pass.
#[derive(Debug, Clone)]
enum Failure {
    /// The CRM answered and refused it: it will refuse it again.
    Refused(String),
    /// The request did not get through (after the retries): worth a later run.
    Unreached(String),
}

impl Failure {
    /// The failure of every record of a batch request that failed as a whole.
    fn of(e: &Error) -> Self {
        match e {
            Error::Http { refused: true, .. } => Failure::Refused(e.to_string()),
            _ => Failure::Unreached(e.to_string()),
        }
    }
}

fn join(base: &Url, path: &str) -> Result<Url> {
    base.join(path)
        .map_err(|e| Error::Config(format!("{base}{path}: {e}")))
}

fn id_of(v: &Value) -> String {
    match v.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// HubSpot properties are strings.
fn hubspot_value(v: &Value) -> Value {
    match v {
        Value::String(_) | Value::Null => v.clone(),
        other => Value::String(other.to_string()),
    }
}

fn errors_text(body: &Value) -> String {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .filter_map(|x| x.get("message").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "the CRM did not confirm this record".into())
}

/// A batch answer (200 or 207): ids named in `errors[].context.ids` failed, the rest passed.
fn hubspot_results(ids: &[String], body: &Value) -> Vec<(String, Result<String, Failure>)> {
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for e in body.get("errors").and_then(Value::as_array).into_iter().flatten() {
        let msg = e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_string();
        for id in e
            .pointer("/context/ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = id.as_str() {
                failed.insert(id.to_string(), msg.clone());
            }
        }
    }
    ids.iter()
        .map(|id| match failed.get(id) {
            Some(m) => (id.clone(), Err(Failure::Refused(m.clone()))),
            None => (id.clone(), Ok(id.clone())),
        })
        .collect()
}

/// sObject Collections answer one result per record, in order.
fn salesforce_results(ids: &[String], body: &Value) -> Vec<(String, Result<String, Failure>)> {
    let results = body.as_array().cloned().unwrap_or_default();
    ids.iter()
        .enumerate()
        .map(|(i, id)| match results.get(i) {
            Some(r) if r.get("success").and_then(Value::as_bool) == Some(true) => (id.clone(), Ok(id_of(r))),
            Some(r) => (
                id.clone(),
                Err(Failure::Refused(
                    r.get("errors")
                        .and_then(Value::as_array)
                        .map(|e| {
                            e.iter()
                                .map(|x| {
                                    format!(
                                        "{}: {}",
                                        x.get("statusCode").and_then(Value::as_str).unwrap_or(""),
                                        x.get("message").and_then(Value::as_str).unwrap_or("")
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_else(|| "failed".into()),
                )),
            ),
            None => (
                id.clone(),
                Err(Failure::Refused("no result for this record".into())),
            ),
        })
        .collect()
}
