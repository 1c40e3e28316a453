//! The CRM side of a day: tasks completed in the CRM come back before the day is planned, and
//! changed fields and new tasks go out after it (only what changed since cslake last sent it).

use std::collections::{BTreeMap, HashMap};

use deltalake::datafusion::prelude::SessionContext;
use serde_json::{Value, json};

use crate::act::channels::crm::{Crm, CrmTask, RecordUpdate};
use crate::act::channels::{Channel, Delivery, Outcome};
use crate::act::day::Day;
use crate::act::report::CrmReport;
use crate::act::tables::{Cols, Task, read};
use crate::act::tables::{insert_new, upsert_tasks};
use crate::lake::query::{has_table, strings};
use crate::settings::CrmConfig;
use crate::{Error, Lake, Result, RunContext};

/// Tasks completed in the CRM come back as completed here (before the day is planned, so an
/// escalation `only_if = "task_open"` sees them).
pub(crate) async fn pull_completions(
    lake: &Lake,
    ctx: &SessionContext,
    crm: &Crm,
    run: &mut RunContext,
) -> Result<usize> {
    let cfg = &crm.config;
    if !cfg.push_tasks || !has_table(ctx, "actions.tasks") {
        return Ok(0);
    }
    let prefix = format!("{}:", cfg.name);
    let open = Task::read(
        &read(
            ctx,
            "actions.tasks",
            "crm_task_id IS NOT NULL AND status IN ('open', 'overdue')",
        )
        .await?,
    )?;
    let ids: Vec<String> = open
        .iter()
        .filter_map(|t| {
            t.crm_task_id
                .as_deref()?
                .strip_prefix(&prefix)
                .map(str::to_string)
        })
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    // closed then, says the CRM; closed by now where it does not say
    let now = chrono::Utc::now().timestamp_micros();
    let done: HashMap<String, i64> = crm
        .completed_tasks(&ids)
        .await?
        .into_iter()
        .map(|(id, at)| (id, at.map_or(now, |t| t.min(now))))
        .collect();
    let closed: Vec<Task> = open
        .into_iter()
        .filter_map(|t| {
            let at = *done.get(t.crm_task_id.as_deref()?.strip_prefix(&prefix)?)?;
            Some(Task {
                status: "completed".into(),
                completed_at: Some(at),
                completed_by: Some(format!("crm:{}", cfg.name)),
                ..t
            })
        })
        .collect();
    if !closed.is_empty() {
        upsert_tasks(lake, &closed, run).await?;
    }
    Ok(closed.len())
}

/// Sends changed fields (and new tasks) to one CRM.
pub(crate) async fn write_back(
    lake: &Lake,
    ctx: &SessionContext,
    crm: &Crm,
    day: &Day,
    run: &mut RunContext,
) -> Result<CrmReport> {
    let cfg = &crm.config;
    let mut report = CrmReport {
        name: cfg.name.clone(),
        ..Default::default()
    };
    let id_col = cfg.object_id.clone().unwrap_or_else(|| "account_id".into());
    let cols = day.columns();
    for (field, col) in &cfg.fields {
        if !cols.contains(col) {
            return Err(Error::Config(format!(
                "[[actions.crm]] '{}': field {field} = '{col}': the day's table has no such column (columns: {})",
                cfg.name,
                cols.join(", ")
            )));
        }
    }
    if !cols.contains(&id_col) {
        return Err(Error::Config(format!(
            "[[actions.crm]] '{}': object_id = '{id_col}': the day's table has no such column",
            cfg.name
        )));
    }
    // what the CRM holds already (as cslake last sent it)
    let mut synced: HashMap<String, String> = HashMap::new();
    for b in read(
        ctx,
        "actions.crm_sync",
        &format!("crm = '{}'", cfg.name.replace('\'', "''")),
    )
    .await?
    {
        let (k, v) = (strings(&b, "sync_key")?, strings(&b, "value")?);
        for i in 0..b.num_rows() {
            if let (Some(k), Some(v)) = (&k[i], &v[i]) {
                synced.insert(k.clone(), v.clone());
            }
        }
    }
    let mut updates = Vec::new();
    let mut pending_state: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut object_of: HashMap<String, String> = HashMap::new();
    for (i, account) in day.ids.iter().enumerate() {
        let Some(object_id) = day.text(&id_col, i) else {
            continue;
        };
        object_of.insert(account.clone(), object_id.clone());
        let mut fields = BTreeMap::new();
        for (field, col) in &cfg.fields {
            let text = day.text(col, i).unwrap_or_default();
            let key = format!("{}|{object_id}|{field}", cfg.name);
            if synced.get(&key) == Some(&text) {
                continue;
            }
            let value = match day.num(col, i) {
                Some(v) => json!(v),
                None if text.is_empty() => Value::Null,
                None => json!(text),
            };
            fields.insert(field.clone(), value);
            pending_state
                .entry(object_id.clone())
                .or_default()
                .push((key, text));
        }
        if fields.is_empty() {
            report.unchanged += 1;
        } else {
            report.fields_sent += fields.len();
            updates.push(delivery(
                cfg,
                "record_update",
                &object_id,
                Some(account),
                day,
                json!(RecordUpdate {
                    object_id: object_id.clone(),
                    fields
                }),
            ));
        }
    }
    let outcomes = send(crm, &updates).await?;
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let mut objects = Vec::new();
    let mut failures = Vec::new();
    for (d, o) in updates.iter().zip(outcomes) {
        let object_id = &d.ref_id;
        match o {
            Outcome::Sent { .. } => {
                report.records_updated += 1;
                for (k, v) in pending_state.remove(object_id).unwrap_or_default() {
                    keys.push(k);
                    values.push(Some(v));
                    objects.push(Some(object_id.clone()));
                }
            }
            Outcome::Failed { error, .. } | Outcome::Unauthorized { error } => {
                report.failed += 1;
                failures.push((object_id.clone(), error));
            }
        }
    }
    if !keys.is_empty() {
        let n = keys.len();
        let b = sync_batch(&cfg.name, keys, objects, values, day.as_of, &run.run_id)?;
        let s = lake
            .target("actions", "crm_sync")
            .upsert(
                vec![b],
                &["sync_key"],
                &["value", "synced_on"],
                &["_run_id"],
                &run.run_id,
            )
            .await?;
        run.wrote("actions.crm_sync", n, s.version);
    }
    // tasks not yet in the CRM
    if cfg.push_tasks {
        let tasks = Task::read(
            &read(
                ctx,
                "actions.tasks",
                "crm_task_id IS NULL AND status IN ('open', 'overdue')",
            )
            .await?,
        )?;
        let todo: Vec<Delivery> = tasks
            .iter()
            .filter_map(|t| {
                let task = CrmTask {
                    task_id: t.task_id.clone(),
                    object_id: object_of.get(&t.account_id)?.clone(),
                    subject: t.title.clone(),
                    body: t.description.clone().unwrap_or_default(),
                    due_date: t.due_date,
                    priority: t.priority.clone(),
                };
                Some(delivery(
                    cfg,
                    "task",
                    &t.task_id,
                    Some(&t.account_id),
                    day,
                    json!(task),
                ))
            })
            .collect();
        let outcomes = send(crm, &todo).await?;
        let mut done = Vec::new();
        for (d, o) in todo.iter().zip(outcomes) {
            match o {
                Outcome::Sent { reference, .. } => {
                    if let Some(t) = tasks.iter().find(|t| t.task_id == d.ref_id) {
                        done.push(Task {
                            crm_task_id: Some(format!("{}:{}", cfg.name, reference.unwrap_or_default())),
                            ..t.clone()
                        });
                    }
                }
                Outcome::Failed { error, .. } | Outcome::Unauthorized { error } => {
                    failures.push((d.ref_id.clone(), error));
                }
            }
        }
        report.tasks_created = done.len();
        if !done.is_empty() {
            upsert_tasks(lake, &done, run).await?;
        }
    }
    if !failures.is_empty() {
        // kept with the reason; the next run sends them again (their state was not recorded)
        let n = failures.len();
        let b = Cols::default()
            .key(
                "delivery_id",
                failures
                    .iter()
                    .map(|(id, _)| format!("crm:{}:{id}:{}", cfg.name, day.as_of))
                    .collect(),
            )
            .str("kind", vec![Some("crm".to_string()); n])
            .str(
                "ref_id",
                failures.iter().map(|(id, _)| Some(id.clone())).collect(),
            )
            .str("channel", vec![Some(cfg.name.clone()); n])
            .str("recipients", vec![None; n])
            .str("subject", vec![None; n])
            .str("body", vec![None; n])
            .str("payload", vec![None; n])
            .str("error", failures.iter().map(|(_, e)| Some(e.clone())).collect())
            .int("attempts", vec![Some(1); n])
            .date("as_of_date", vec![Some(day.as_of); n])
            .ts("dead_at", vec![Some(chrono::Utc::now().timestamp_micros()); n])
            .key("_run_id", vec![run.run_id.clone(); n])
            .batch()?;
        insert_new(lake, "dead_letters", b, "delivery_id", run).await?;
        tracing::warn!(
            crm = cfg.name.as_str(),
            failed = n,
            first = failures[0].1.as_str(),
            "CRM records not updated"
        );
    }
    Ok(report)
}

/// A record update or task for the CRM, keyed like its dead letter would be.
fn delivery(
    cfg: &CrmConfig,
    kind: &str,
    id: &str,
    account: Option<&String>,
    day: &Day,
    data: Value,
) -> Delivery {
    Delivery {
        key: format!("crm:{}:{id}:{}", cfg.name, day.as_of),
        kind: kind.into(),
        ref_id: id.to_string(),
        account_id: account.cloned(),
        channel: cfg.name.clone(),
        to: Vec::new(),
        subject: String::new(),
        text: String::new(),
        data,
        attachments: Vec::new(),
    }
}

/// Sends through the CRM channel; credentials it rejects stop the run (nothing else can pass).
async fn send(crm: &Crm, deliveries: &[Delivery]) -> Result<Vec<Outcome>> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let outcomes = crm.send(deliveries).await;
    if let Some(Outcome::Unauthorized { error }) = outcomes
        .iter()
        .find(|o| matches!(o, Outcome::Unauthorized { .. }))
    {
        return Err(Error::Credentials {
            name: format!("crm {}", crm.config.name),
            message: error.clone(),
        });
    }
    Ok(outcomes)
}

/// `actions.crm_sync` rows: the value last written to each CRM field.
pub(crate) fn sync_batch(
    crm: &str,
    keys: Vec<String>,
    objects: Vec<Option<String>>,
    values: Vec<Option<String>>,
    synced_on: chrono::NaiveDate,
    run_id: &str,
) -> Result<deltalake::arrow::array::RecordBatch> {
    let n = keys.len();
    Cols::default()
        .key("sync_key", keys)
        .key("crm", vec![crm.to_string(); n])
        .str("object_id", objects)
        .str("value", values)
        .date("synced_on", vec![Some(synced_on); n])
        .key("_run_id", vec![run_id.to_string(); n])
        .batch()
}
