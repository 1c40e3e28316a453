//! What the day sends, and sending it exactly once in effect: alerts, P1 re-notifications, digests,
//! campaign e-mails and `send_content` items become deliveries with idempotency keys; each is logged in
//! `actions.deliveries` in small batches (a crash repeats at most one batch, with the same keys),
//! failures are retried across runs and end in `actions.dead_letters`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{Duration as Days, NaiveDate};

use deltalake::datafusion::prelude::SessionContext;
use serde_json::{Value, json};

use crate::act::assignment::load_csms;
use crate::act::channels::{Delivery, Dispatcher, Outcome};
use crate::act::content::Pick;
use crate::act::day::Day;
use crate::act::library::Library;
use crate::act::plan::ContentSend;
use crate::act::report::DeliveryCounts;
use crate::act::tables::{Alert, Assignment, Cols, DeliveryRow, read};
use crate::act::tables::{insert_new, upsert_alerts};
use crate::lake::query::strings;
use crate::{Error, Lake, Result, RunContext, Settings};

/// Routes name configured channels and priorities; `send_content` steps name configured channels.
pub(crate) fn check_routes(settings: &Settings, lib: &Library) -> Result<()> {
    let a = &settings.file.actions;
    for p in &lib.playbooks {
        for (k, s) in p.steps.iter().enumerate() {
            if let Some(c) = &s.channel
                && !a.channels.iter().any(|x| &x.name == c)
            {
                return Err(Error::Config(format!(
                    "{}: playbook '{}': step {}: channel '{c}' is not defined in [[actions.channels]]",
                    p.origin,
                    p.name,
                    k + 1
                )));
            }
        }
    }
    for (k, r) in a.routes.iter().enumerate() {
        for c in &r.channels {
            if !a.channels.iter().any(|x| &x.name == c) {
                return Err(Error::Config(format!(
                    "[[actions.routes]] #{}: channel '{c}' is not defined in [[actions.channels]]",
                    k + 1
                )));
            }
        }
        for p in &r.priorities {
            if !crate::act::library::ALERT_PRIORITIES.contains(&p.as_str()) {
                return Err(Error::Config(format!(
                    "[[actions.routes]] #{}: priority '{p}': expected P1, P2, P3 or P4",
                    k + 1
                )));
            }
        }
    }
    Ok(())
}

/// An e-mail address as it can be sent to: decrypted when `[pii]` encrypts it. A pseudonym
/// cannot be turned back into an address: it is dropped (the delivery then fails as "no
/// recipient") rather than mailed to a made-up address.
fn reveal(pii: Option<&crate::lake::pii::Protector>, addr: &str) -> Option<String> {
    match pii {
        Some(p) => {
            let clear = p.reveal(addr);
            (!crate::lake::pii::Protector::is_protected(&clear)).then_some(clear)
        }
        None => Some(addr.to_string()),
    }
}

/// Every delivery the day calls for.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deliveries_for(
    settings: &Settings,
    lib: &Library,
    dispatcher: &Dispatcher,
    day: &Day,
    ctx: &SessionContext,
    alerts: &[Alert],
    assignments: &[Assignment],
    content: &[(&ContentSend, &[Pick])],
    pii: Option<&crate::lake::pii::Protector>,
) -> Result<Vec<Delivery>> {
    let a = &settings.file.actions;
    let as_of = day.as_of;
    let mut out = Vec::new();
    let segment = |acc: &str| day.row(acc).and_then(|i| day.text("segment", i));
    let name = |acc: &str| {
        day.row(acc)
            .and_then(|i| day.text("name", i))
            .unwrap_or_else(|| acc.to_string())
    };
    let routes_for = |al: &Alert| -> Vec<(&String, bool)> {
        let mut chans: Vec<(&String, bool)> = Vec::new();
        for r in &a.routes {
            let ok = (r.priorities.is_empty() || r.priorities.contains(&al.priority))
                && (r.playbooks.is_empty() || al.playbook.as_ref().is_some_and(|p| r.playbooks.contains(p)))
                && (r.segments.is_empty()
                    || segment(&al.account_id).is_some_and(|s| r.segments.contains(&s)));
            if ok {
                for c in &r.channels {
                    if !chans.iter().any(|(x, d)| *x == c && *d == r.digest) {
                        chans.push((c, r.digest));
                    }
                }
            }
        }
        chans
    };
    let d = &a.delivery;
    let mut digests: BTreeMap<(String, String), Vec<&Alert>> = BTreeMap::new();
    for al in alerts {
        let renotify = al.priority == "P1"
            && al.status == "open"
            && al.as_of_date < as_of
            && al.notified_count >= 1
            && al.notified_count <= d.renotify_max
            && al
                .last_notified_on
                .is_some_and(|l| l + Days::days(d.renotify_p1_after_days) <= as_of);
        if al.as_of_date != as_of && !renotify {
            continue;
        }
        let to: Vec<String> = al
            .recipients
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|s| reveal(pii, s))
            .collect();
        for (channel, digest) in routes_for(al) {
            if digest {
                if renotify {
                    continue;
                }
                if dispatcher.is_email(channel) {
                    for r in &to {
                        digests.entry((channel.clone(), r.clone())).or_default().push(al);
                    }
                } else {
                    digests
                        .entry((channel.clone(), String::new()))
                        .or_default()
                        .push(al);
                }
                continue;
            }
            let (key, kind, subject) = if renotify {
                (
                    format!("renotify:{}:{channel}:{as_of}", al.alert_id),
                    "renotify",
                    format!("[{} reminder, not acknowledged] {}", al.priority, al.title),
                )
            } else {
                (
                    format!("alert:{}:{channel}", al.alert_id),
                    "alert",
                    format!("[{}] {}", al.priority, al.title),
                )
            };
            out.push(Delivery {
                key,
                kind: kind.into(),
                ref_id: al.alert_id.clone(),
                account_id: Some(al.account_id.clone()),
                channel: channel.clone(),
                to: if dispatcher.is_email(channel) { to.clone() } else { vec![] },
                subject,
                text: format!(
                    "{}\n\nAccount: {} ({})\nPlaybook: {}\nAcknowledge with: cslake alerts ack {}",
                    al.message.clone().unwrap_or_default(),
                    name(&al.account_id),
                    al.account_id,
                    al.playbook.clone().unwrap_or_default(),
                    al.alert_id
                ),
                data: json!({
                    "alert_id": al.alert_id, "priority": al.priority, "title": al.title, "message": al.message,
                    "account_id": al.account_id, "account_name": name(&al.account_id), "playbook": al.playbook,
                    "enrollment_id": al.enrollment_id, "as_of_date": al.as_of_date.to_string(),
                    "notified_before": al.notified_count,
                }),
                attachments: Vec::new(),
            });
        }
    }
    for ((channel, recipient), list) in digests {
        let lines: Vec<String> = list
            .iter()
            .map(|al| {
                format!(
                    "- [{}] {} ({}) — {}",
                    al.priority, al.title, al.account_id, al.alert_id
                )
            })
            .collect();
        out.push(Delivery {
            key: format!("digest:{channel}:{recipient}:{as_of}"),
            kind: "digest".into(),
            ref_id: format!("digest:{as_of}"),
            account_id: None,
            channel: channel.clone(),
            to: if recipient.is_empty() { vec![] } else { vec![recipient.clone()] },
            subject: format!("cslake digest for {as_of}: {} alert(s)", list.len()),
            text: lines.join("\n"),
            data: json!({"as_of_date": as_of.to_string(), "alerts": list.iter().map(|al| json!({
                "alert_id": al.alert_id, "priority": al.priority, "title": al.title, "account_id": al.account_id,
                "playbook": al.playbook})).collect::<Vec<_>>()}),
            attachments: Vec::new(),
        });
    }
    // campaign e-mails for today's assignments to a treated arm
    let email_channels: Vec<&String> = a
        .channels
        .iter()
        .filter(|c| c.kind == "email")
        .map(|c| &c.name)
        .collect();
    let mut contacts: HashMap<String, Vec<String>> = HashMap::new();
    if lib.campaigns.iter().any(|c| c.to == "contacts") || content.iter().any(|(s, _)| s.to_contacts) {
        for b in read(ctx, "core.contacts", "email IS NOT NULL").await? {
            let (acc, email) = (strings(&b, "account_id")?, strings(&b, "email")?);
            for i in 0..b.num_rows() {
                if let (Some(a), Some(e)) = (&acc[i], &email[i]) {
                    contacts.entry(a.clone()).or_default().extend(reveal(pii, e));
                }
            }
        }
    }
    let csm_email = load_csms(ctx).await?;
    for asg in assignments
        .iter()
        .filter(|x| x.assigned_on == as_of && x.arm != "control")
    {
        let Some(c) = lib.campaign(&asg.campaign) else {
            continue;
        };
        let Some(arm) = c.arms.iter().find(|x| x.name == asg.arm) else {
            continue;
        };
        let Some(channel) = c.channel.as_ref().or(email_channels.first().copied()) else {
            tracing::warn!(
                campaign = c.name.as_str(),
                "no e-mail channel: campaign e-mails are not sent (assignments are recorded)"
            );
            continue;
        };
        let Some(i) = day.row(&asg.account_id) else {
            continue;
        };
        let to: Vec<String> = if c.to == "contacts" {
            contacts.get(&asg.account_id).cloned().unwrap_or_default()
        } else {
            day.text("csm_id", i)
                .and_then(|id| csm_email.get(&id).and_then(|c| c.email.clone()))
                .and_then(|e| reveal(pii, &e))
                .map(|e| vec![e])
                .unwrap_or_default()
        };
        out.push(Delivery {
            key: format!("campaign:{}", asg.assignment_id),
            kind: "campaign".into(),
            ref_id: asg.assignment_id.clone(),
            account_id: Some(asg.account_id.clone()),
            channel: channel.clone(),
            to,
            subject: day.fill(&arm.subject, i),
            text: day.fill(&arm.body, i),
            data: json!({"campaign": c.name, "version": c.version, "arm": asg.arm, "account_id": asg.account_id}),
            attachments: Vec::new(),
        });
    }
    // the content of today's send_content steps (steps with nothing left to send send nothing)
    for (s, items) in content.iter().filter(|(_, items)| !items.is_empty()) {
        let Some(channel) = s.channel.as_ref().or(email_channels.first().copied()) else {
            tracing::warn!(
                playbook = s.playbook.as_str(),
                "no e-mail channel: send_content steps send nothing (add one, or channel = NAME)"
            );
            continue;
        };
        let mut to: Vec<String> = Vec::new();
        if dispatcher.is_email(channel) {
            if s.to_contacts {
                to.extend(contacts.get(&s.account_id).cloned().unwrap_or_default());
            }
            to.extend(s.to.iter().filter_map(|a| reveal(pii, a)));
            to.dedup();
        }
        // customers see the items; the CSM (and webhooks, in `data`) also see why each was picked
        let lines: Vec<String> = items
            .iter()
            .enumerate()
            .map(|(n, p)| {
                let why = if s.to_contacts {
                    String::new()
                } else {
                    format!("\n   Why: {}", p.reason)
                };
                format!(
                    "{}. {}{}\n   {}{why}",
                    n + 1,
                    p.title.as_deref().unwrap_or(&p.content_id),
                    p.kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default(),
                    p.url.as_deref().unwrap_or("(no link in the catalogue)"),
                )
            })
            .collect();
        let intro = s.intro.clone().unwrap_or_else(|| {
            format!(
                "Hello,\n\nA few resources picked for {}, from how your team uses the product:",
                name(&s.account_id)
            )
        });
        out.push(Delivery {
            key: s.key.clone(),
            kind: "content".into(),
            ref_id: s.enrollment_id.clone(),
            account_id: Some(s.account_id.clone()),
            channel: channel.clone(),
            to,
            subject: s.subject.clone(),
            text: format!("{intro}\n\n{}", lines.join("\n")),
            data: json!({
                "account_id": s.account_id, "account_name": name(&s.account_id), "playbook": s.playbook,
                "enrollment_id": s.enrollment_id, "as_of_date": as_of.to_string(), "items": items,
            }),
            attachments: Vec::new(),
        });
    }
    Ok(out)
}

/// Sends what has not been sent, logging each result in `actions.deliveries` in small
/// batches (so a crash repeats at most one batch, and receivers see the same idempotency key).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn dispatch(
    lake: &Lake,
    settings: &Settings,
    dispatcher: &Dispatcher,
    wanted: Vec<Delivery>,
    logged: Vec<DeliveryRow>,
    alerts: &[Alert],
    as_of: NaiveDate,
    run: &mut RunContext,
) -> Result<DeliveryCounts> {
    let cfg = &settings.file.actions.delivery;
    let mut counts = DeliveryCounts::default();
    let by_key: HashMap<&str, &DeliveryRow> = logged.iter().map(|d| (d.delivery_id.as_str(), d)).collect();
    let mut pending: Vec<DeliveryRow> = Vec::new();
    let mut seen = HashSet::new();
    for d in wanted {
        if !seen.insert(d.key.clone()) {
            continue;
        }
        match by_key.get(d.key.as_str()) {
            Some(row) if row.status == "sent" || row.status == "dead" => counts.already_sent += 1,
            Some(row) => pending.push((*row).clone()),
            None => pending.push(DeliveryRow {
                delivery_id: d.key,
                kind: d.kind,
                ref_id: d.ref_id,
                account_id: d.account_id,
                channel: d.channel,
                recipients: d.to.join(","),
                subject: d.subject,
                body: d.text,
                payload: d.data.to_string(),
                as_of_date: as_of,
                status: "pending".into(),
                attempts: 0,
                last_error: None,
                sent_at: None,
                response_status: None,
            }),
        }
    }
    // earlier failures are retried
    for row in logged.iter().filter(|r| r.status == "failed") {
        if seen.insert(row.delivery_id.clone()) {
            pending.push(row.clone());
        }
    }
    for (n, chunk) in pending.chunks_mut(20).enumerate() {
        let mut dead = Vec::new();
        for row in chunk.iter_mut() {
            let d = Delivery {
                key: row.delivery_id.clone(),
                kind: row.kind.clone(),
                ref_id: row.ref_id.clone(),
                account_id: row.account_id.clone(),
                channel: row.channel.clone(),
                to: row
                    .recipients
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                subject: row.subject.clone(),
                text: row.body.clone(),
                data: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
                attachments: Vec::new(),
            };
            row.attempts += 1;
            let (error, transient) = match dispatcher.send(&d).await {
                Outcome::Sent { status, .. } => {
                    row.status = "sent".into();
                    row.sent_at = Some(chrono::Utc::now().timestamp_micros());
                    row.response_status = status.map(i64::from);
                    row.last_error = None;
                    counts.sent += 1;
                    continue;
                }
                Outcome::Failed { error, transient } => (error, transient),
                // a channel whose credentials are rejected refuses it for good
                Outcome::Unauthorized { error } => (error, false),
            };
            tracing::warn!(
                delivery = row.delivery_id.as_str(),
                channel = row.channel.as_str(),
                error = error.as_str(),
                "delivery failed"
            );
            row.last_error = Some(error);
            if !transient || row.attempts >= cfg.dead_after_attempts {
                row.status = "dead".into();
                counts.dead += 1;
                dead.push(row.clone());
            } else {
                row.status = "failed".into();
                counts.failed += 1;
            }
        }
        let s = lake
            .target("actions", "deliveries")
            .upsert(
                vec![DeliveryRow::batch(chunk, &run.run_id)?],
                &["delivery_id"],
                &["status", "attempts", "last_error", "sent_at", "response_status"],
                &["_run_id"],
                &run.run_id,
            )
            .await?;
        run.wrote("actions.deliveries", chunk.len(), s.version);
        if !dead.is_empty() {
            let rows: Vec<&DeliveryRow> = dead.iter().collect();
            let b = dead_letters_batch(&rows, as_of, &run.run_id)?;
            insert_new(lake, "dead_letters", b, "delivery_id", run).await?;
        }
        if n == 0 {
            crate::fault_point("act:mid-dispatch");
        }
    }
    // how often each alert went out, from the log itself (so a crash between sending and this
    // update is repaired by the next run)
    let mut all: HashMap<&str, &DeliveryRow> = logged.iter().map(|d| (d.delivery_id.as_str(), d)).collect();
    for row in &pending {
        all.insert(row.delivery_id.as_str(), row);
    }
    let mut days_sent: HashMap<&str, BTreeSet<NaiveDate>> = HashMap::new();
    for d in all.values() {
        if d.status == "sent" && (d.kind == "alert" || d.kind == "renotify") {
            days_sent
                .entry(d.ref_id.as_str())
                .or_default()
                .insert(d.as_of_date);
        }
    }
    let changed: Vec<Alert> = alerts
        .iter()
        .filter_map(|a| {
            let days = days_sent.get(a.alert_id.as_str())?;
            let (count, last) = (days.len() as i64, days.last().copied());
            (count != a.notified_count || last != a.last_notified_on).then(|| Alert {
                notified_count: count,
                last_notified_on: last,
                ..a.clone()
            })
        })
        .collect();
    if !changed.is_empty() {
        upsert_alerts(lake, &changed, run).await?;
    }
    Ok(counts)
}

/// `actions.dead_letters` rows: deliveries given up on, with their last error.
pub(crate) fn dead_letters_batch(
    rows: &[&DeliveryRow],
    as_of: NaiveDate,
    run_id: &str,
) -> Result<deltalake::arrow::array::RecordBatch> {
    Cols::default()
        .key(
            "delivery_id",
            rows.iter().map(|r| r.delivery_id.clone()).collect(),
        )
        .str("kind", rows.iter().map(|r| Some(r.kind.clone())).collect())
        .str("ref_id", rows.iter().map(|r| Some(r.ref_id.clone())).collect())
        .str("channel", rows.iter().map(|r| Some(r.channel.clone())).collect())
        .str(
            "recipients",
            rows.iter().map(|r| Some(r.recipients.clone())).collect(),
        )
        .str("subject", rows.iter().map(|r| Some(r.subject.clone())).collect())
        .str("body", rows.iter().map(|r| Some(r.body.clone())).collect())
        .str("payload", rows.iter().map(|r| Some(r.payload.clone())).collect())
        .str("error", rows.iter().map(|r| r.last_error.clone()).collect())
        .int("attempts", rows.iter().map(|r| Some(r.attempts)).collect())
        .date("as_of_date", vec![Some(as_of); rows.len()])
        .ts(
            "dead_at",
            vec![Some(chrono::Utc::now().timestamp_micros()); rows.len()],
        )
        .key("_run_id", vec![run_id.to_string(); rows.len()])
        .batch()
}
