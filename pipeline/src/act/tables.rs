//! The `actions/` tables as Rust rows: reading them from the lake and writing them back.
//! Column names are a public contract (BI dashboards read them): see docs/actions.md.

use std::sync::Arc;

use chrono::NaiveDate;
use deltalake::arrow::array::{
    ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{epoch_days, floats, has_table, sql, strings};
use crate::{Lake, Result, RunContext};

/// Collects columns of one batch.
#[derive(Default)]
pub struct Cols {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Cols {
    pub fn str(mut self, name: &str, v: Vec<Option<String>>) -> Self {
        self.fields.push(Field::new(name, DataType::Utf8, true));
        self.arrays.push(Arc::new(StringArray::from(v)));
        self
    }
    pub fn key(mut self, name: &str, v: Vec<String>) -> Self {
        self.fields.push(Field::new(name, DataType::Utf8, false));
        self.arrays.push(Arc::new(StringArray::from(v)));
        self
    }
    pub fn date(mut self, name: &str, v: Vec<Option<NaiveDate>>) -> Self {
        self.fields.push(Field::new(name, DataType::Date32, true));
        self.arrays.push(Arc::new(Date32Array::from(
            v.into_iter().map(|d| d.map(epoch_days)).collect::<Vec<_>>(),
        )));
        self
    }
    pub fn int(mut self, name: &str, v: Vec<Option<i64>>) -> Self {
        self.fields.push(Field::new(name, DataType::Int64, true));
        self.arrays.push(Arc::new(Int64Array::from(v)));
        self
    }
    pub fn float(mut self, name: &str, v: Vec<Option<f64>>) -> Self {
        self.fields.push(Field::new(name, DataType::Float64, true));
        self.arrays.push(Arc::new(Float64Array::from(v)));
        self
    }
    /// Microseconds since the epoch, UTC.
    pub fn ts(mut self, name: &str, v: Vec<Option<i64>>) -> Self {
        self.fields.push(Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ));
        self.arrays
            .push(Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")));
        self
    }
    pub fn batch(self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(self.fields)),
            self.arrays,
        )?)
    }
}

/// Column readers over one batch.
pub struct Rows<'a>(pub &'a RecordBatch);

impl Rows<'_> {
    pub fn s(&self, c: &str) -> Result<Vec<Option<String>>> {
        strings(self.0, c)
    }
    pub fn d(&self, c: &str) -> Result<Vec<Option<NaiveDate>>> {
        Ok(strings(self.0, c)?
            .into_iter()
            .map(|v| v.and_then(|v| NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok()))
            .collect())
    }
    pub fn i(&self, c: &str) -> Result<Vec<Option<i64>>> {
        let Some(col) = self.0.column_by_name(c) else {
            return Ok(vec![None; self.0.num_rows()]);
        };
        let col = cast(col, &DataType::Int64)?;
        let a = col.as_primitive::<Int64Type>();
        Ok((0..a.len())
            .map(|i| (!deltalake::arrow::array::Array::is_null(a, i)).then(|| a.value(i)))
            .collect())
    }
    pub fn f(&self, c: &str) -> Result<Vec<Option<f64>>> {
        Ok(floats(self.0, c)?
            .into_iter()
            .map(|v| v.is_finite().then_some(v))
            .collect())
    }
}

/// Reads a whole table (empty when it does not exist yet).
pub async fn read(ctx: &SessionContext, table: &str, filter: &str) -> Result<Vec<RecordBatch>> {
    if !has_table(ctx, table) {
        return Ok(vec![]);
    }
    let where_ = if filter.is_empty() {
        String::new()
    } else {
        format!(" WHERE {filter}")
    };
    sql(ctx, &format!("SELECT * FROM {table}{where_}")).await
}

/// One account's passage through one playbook (`actions.playbook_runs`, a snapshot per day).
#[derive(Debug, Clone, PartialEq)]
pub struct Enrolment {
    pub enrollment_id: String,
    pub playbook: String,
    pub playbook_version: i64,
    pub category: Option<String>,
    pub dedupe_group: Option<String>,
    pub account_id: String,
    pub enrolled_on: NaiveDate,
    /// active, completed, exited, cancelled
    pub status: String,
    pub steps_done: i64,
    pub steps_total: i64,
    pub last_step_on: Option<NaiveDate>,
    pub ended_on: Option<NaiveDate>,
    pub end_reason: Option<String>,
    pub trigger_reason: String,
    pub mrr_at_enrolment: Option<f64>,
    pub risk_at_enrolment: Option<f64>,
    pub health_at_enrolment: Option<f64>,
    pub renewal_date: Option<NaiveDate>,
}

impl Enrolment {
    pub fn read(batches: &[RecordBatch]) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for b in batches {
            let r = Rows(b);
            let (id, pb, ver, cat, grp, acc) = (
                r.s("enrollment_id")?,
                r.s("playbook")?,
                r.i("playbook_version")?,
                r.s("category")?,
                r.s("dedupe_group")?,
                r.s("account_id")?,
            );
            let (on, st, done, total, last, ended, why, trig) = (
                r.d("enrolled_on")?,
                r.s("status")?,
                r.i("steps_done")?,
                r.i("steps_total")?,
                r.d("last_step_on")?,
                r.d("ended_on")?,
                r.s("end_reason")?,
                r.s("trigger_reason")?,
            );
            let (mrr, risk, health, renewal) = (
                r.f("mrr_at_enrolment")?,
                r.f("risk_at_enrolment")?,
                r.f("health_at_enrolment")?,
                r.d("renewal_date")?,
            );
            for i in 0..b.num_rows() {
                out.push(Self {
                    enrollment_id: id[i].clone().unwrap_or_default(),
                    playbook: pb[i].clone().unwrap_or_default(),
                    playbook_version: ver[i].unwrap_or(0),
                    category: cat[i].clone(),
                    dedupe_group: grp[i].clone(),
                    account_id: acc[i].clone().unwrap_or_default(),
                    enrolled_on: on[i].unwrap_or_default(),
                    status: st[i].clone().unwrap_or_default(),
                    steps_done: done[i].unwrap_or(0),
                    steps_total: total[i].unwrap_or(0),
                    last_step_on: last[i],
                    ended_on: ended[i],
                    end_reason: why[i].clone(),
                    trigger_reason: trig[i].clone().unwrap_or_default(),
                    mrr_at_enrolment: mrr[i],
                    risk_at_enrolment: risk[i],
                    health_at_enrolment: health[i],
                    renewal_date: renewal[i],
                });
            }
        }
        out.sort_by(|a, b| a.enrollment_id.cmp(&b.enrollment_id));
        Ok(out)
    }

    pub fn batch(rows: &[Self], as_of: NaiveDate, run_id: &str) -> Result<RecordBatch> {
        let n = rows.len();
        let s = |f: fn(&Self) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        Cols::default()
            .key(
                "enrollment_id",
                rows.iter().map(|r| r.enrollment_id.clone()).collect(),
            )
            .key("playbook", rows.iter().map(|r| r.playbook.clone()).collect())
            .int(
                "playbook_version",
                rows.iter().map(|r| Some(r.playbook_version)).collect(),
            )
            .str("category", s(|r| r.category.clone()))
            .str("dedupe_group", s(|r| r.dedupe_group.clone()))
            .key("account_id", rows.iter().map(|r| r.account_id.clone()).collect())
            .date("enrolled_on", rows.iter().map(|r| Some(r.enrolled_on)).collect())
            .str("status", s(|r| Some(r.status.clone())))
            .int("steps_done", rows.iter().map(|r| Some(r.steps_done)).collect())
            .int("steps_total", rows.iter().map(|r| Some(r.steps_total)).collect())
            .date("last_step_on", rows.iter().map(|r| r.last_step_on).collect())
            .date("ended_on", rows.iter().map(|r| r.ended_on).collect())
            .str("end_reason", s(|r| r.end_reason.clone()))
            .str("trigger_reason", s(|r| Some(r.trigger_reason.clone())))
            .float(
                "mrr_at_enrolment",
                rows.iter().map(|r| r.mrr_at_enrolment).collect(),
            )
            .float(
                "risk_at_enrolment",
                rows.iter().map(|r| r.risk_at_enrolment).collect(),
            )
            .float(
                "health_at_enrolment",
                rows.iter().map(|r| r.health_at_enrolment).collect(),
            )
            .date("renewal_date", rows.iter().map(|r| r.renewal_date).collect())
            .date("as_of_date", vec![Some(as_of); n])
            .key("_run_id", vec![run_id.to_string(); n])
            .batch()
    }
}

/// `actions.tasks`: one row per task, updated in place (status, completion).
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: String,
    pub enrollment_id: Option<String>,
    pub playbook: Option<String>,
    pub account_id: String,
    pub title: String,
    pub description: Option<String>,
    pub assignee: Option<String>,
    pub assignee_email: Option<String>,
    pub team: Option<String>,
    pub priority: String,
    pub created_on: NaiveDate,
    pub due_date: NaiveDate,
    /// open, overdue, completed, cancelled
    pub status: String,
    pub completed_at: Option<i64>,
    pub completed_by: Option<String>,
    pub crm_task_id: Option<String>,
}

impl Task {
    pub fn is_open(&self) -> bool {
        self.status == "open" || self.status == "overdue"
    }

    pub fn read(batches: &[RecordBatch]) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for b in batches {
            let r = Rows(b);
            let (id, en, pb, acc, title, desc, who, email, team) = (
                r.s("task_id")?,
                r.s("enrollment_id")?,
                r.s("playbook")?,
                r.s("account_id")?,
                r.s("title")?,
                r.s("description")?,
                r.s("assignee")?,
                r.s("assignee_email")?,
                r.s("team")?,
            );
            let (pr, created, due, st, at, by, crm) = (
                r.s("priority")?,
                r.d("created_on")?,
                r.d("due_date")?,
                r.s("status")?,
                r.i("completed_at")?,
                r.s("completed_by")?,
                r.s("crm_task_id")?,
            );
            for i in 0..b.num_rows() {
                out.push(Self {
                    task_id: id[i].clone().unwrap_or_default(),
                    enrollment_id: en[i].clone(),
                    playbook: pb[i].clone(),
                    account_id: acc[i].clone().unwrap_or_default(),
                    title: title[i].clone().unwrap_or_default(),
                    description: desc[i].clone(),
                    assignee: who[i].clone(),
                    assignee_email: email[i].clone(),
                    team: team[i].clone(),
                    priority: pr[i].clone().unwrap_or_default(),
                    created_on: created[i].unwrap_or_default(),
                    due_date: due[i].unwrap_or_default(),
                    status: st[i].clone().unwrap_or_default(),
                    completed_at: at[i],
                    completed_by: by[i].clone(),
                    crm_task_id: crm[i].clone(),
                });
            }
        }
        Ok(out)
    }

    pub fn batch(rows: &[Self], run_id: &str) -> Result<RecordBatch> {
        let n = rows.len();
        let s = |f: fn(&Self) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        Cols::default()
            .key("task_id", rows.iter().map(|r| r.task_id.clone()).collect())
            .str("enrollment_id", s(|r| r.enrollment_id.clone()))
            .str("playbook", s(|r| r.playbook.clone()))
            .key("account_id", rows.iter().map(|r| r.account_id.clone()).collect())
            .str("title", s(|r| Some(r.title.clone())))
            .str("description", s(|r| r.description.clone()))
            .str("assignee", s(|r| r.assignee.clone()))
            .str("assignee_email", s(|r| r.assignee_email.clone()))
            .str("team", s(|r| r.team.clone()))
            .str("priority", s(|r| Some(r.priority.clone())))
            .date("created_on", rows.iter().map(|r| Some(r.created_on)).collect())
            .date("due_date", rows.iter().map(|r| Some(r.due_date)).collect())
            .str("status", s(|r| Some(r.status.clone())))
            .ts("completed_at", rows.iter().map(|r| r.completed_at).collect())
            .str("completed_by", s(|r| r.completed_by.clone()))
            .str("crm_task_id", s(|r| r.crm_task_id.clone()))
            .key("_run_id", vec![run_id.to_string(); n])
            .batch()
    }
}

/// `actions.alerts`: one row per alert, updated in place (acknowledgement, notifications).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub alert_id: String,
    pub enrollment_id: Option<String>,
    pub playbook: Option<String>,
    pub account_id: String,
    pub as_of_date: NaiveDate,
    pub priority: String,
    pub title: String,
    pub message: Option<String>,
    /// Resolved e-mail addresses, comma-separated (may be empty).
    pub recipients: String,
    /// open, acknowledged
    pub status: String,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub notified_count: i64,
    pub last_notified_on: Option<NaiveDate>,
}

impl Alert {
    pub fn read(batches: &[RecordBatch]) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for b in batches {
            let r = Rows(b);
            let (id, en, pb, acc, d, pr, title, msg) = (
                r.s("alert_id")?,
                r.s("enrollment_id")?,
                r.s("playbook")?,
                r.s("account_id")?,
                r.d("as_of_date")?,
                r.s("priority")?,
                r.s("title")?,
                r.s("message")?,
            );
            let (to, st, at, by, count, last) = (
                r.s("recipients")?,
                r.s("status")?,
                r.i("acknowledged_at")?,
                r.s("acknowledged_by")?,
                r.i("notified_count")?,
                r.d("last_notified_on")?,
            );
            for i in 0..b.num_rows() {
                out.push(Self {
                    alert_id: id[i].clone().unwrap_or_default(),
                    enrollment_id: en[i].clone(),
                    playbook: pb[i].clone(),
                    account_id: acc[i].clone().unwrap_or_default(),
                    as_of_date: d[i].unwrap_or_default(),
                    priority: pr[i].clone().unwrap_or_default(),
                    title: title[i].clone().unwrap_or_default(),
                    message: msg[i].clone(),
                    recipients: to[i].clone().unwrap_or_default(),
                    status: st[i].clone().unwrap_or_default(),
                    acknowledged_at: at[i],
                    acknowledged_by: by[i].clone(),
                    notified_count: count[i].unwrap_or(0),
                    last_notified_on: last[i],
                });
            }
        }
        Ok(out)
    }

    pub fn batch(rows: &[Self], run_id: &str) -> Result<RecordBatch> {
        let n = rows.len();
        let s = |f: fn(&Self) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        Cols::default()
            .key("alert_id", rows.iter().map(|r| r.alert_id.clone()).collect())
            .str("enrollment_id", s(|r| r.enrollment_id.clone()))
            .str("playbook", s(|r| r.playbook.clone()))
            .key("account_id", rows.iter().map(|r| r.account_id.clone()).collect())
            .date("as_of_date", rows.iter().map(|r| Some(r.as_of_date)).collect())
            .str("priority", s(|r| Some(r.priority.clone())))
            .str("title", s(|r| Some(r.title.clone())))
            .str("message", s(|r| r.message.clone()))
            .str("recipients", s(|r| Some(r.recipients.clone())))
            .str("status", s(|r| Some(r.status.clone())))
            .ts(
                "acknowledged_at",
                rows.iter().map(|r| r.acknowledged_at).collect(),
            )
            .str("acknowledged_by", s(|r| r.acknowledged_by.clone()))
            .int(
                "notified_count",
                rows.iter().map(|r| Some(r.notified_count)).collect(),
            )
            .date(
                "last_notified_on",
                rows.iter().map(|r| r.last_notified_on).collect(),
            )
            .key("_run_id", vec![run_id.to_string(); n])
            .batch()
    }
}

/// `actions.deliveries`: every message to a channel, by idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub delivery_id: String,
    pub kind: String,
    pub ref_id: String,
    pub account_id: Option<String>,
    pub channel: String,
    pub recipients: String,
    pub subject: String,
    pub body: String,
    /// The webhook `data` as JSON text.
    pub payload: String,
    pub as_of_date: NaiveDate,
    /// sent, failed (will be retried), dead (in actions.dead_letters)
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub response_status: Option<i64>,
}

impl DeliveryRow {
    pub fn read(batches: &[RecordBatch]) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for b in batches {
            let r = Rows(b);
            let (id, kind, rf, acc, ch, to, subj, body, payload) = (
                r.s("delivery_id")?,
                r.s("kind")?,
                r.s("ref_id")?,
                r.s("account_id")?,
                r.s("channel")?,
                r.s("recipients")?,
                r.s("subject")?,
                r.s("body")?,
                r.s("payload")?,
            );
            let (d, st, att, err, at, code) = (
                r.d("as_of_date")?,
                r.s("status")?,
                r.i("attempts")?,
                r.s("last_error")?,
                r.i("sent_at")?,
                r.i("response_status")?,
            );
            for i in 0..b.num_rows() {
                out.push(Self {
                    delivery_id: id[i].clone().unwrap_or_default(),
                    kind: kind[i].clone().unwrap_or_default(),
                    ref_id: rf[i].clone().unwrap_or_default(),
                    account_id: acc[i].clone(),
                    channel: ch[i].clone().unwrap_or_default(),
                    recipients: to[i].clone().unwrap_or_default(),
                    subject: subj[i].clone().unwrap_or_default(),
                    body: body[i].clone().unwrap_or_default(),
                    payload: payload[i].clone().unwrap_or_default(),
                    as_of_date: d[i].unwrap_or_default(),
                    status: st[i].clone().unwrap_or_default(),
                    attempts: att[i].unwrap_or(0),
                    last_error: err[i].clone(),
                    sent_at: at[i],
                    response_status: code[i],
                });
            }
        }
        Ok(out)
    }

    pub fn batch(rows: &[Self], run_id: &str) -> Result<RecordBatch> {
        let n = rows.len();
        let s = |f: fn(&Self) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        Cols::default()
            .key(
                "delivery_id",
                rows.iter().map(|r| r.delivery_id.clone()).collect(),
            )
            .str("kind", s(|r| Some(r.kind.clone())))
            .str("ref_id", s(|r| Some(r.ref_id.clone())))
            .str("account_id", s(|r| r.account_id.clone()))
            .str("channel", s(|r| Some(r.channel.clone())))
            .str("recipients", s(|r| Some(r.recipients.clone())))
            .str("subject", s(|r| Some(r.subject.clone())))
            .str("body", s(|r| Some(r.body.clone())))
            .str("payload", s(|r| Some(r.payload.clone())))
            .date("as_of_date", rows.iter().map(|r| Some(r.as_of_date)).collect())
            .str("status", s(|r| Some(r.status.clone())))
            .int("attempts", rows.iter().map(|r| Some(r.attempts)).collect())
            .str("last_error", s(|r| r.last_error.clone()))
            .ts("sent_at", rows.iter().map(|r| r.sent_at).collect())
            .int(
                "response_status",
                rows.iter().map(|r| r.response_status).collect(),
            )
            .key("_run_id", vec![run_id.to_string(); n])
            .batch()
    }
}

/// `actions.campaign_assignments`: which arm (or control) an account got, once per campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub assignment_id: String,
    pub campaign: String,
    pub campaign_version: i64,
    pub account_id: String,
    pub arm: String,
    pub bucket: i64,
    pub assigned_on: NaiveDate,
    pub enrollment_id: Option<String>,
    pub mrr_at_assignment: Option<f64>,
    pub engagement_at_assignment: Option<f64>,
}

impl Assignment {
    pub fn read(batches: &[RecordBatch]) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for b in batches {
            let r = Rows(b);
            let (id, c, v, acc, arm, bucket, on, en, mrr, eng) = (
                r.s("assignment_id")?,
                r.s("campaign")?,
                r.i("campaign_version")?,
                r.s("account_id")?,
                r.s("arm")?,
                r.i("bucket")?,
                r.d("assigned_on")?,
                r.s("enrollment_id")?,
                r.f("mrr_at_assignment")?,
                r.f("engagement_at_assignment")?,
            );
            for i in 0..b.num_rows() {
                out.push(Self {
                    assignment_id: id[i].clone().unwrap_or_default(),
                    campaign: c[i].clone().unwrap_or_default(),
                    campaign_version: v[i].unwrap_or(0),
                    account_id: acc[i].clone().unwrap_or_default(),
                    arm: arm[i].clone().unwrap_or_default(),
                    bucket: bucket[i].unwrap_or(0),
                    assigned_on: on[i].unwrap_or_default(),
                    enrollment_id: en[i].clone(),
                    mrr_at_assignment: mrr[i],
                    engagement_at_assignment: eng[i],
                });
            }
        }
        Ok(out)
    }

    pub fn batch(rows: &[Self], run_id: &str) -> Result<RecordBatch> {
        let n = rows.len();
        Cols::default()
            .key(
                "assignment_id",
                rows.iter().map(|r| r.assignment_id.clone()).collect(),
            )
            .key("campaign", rows.iter().map(|r| r.campaign.clone()).collect())
            .int(
                "campaign_version",
                rows.iter().map(|r| Some(r.campaign_version)).collect(),
            )
            .key("account_id", rows.iter().map(|r| r.account_id.clone()).collect())
            .key("arm", rows.iter().map(|r| r.arm.clone()).collect())
            .int("bucket", rows.iter().map(|r| Some(r.bucket)).collect())
            .date("assigned_on", rows.iter().map(|r| Some(r.assigned_on)).collect())
            .str(
                "enrollment_id",
                rows.iter().map(|r| r.enrollment_id.clone()).collect(),
            )
            .float(
                "mrr_at_assignment",
                rows.iter().map(|r| r.mrr_at_assignment).collect(),
            )
            .float(
                "engagement_at_assignment",
                rows.iter().map(|r| r.engagement_at_assignment).collect(),
            )
            .key("_run_id", vec![run_id.to_string(); n])
            .batch()
    }
}

/// The state of the last day before `as_of` (`actions.playbook_runs` is a snapshot per day).
pub(crate) async fn previous_state(ctx: &SessionContext, as_of: NaiveDate) -> Result<Vec<Enrolment>> {
    if !has_table(ctx, "actions.playbook_runs") {
        return Ok(vec![]);
    }
    let b = sql(
        ctx,
        &format!(
            "SELECT CAST(MAX(as_of_date) AS VARCHAR) AS d FROM actions.playbook_runs WHERE as_of_date < DATE '{as_of}'"
        ),
    )
    .await?;
    let Some(d) = b
        .first()
        .and_then(|b| strings(b, "d").ok())
        .and_then(|v| v.into_iter().next().flatten())
    else {
        return Ok(vec![]);
    };
    Enrolment::read(&read(ctx, "actions.playbook_runs", &format!("as_of_date = DATE '{d}'")).await?)
}

/// Adds the rows whose key the `actions.<table>` table does not hold yet.
pub(crate) async fn insert_new(
    lake: &Lake,
    table: &str,
    batch: RecordBatch,
    key: &str,
    run: &mut RunContext,
) -> Result<()> {
    let s = lake
        .target("actions", table)
        .insert_new(vec![batch], key, &run.run_id)
        .await?;
    run.wrote(&format!("actions.{table}"), s.inserted, s.version);
    Ok(())
}

pub(crate) async fn upsert_tasks(lake: &Lake, rows: &[Task], run: &mut RunContext) -> Result<()> {
    let s = lake
        .target("actions", "tasks")
        .upsert(
            vec![Task::batch(rows, &run.run_id)?],
            &["task_id"],
            &["status", "completed_at", "completed_by", "crm_task_id"],
            &["_run_id"],
            &run.run_id,
        )
        .await?;
    run.wrote("actions.tasks", s.inserted + s.updated, s.version);
    Ok(())
}

pub(crate) async fn upsert_alerts(lake: &Lake, rows: &[Alert], run: &mut RunContext) -> Result<()> {
    let s = lake
        .target("actions", "alerts")
        .upsert(
            vec![Alert::batch(rows, &run.run_id)?],
            &["alert_id"],
            &[
                "status",
                "acknowledged_at",
                "acknowledged_by",
                "notified_count",
                "last_notified_on",
            ],
            &["_run_id"],
            &run.run_id,
        )
        .await?;
    run.wrote("actions.alerts", s.inserted + s.updated, s.version);
    Ok(())
}
