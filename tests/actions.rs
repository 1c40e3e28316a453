//! `cslake act` end to end: a playbook library written here, a real SMTP server (aiosmtpd with
//! STARTTLS, installed by .ci/setup), a webhook and Slack receiver and a HubSpot fixture. What
//! each receives is asserted: payloads, signatures, retries after a 500 or a 451, nothing twice
//! on a re-run, escalations only while the task is open, exits, campaigns, CRM changes only.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::fixture::{Fixture, Req, Resp};
use crate::{cslake_env, query};

/// The SMTP server of tests/smtp_sink.py; stopped when dropped.
pub(crate) struct SmtpSink {
    child: Child,
    pub(crate) port: u16,
    dir: PathBuf,
}

impl SmtpSink {
    pub(crate) fn start(dir: &Path) -> Self {
        let python = std::env::var_os("CSLAKE_SMTP_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/cslake-smtp/bin/python")
            });
        assert!(
            python.exists(),
            "the SMTP test server is not installed: run .ci/setup (it puts aiosmtpd into ~/.cache/cslake-smtp)"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp_sink.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SMTP sink starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the sink prints its port");
        Self {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// Every message received: (envelope recipients, headers and body as text).
    pub(crate) fn messages(&self) -> Vec<(String, String)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                let to = text
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Envelope-To: "))
                    .unwrap_or_default()
                    .to_string();
                (to, text)
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

pub(crate) fn verify_signature(secret: &[u8], req: &Req) -> bool {
    let ts = &req.headers["x-cslake-timestamp"];
    let sig = req.headers["x-cslake-signature"].trim_start_matches("sha256=");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let bytes: Vec<u8> = (0..sig.len() / 2)
        .map(|i| u8::from_str_radix(&sig[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    ring::hmac::verify(&key, format!("{ts}.{}", req.body).as_bytes(), &bytes).is_ok()
}

const D1: &str = "2026-06-29";
const D2: &str = "2026-06-30";

#[test]
#[allow(clippy::too_many_lines)]
fn playbooks_act_deliver_once_and_track_outcomes() {
    let (_tmp, dir) = crate::workspace(150, 300, D2);
    let dir = dir.as_path();
    let smtp = SmtpSink::start(&dir.join("mail"));

    // the receivers: Slack, a signed webhook that fails once with 500, a webhook that refuses
    // (400), and HubSpot's batch endpoints
    let hook_calls = Arc::new(AtomicUsize::new(0));
    let calls = hook_calls.clone();
    // HubSpot remembers the tasks it was given; a task whose subject names `done_in_crm` is
    // reported COMPLETED (closed by its owner in HubSpot). Salesforce refuses one account.
    let crm_tasks: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let done_in_crm: Arc<Mutex<String>> = Arc::default();
    let sf_refused: Arc<Mutex<String>> = Arc::default();
    let (tasks_log, done_marker, refused) = (crm_tasks.clone(), done_in_crm.clone(), sf_refused.clone());
    let server = Fixture::start(move |r| match r.path.as_str() {
        "/slack" => Resp::status(200, "ok"),
        "/hook" => {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Resp::status(500, "{\"error\":\"busy\"}")
            } else {
                Resp::json(json!({"received": true}))
            }
        }
        "/broken" => Resp::status(400, "{\"error\":\"unknown field\"}"),
        "/crm/v3/objects/companies/batch/update" => {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            let results: Vec<Value> = body["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| json!({"id": i["id"], "properties": i["properties"]}))
                .collect();
            Resp::json(json!({"status": "COMPLETE", "results": results}))
        }
        "/crm/v3/objects/tasks/batch/create" => {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            let results: Vec<Value> = body["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let mut log = tasks_log.lock().unwrap();
                    let id = format!("9{:04}", log.len());
                    log.insert(
                        id.clone(),
                        i["properties"]["hs_task_subject"].as_str().unwrap().to_string(),
                    );
                    json!({"id": id, "properties": i["properties"]})
                })
                .collect();
            Resp::json(json!({"status": "COMPLETE", "results": results}))
        }
        "/crm/v3/objects/tasks/batch/read" => {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            let (log, marker) = (tasks_log.lock().unwrap(), done_marker.lock().unwrap());
            let results: Vec<Value> = body["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let id = i["id"].as_str().unwrap();
                    let done = !marker.is_empty() && log.get(id).is_some_and(|s| s.contains(marker.as_str()));
                    if done {
                        json!({"id": id, "properties": {"hs_task_status": "COMPLETED", "hs_task_completion_date": "2026-06-30T16:00:00.000Z"}})
                    } else {
                        json!({"id": id, "properties": {"hs_task_status": "NOT_STARTED"}})
                    }
                })
                .collect();
            Resp::json(json!({"status": "COMPLETE", "results": results}))
        }
        "/services/oauth2/token" => Resp::json(
            json!({"access_token": "sf-access-1", "instance_url": "ignored", "token_type": "Bearer"}),
        ),
        "/services/data/v60.0/composite/sobjects" => {
            assert_eq!(r.method, "PATCH");
            assert_eq!(r.headers["authorization"], "Bearer sf-access-1");
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["allOrNone"], false);
            let refused = refused.lock().unwrap();
            let results: Vec<Value> = body["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|rec| {
                    if rec["id"] == refused.as_str() {
                        json!({"id": rec["id"], "success": false, "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]})
                    } else {
                        json!({"id": rec["id"], "success": true, "errors": []})
                    }
                })
                .collect();
            Resp::json(json!(results))
        }
        _ => Resp::status(404, "{}"),
    });
    let secret = "whsec-test-0123456789";
    let env = [
        ("HOOK_URL", format!("{}/hook", server.url)),
        ("HOOK_SECRET", secret.to_string()),
        ("HUBSPOT_TOKEN", "hs-token-abcdef".to_string()),
        ("SF_ID", "sf-client".to_string()),
        ("SF_SECRET", "sf-secret-123456".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| cslake_env(dir, args, &env);

    // a day of data, features, a model and scores; then pick three accounts to act on
    run(&["ingest", "--source", "data"]).ok();
    run(&["backfill", "--from", D1, "--to", D1, "--features-only"]).ok();
    run(&["train", "--as-of", D1]).ok();
    run(&["score", "--as-of", D1]).ok();
    let picked: Vec<String> = query(
        dir,
        &format!(
            "SELECT account_id FROM risk_scores WHERE as_of_date = DATE '{D1}' ORDER BY account_id LIMIT 3"
        ),
    )[1..]
        .to_vec();
    let (a1, a2, a3) = (&picked[0], &picked[1], &picked[2]);
    *sf_refused.lock().unwrap() = a2.clone();
    let owners: BTreeMap<String, (String, String, String)> = query(
        dir,
        "SELECT a.account_id, a.csm_id, c.email, c.team FROM accounts a JOIN csms c ON c.csm_id = a.csm_id",
    )[1..]
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                (f[1].to_string(), f[2].to_string(), f[3].to_string()),
            )
        })
        .collect();
    let teams: BTreeSet<String> = owners.values().map(|o| o.2.clone()).collect();

    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(
        dir.join("playbooks/save.toml"),
        format!(
            r#"
name = "save"
category = "retention"
version = 2
owner = "cs-ops@example.com"
dedupe_group = "risk"
cooldown_days = 30

[trigger]
when = "account_id IN ('{a1}', '{a2}', '{a3}')"

[exit]
when = "account_id = '{a3}' AND risk_score >= 0"

[[steps]]
day = 0
action = "task"
title = "Call {{name}} (risk {{risk_score}})"
description = "{{top_reasons}}"
priority = "high"
due_days = 1
assign = "owner"

[[steps]]
day = 0
action = "alert"
priority = "P1"
title = "{{name}} needs a save call"
description = "Risk {{risk_score}}, band {{risk_band}}"
to = ["csm", "ops@example.com"]

[[steps]]
day = 0
action = "alert"
priority = "P4"
title = "FYI: {{name}} entered the save playbook"
to = ["csm"]

[[steps]]
day = 1
action = "alert"
only_if = "task_open"
priority = "P2"
title = "Escalation: the call to {{name}} is still open"
to = ["team_lead"]

[[steps]]
day = 1
action = "campaign"
campaign = "winback"
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("playbooks/winback.toml"),
        r#"
kind = "campaign"
name = "winback"
version = 1
holdout_pct = 50
to = "csm"
[[arms]]
name = "letter"
subject = "A note for {name}"
body = "Dear {name}, ..."
"#,
    )
    .unwrap();
    let leads: String = teams
        .iter()
        .enumerate()
        .map(|(k, t)| {
            // the lead of a2's team has a mailbox that refuses twice with 451 before accepting
            let lead = if *t == owners[a2].2 {
                "flaky-lead@example.com".to_string()
            } else {
                format!("lead{k}@example.com")
            };
            format!("[actions.teams.\"{t}\"]\nlead = \"{lead}\"\n")
        })
        .collect();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            r#"
[actions]
library = "playbooks"

[actions.smtp]
host = "localhost"
port = {port}
from = "cslake@example.com"
ca_file = "mail/smtp-ca.pem"

[actions.delivery]
backoff_ms = 20
max_retries = 3

[[actions.channels]]
name = "slack"
kind = "slack"
url = "{url}/slack"

[[actions.channels]]
name = "hook"
kind = "webhook"
url_env = "HOOK_URL"
secret_env = "HOOK_SECRET"

[[actions.channels]]
name = "broken"
kind = "webhook"
url = "{url}/broken"

[[actions.channels]]
name = "mail"
kind = "email"

[[actions.routes]]
priorities = ["P1"]
channels = ["slack", "hook", "mail"]

[[actions.routes]]
priorities = ["P2"]
channels = ["mail", "broken"]

[[actions.routes]]
priorities = ["P3", "P4"]
channels = ["mail"]
digest = true

{leads}
[[actions.crm]]
name = "hubspot"
kind = "hubspot"
base_url = "{url}"
push_tasks = true
[actions.crm.fields]
cslake_risk_score = "risk_score"
cslake_health_band = "health_band"

[[actions.crm]]
name = "salesforce"
kind = "salesforce"
base_url = "{url}"
auth = {{ type = "oauth2_client_credentials", token_url = "{url}/services/oauth2/token", client_id_env = "SF_ID", client_secret_env = "SF_SECRET" }}
[actions.crm.fields]
Churn_Risk__c = "risk_score"
Top_Reasons__c = "top_reasons"
"#,
            port = smtp.port,
            url = server.url,
        ),
    )
    .unwrap();

    // the library is valid; a dry run writes and sends nothing but says who and why
    let listed = run(&["playbooks", "list"]).ok();
    let summary = listed.summary();
    let names: Vec<&str> = summary["playbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["save", "winback"], "{}", listed.stdout);
    assert!(
        listed
            .stdout
            .contains("day 1: P2 alert to team_lead if task_open"),
        "{}",
        listed.stdout
    );
    let v = run(&["playbooks", "validate"]).ok();
    assert_eq!(v.summary()["checked"], 2, "{}", v.stdout);
    let dry = run(&["playbooks", "dry-run", "--as-of", D1]).ok();
    let day = &dry.summary()["actions"]["playbooks"][0];
    assert_eq!(day["enrolled"], 3, "{}", dry.stdout);
    assert!(
        day["enrolments"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("account_id = {a1}")),
        "{}",
        dry.stdout
    );
    assert!(server.requests().is_empty() && smtp.messages().is_empty());
    assert_eq!(
        query(dir, "SELECT COUNT(*) FROM ops.runs WHERE command = 'act'")[1],
        "0"
    );

    // day 1: three enrolments, three tasks for the owners, P1 alerts everywhere, a digest
    let out = run(&["act", "--as-of", D1]).ok();
    let s = out.summary()["actions"].clone();
    assert_eq!(
        (s["enrolled"].as_u64(), s["tasks_created"].as_u64()),
        (Some(3), Some(3)),
        "{}",
        out.stdout
    );
    assert_eq!(s["alerts_created"], 6);
    let tasks = query(
        dir,
        "SELECT account_id, assignee, status, crm_task_id FROM tasks ORDER BY account_id",
    );
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    for (line, a) in tasks[1..].iter().zip([a1, a2, a3]) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(
            (f[0], f[1], f[2]),
            (a.as_str(), owners[a].0.as_str(), "open"),
            "{line}"
        );
        assert!(f[3].starts_with("hubspot:9"), "task pushed to the CRM: {line}");
    }
    // Slack: one message per P1 alert
    let slack = server.to("/slack");
    assert_eq!(slack.len(), 3);
    assert!(
        slack
            .iter()
            .all(|r| r.body.contains("[P1]") && r.body.contains("needs a save call"))
    );
    // the signed webhook: the first attempt got a 500 and was retried; three distinct
    // deliveries, each signed, each with its idempotency key
    let hook = server.to("/hook");
    assert_eq!(hook.len(), 4, "3 alerts + 1 retry");
    let keys: BTreeSet<&str> = hook
        .iter()
        .map(|r| r.headers["idempotency-key"].as_str())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(hook.iter().all(|r| verify_signature(secret.as_bytes(), r)));
    assert!(!verify_signature(b"another secret", &hook[1]));
    let body: Value = serde_json::from_str(&hook[1].body).unwrap();
    assert_eq!(body["type"], "alert");
    assert_eq!(body["data"]["priority"], "P1");
    assert!(picked.contains(&body["account_id"].as_str().unwrap().to_string()));
    // e-mail over STARTTLS: one per P1 alert to the owner and ops, and one digest per owner
    let mail = smtp.messages();
    let p1: Vec<&(String, String)> = mail.iter().filter(|(_, t)| t.contains("Subject: [P1]")).collect();
    assert_eq!(p1.len(), 3, "{mail:?}");
    for (to, text) in &p1 {
        assert!(to.contains("ops@example.com"), "{to}");
        assert_eq!(header(text, "X-Tls"), Some("True"));
        assert!(
            header(text, "Message-ID").unwrap().starts_with("<alert.a-"),
            "{text}"
        );
    }
    let owner_mails: BTreeSet<&str> = [a1, a2, a3].iter().map(|a| owners[*a].1.as_str()).collect();
    let digests: Vec<&(String, String)> = mail
        .iter()
        .filter(|(_, t)| t.contains("Subject: cslake digest"))
        .collect();
    assert_eq!(digests.len(), owner_mails.len(), "one digest per recipient");
    assert!(digests.iter().all(|(_, t)| t.contains("[P4] FYI:")));
    // HubSpot: every scored account's two fields, and the three tasks
    let updates = server.to("/crm/v3/objects/companies/batch/update");
    let sent: usize = updates
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["inputs"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    let scored: usize = query(
        dir,
        &format!("SELECT COUNT(*) FROM risk_scores WHERE as_of_date = DATE '{D1}'"),
    )[1]
    .parse()
    .unwrap();
    assert_eq!(sent, scored);
    assert!(
        updates
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer hs-token-abcdef")
    );
    let first: Value = serde_json::from_str(&updates[0].body).unwrap();
    assert!(first["inputs"][0]["properties"]["cslake_risk_score"].is_string());
    assert_eq!(server.to("/crm/v3/objects/tasks/batch/create").len(), 1);
    // Salesforce: every account in one collection request (200 per request), one refused
    let sf = server.to("/services/data/v60.0/composite/sobjects");
    assert_eq!(sf.len(), 1);
    let sf_body: Value = serde_json::from_str(&sf[0].body).unwrap();
    assert_eq!(sf_body["records"].as_array().unwrap().len(), scored);
    assert_eq!(sf_body["records"][0]["attributes"]["type"], "Account");
    assert!(sf_body["records"][0]["Churn_Risk__c"].is_number());
    let s_sf = &s["crm"][1];
    assert_eq!(
        (s_sf["records_updated"].as_u64(), s_sf["failed"].as_u64()),
        (Some(scored as u64 - 1), Some(1)),
        "{s}"
    );
    let refused_row = query(dir, "SELECT ref_id, error FROM dead_letters WHERE kind = 'crm'");
    assert_eq!(
        refused_row[1..],
        [format!("{a2},ENTITY_IS_DELETED: entity is deleted")]
    );

    // the same day again: nothing is sent twice, nothing is created twice
    let sent = |s: &Fixture| {
        [
            "/slack",
            "/hook",
            "/broken",
            "/crm/v3/objects/companies",
            "/crm/v3/objects/tasks/batch/create",
        ]
        .iter()
        .map(|p| s.to(p).len())
        .sum::<usize>()
    };
    let (requests, mails) = (sent(&server), smtp.messages().len());
    let again = run(&["act", "--as-of", D1]).ok();
    let s = again.summary()["actions"].clone();
    assert_eq!(s["deliveries"]["sent"], 0, "{}", again.stdout);
    assert_eq!(s["deliveries"]["already_sent"], 3 * 3 + owner_mails.len());
    assert_eq!(s["crm"][0]["records_updated"], 0);
    assert_eq!(
        (
            s["crm"][1]["records_updated"].as_u64(),
            s["crm"][1]["failed"].as_u64()
        ),
        (Some(0), Some(1)),
        "only the refused record is sent again"
    );
    assert_eq!((sent(&server), smtp.messages().len()), (requests, mails));
    assert_eq!(query(dir, "SELECT COUNT(*) FROM tasks")[1], "3");
    assert_eq!(query(dir, "SELECT COUNT(*) FROM alerts")[1], "6");
    assert_eq!(run(&["tasks", "list"]).ok().summary()["rows"], 3);
    assert_eq!(run(&["alerts", "list"]).ok().summary()["rows"], 6);

    // the day as BI saw it, to compare with a re-run of it after later activity
    run(&["analytics", "--as-of", D1]).ok();
    let team_on_d1 = || {
        query(
            dir,
            &format!(
                "SELECT * EXCLUDE (_run_id) FROM team_performance WHERE as_of_date = DATE '{D1}' ORDER BY csm_id"
            ),
        )
    };
    let d1_as_seen = team_on_d1();
    let totals_d1 = format!(
        "SELECT SUM(tasks_open), SUM(tasks_completed), SUM(alerts), SUM(alerts_acknowledged) FROM team_performance WHERE as_of_date = DATE '{D1}'"
    );
    assert_eq!(query(dir, &totals_d1)[1], "3,0,6,0");

    // the owner of a1 calls and acknowledges its alert (the next morning; recorded later)
    let t1 = query(
        dir,
        &format!("SELECT task_id FROM tasks WHERE account_id = '{a1}'"),
    )[1]
    .clone();
    let future = run(&["tasks", "complete", &t1, "--at", "2099-01-01"]);
    assert_eq!(future.code, 2, "{}", future.stderr);
    assert!(
        future.stderr.contains("cannot be done in the future"),
        "{}",
        future.stderr
    );
    run(&[
        "tasks",
        "complete",
        &t1,
        "--by",
        "anna",
        "--at",
        "2026-06-30T09:15:00Z",
    ])
    .ok();
    let p1_a1 = query(
        dir,
        &format!("SELECT alert_id FROM alerts WHERE account_id = '{a1}' AND priority = 'P1'"),
    )[1]
    .clone();
    let early = run(&["alerts", "ack", &p1_a1, "--at", "2026-06-01"]);
    assert_eq!(early.code, 2, "{}", early.stderr);
    assert!(
        early.stderr.contains(&format!("was only raised on {D1}")),
        "{}",
        early.stderr
    );
    run(&["alerts", "ack", &p1_a1, "--at", "2026-06-30T09:20:00Z"]).ok();
    let bad = run(&["tasks", "complete", "t-nope"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("no task 't-nope'"), "{}", bad.stderr);

    // day 2: a3 exits (its alerts resolved); a2's task is still open, so
    // its team lead is alerted (the flaky mailbox accepts on the third try; the broken webhook
    // dead-letters) and its unacknowledged P1 alert is sent again; a1's escalation is skipped
    // and, its task done, a1 completes the playbook
    run(&["backfill", "--from", D2, "--to", D2]).ok();
    let mails_before = smtp.messages().len();
    // a3's owner closes the task in HubSpot: the next act brings the completion back
    let a3_name = query(
        dir,
        &format!("SELECT name FROM accounts WHERE account_id = '{a3}'"),
    )[1]
    .clone();
    *done_in_crm.lock().unwrap() = a3_name;
    // the first attempt dies right after its first batch of deliveries is logged; the next
    // run repeats the day without sending anything twice
    let mut crash_env = env.clone();
    crash_env.push(("CSLAKE_FAULT", "act:mid-dispatch"));
    let crashed = cslake_env(dir, &["act", "--as-of", D2], &crash_env);
    assert_ne!(crashed.code, 0, "the fault point stops the run");
    let out = run(&["act", "--as-of", D2]).ok();
    let s = out.summary()["actions"].clone();
    assert_eq!(
        (s["exited"].as_u64(), s["enrolled"].as_u64()),
        (Some(1), Some(0)),
        "{}",
        out.stdout
    );
    assert_eq!(
        query(
            dir,
            &format!("SELECT account_id, priority FROM alerts WHERE as_of_date = DATE '{D2}'")
        )[1..],
        [format!("{a2},P2")]
    );
    assert_eq!(
        query(
            dir,
            "SELECT account_id, status, completed_by FROM tasks ORDER BY account_id"
        )[1..],
        [
            format!("{a1},completed,anna"),
            format!("{a2},open,"),
            format!("{a3},completed,crm:hubspot")
        ]
    );
    let runs = query(
        dir,
        &format!(
            "SELECT account_id, status, steps_done, end_reason FROM playbook_runs WHERE as_of_date = DATE '{D2}' ORDER BY account_id"
        ),
    );
    assert!(
        runs[3].starts_with(&format!("{a3},exited,3,exit condition met")),
        "{runs:?}"
    );
    assert!(runs[1].starts_with(&format!("{a1},completed,5")), "{runs:?}");
    assert!(runs[2].starts_with(&format!("{a2},active,5")), "{runs:?}");
    assert_eq!(
        query(
            dir,
            &format!("SELECT status FROM alerts WHERE account_id = '{a3}' ORDER BY priority")
        )[1..],
        ["resolved", "resolved"]
    );
    let new_mail: Vec<(String, String)> = smtp.messages().into_iter().skip(mails_before).collect();
    let escalations: Vec<&(String, String)> = new_mail
        .iter()
        .filter(|(_, t)| t.contains("Subject: [P2] Escalation"))
        .collect();
    assert_eq!(escalations.len(), 1, "{new_mail:?}");
    assert!(escalations[0].1.contains(&format!("({a2})")));
    let reminders: Vec<&(String, String)> = new_mail
        .iter()
        .filter(|(_, t)| t.contains("not acknowledged"))
        .collect();
    assert_eq!(reminders.len(), 1, "{new_mail:?}");
    assert!(reminders[0].1.contains(&format!("({a2})")));
    let dead = query(
        dir,
        "SELECT channel, kind, error FROM dead_letters WHERE kind <> 'crm'",
    );
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead[1].starts_with("broken,alert,") && dead[1].contains("HTTP 400"),
        "{dead:?}"
    );
    // the campaign: a1 and a2 assigned once each, deterministically; e-mails for the treated arm
    let arms = query(
        dir,
        "SELECT account_id, arm FROM campaign_assignments ORDER BY account_id",
    );
    assert_eq!(arms.len(), 3, "{arms:?}");
    let treated = arms[1..].iter().filter(|l| l.ends_with(",letter")).count();
    let letters = new_mail
        .iter()
        .filter(|(_, t)| t.contains("Subject: A note for"))
        .count();
    assert_eq!(letters, treated);
    let report = run(&["campaigns", "report", "--as-of", D2]).ok();
    let arms = report.summary()["arms"].as_array().unwrap().clone();
    assert_eq!(
        arms.iter().map(|a| a["accounts"].as_u64().unwrap()).sum::<u64>(),
        2
    );
    assert_eq!(
        query(
            dir,
            &format!("SELECT SUM(accounts) FROM campaign_results WHERE as_of_date = DATE '{D2}'")
        )[1],
        "2",
        "the same numbers for BI, by day"
    );
    // only changed values go to the CRM
    let before = server.to("/crm/v3/objects/companies/batch/update").len();
    let again = run(&["act", "--as-of", D2]).ok();
    assert_eq!(again.summary()["actions"]["crm"][0]["fields_sent"], 0);
    assert_eq!(server.to("/crm/v3/objects/companies/batch/update").len(), before);

    // success tracking, for people and for BI
    let stats = run(&["playbooks", "stats"]).ok();
    assert!(stats.stdout.contains("| save "), "{}", stats.stdout);
    assert_eq!(
        query(
            dir,
            &format!(
                "SELECT playbook_version, enrolled, active, exited, tasks_created, tasks_completed, alerts FROM playbook_stats WHERE as_of_date = DATE '{D2}'"
            ),
        )[1],
        "2,3,1,1,3,2,7"
    );

    // the BI tables reconcile with the tables they come from
    let a = run(&["analytics", "--as-of", D2]).ok();
    let total = &a.summary()["analytics"]["total"];
    let check = query(
        dir,
        &format!(
            "SELECT COUNT(*) AS n, round(SUM(COALESCE(f.mrr, 0) * r.churn_probability), 2) AS risk FROM risk_scores r \
             LEFT JOIN features.subscription f ON f.account_id = r.account_id AND f.as_of_date = r.as_of_date \
             WHERE r.as_of_date = DATE '{D2}'"
        ),
    );
    let f: Vec<f64> = check[1].split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(total["accounts"].as_f64(), Some(f[0]), "{total}");
    assert!(
        (total["revenue_at_risk_monthly"].as_f64().unwrap() - f[1]).abs() < 0.05,
        "{total} vs {f:?}"
    );
    assert_eq!(
        total["treated_accounts"].as_f64().unwrap() + total["control_accounts"].as_f64().unwrap(),
        2.0
    );
    let team = query(
        dir,
        &format!(
            "SELECT SUM(tasks_completed), SUM(alerts_acknowledged) FROM team_performance WHERE as_of_date = DATE '{D2}'"
        ),
    );
    assert_eq!(team[1], "2,1", "a1 by hand, a3 in the CRM; a1's P1 acknowledged");
    // the first day again, after the second day's completions, acknowledgements and exits:
    // the same rows (tasks and alerts as they stood at the end of that day)
    run(&["analytics", "--as-of", D1]).ok();
    assert_eq!(team_on_d1(), d1_as_seen);
    assert_eq!(query(dir, &totals_d1)[1], "3,0,6,0");
    let stored = query(
        dir,
        "SELECT completed_by, CAST(completed_at AS VARCHAR) FROM tasks WHERE status = 'completed' ORDER BY completed_by",
    );
    assert_eq!(
        stored[1..],
        ["anna,2026-06-30T09:15:00Z", "crm:hubspot,2026-06-30T16:00:00Z"],
        "when, as the CSM and the CRM said"
    );

    // the account workbench: a2's risk, health over both days, playbook, open task and alert
    let w = run(&["account", a2, "--as-of", D2]).ok();
    let acc = w.summary()["account"].clone();
    assert_eq!(acc["account"]["account_id"], a2.as_str());
    assert_eq!(acc["risk"]["as_of_date"], D2);
    assert!(!acc["risk"]["factors"].as_array().unwrap().is_empty(), "{acc}");
    assert_eq!(acc["health"].as_array().unwrap().len(), 2, "{acc}");
    assert_eq!(acc["playbooks"][0]["playbook"], "save");
    assert_eq!(acc["open_tasks"].as_array().unwrap().len(), 1, "{acc}");
    assert!(
        acc["open_alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["priority"] == "P2"),
        "{acc}"
    );
    assert!(w.stdout.contains("Open tasks:"), "{}", w.stdout);
    let nobody = run(&["account", "NO-SUCH"]);
    assert_eq!(nobody.code, 2);
    assert!(
        nobody.stderr.contains("no account 'NO-SUCH'"),
        "{}",
        nobody.stderr
    );

    // a predicate that does not run is named with its file, and nothing runs
    std::fs::write(
        dir.join("playbooks/typo.toml"),
        "name = 'typo'\nversion = 1\n[trigger]\nwhen = 'risk_scor > 10'\n[[steps]]\naction = 'task'\ntitle = 'x'\n",
    )
    .unwrap();
    let bad = run(&["playbooks", "validate"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("typo.toml: [trigger]") && bad.stderr.contains("risk_scor"),
        "{}",
        bad.stderr
    );

    // a2 asks to be forgotten: its id and name leave every table, the dead letters of the
    // webhook that refused it and the messages logged for it included
    let a2_name = query(
        dir,
        &format!("SELECT name FROM core.accounts WHERE account_id = '{a2}'"),
    )[1]
    .clone();
    // companies can share a name (the generator's do): theirs stays
    let namesakes = query(
        dir,
        &format!("SELECT COUNT(*) - 1 FROM core.accounts WHERE name = '{a2_name}'"),
    )[1]
    .clone();
    let letters = |w: &str| query(dir, &format!("SELECT COUNT(*) FROM dead_letters WHERE {w}"))[1].clone();
    let about_a2 = format!("payload LIKE '%{a2}%' OR body LIKE '%{a2}%'");
    let all_letters = letters("TRUE");
    assert_ne!(letters(&about_a2), "0");
    run(&["gdpr", "erase", "--account", a2]).ok();
    let lake = dir.join("lake");
    assert_eq!(
        crate::governance::files_mentioning(&lake, a2),
        Vec::<String>::new()
    );
    let named = crate::governance::files_mentioning(&lake, &a2_name);
    assert!(named.iter().all(|f| f.starts_with("core/accounts/")), "{named:?}");
    assert_eq!(
        query(
            dir,
            &format!("SELECT COUNT(*) FROM core.accounts WHERE name = '{a2_name}'")
        )[1],
        namesakes
    );
    assert_eq!(
        (letters("TRUE"), letters(&about_a2)),
        (all_letters, "0".to_string()),
        "the dead letters stay (what failed, when), without a2 in them"
    );
}

#[test]
fn csm_addresses_encrypted_at_rest_are_mailed_in_clear() {
    let (_tmp, dir) = crate::workspace(120, 300, D2);
    let dir = dir.as_path();
    let smtp = SmtpSink::start(&dir.join("mail"));
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(
        dir.join("playbooks/ping.toml"),
        "name = 'ping'\nversion = 1\n[trigger]\nwhen = \"risk_score >= 0 AND account_id LIKE '%7'\"\n\
         [[steps]]\naction = 'alert'\npriority = 'P1'\ntitle = 'Look at {name}'\nto = ['csm']\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            "[pii]\nmode = \"encrypt\"\nkey_env = \"CSLAKE_PII_KEY\"\n\n[actions]\nlibrary = \"playbooks\"\n\n\
             [actions.smtp]\nhost = \"localhost\"\nport = {}\nfrom = \"cslake@example.com\"\nca_file = \"mail/smtp-ca.pem\"\n\n\
             [[actions.channels]]\nname = \"mail\"\nkind = \"email\"\n\n[[actions.routes]]\nchannels = [\"mail\"]\n",
            smtp.port
        ),
    )
    .unwrap();
    let key = [("CSLAKE_PII_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")];
    cslake_env(dir, &["run", "--as-of", D2, "--source", "data"], &key).ok();
    // a first model on 300 days is provisional: confirmed, its risk drives the playbook
    cslake_env(dir, &["models", "promote", "churn-v1"], &key).ok();
    let out = cslake_env(dir, &["act", "--as-of", D2], &key).ok();
    // the alerts went out with this act, or already with the run's when its model was confirmed
    let deliveries = &out.summary()["actions"]["deliveries"];
    let sent = deliveries["sent"].as_u64().unwrap() + deliveries["already_sent"].as_u64().unwrap();
    assert!(sent > 0, "{}", out.stdout);
    // stored encrypted, mailed in clear: every recipient is a CSM's address from the export
    let stored = query(dir, "SELECT email FROM csms LIMIT 1");
    assert!(stored[1].starts_with("pii1."), "{stored:?}");
    let exported = std::fs::read_to_string(dir.join("data/csms.csv"))
        .unwrap()
        .to_lowercase();
    let mail = smtp.messages();
    assert_eq!(mail.len() as u64, sent);
    for (to, _) in &mail {
        assert!(!to.is_empty() && !to.contains("pii1."), "{to}");
        assert!(
            exported.contains(&format!(",{to},")),
            "{to} is not a CSM address of the export"
        );
    }
}
