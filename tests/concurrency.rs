//! Two commands at once: a writer holds the lease of the zones it writes, so a second one waits
//! for it (or gives up with exit 1 naming the holder) instead of landing every row twice or
//! sending every alert twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::fixture::{Fixture, Resp};
use crate::{cslake, query, snapshot, spawn, workspace};

const D: &str = "2026-06-30";

fn both_succeed(children: [std::process::Child; 2]) {
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "both commands finish (the second waits for the first): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn duplicates(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for (table, key) in [
        ("core.accounts", "account_id"),
        ("core.contacts", "contact_id"),
        ("core.usage_events", "event_id"),
        ("core.invoices", "invoice_id"),
        ("core.interactions", "interaction_id"),
        ("core.subscriptions", "subscription_id"),
    ] {
        let r = query(
            dir,
            &format!("SELECT COUNT(*) - COUNT(DISTINCT {key}) AS d FROM {table}"),
        );
        if r[1] != "0" {
            found.push(format!("{table}: {} duplicated", r[1]));
        }
    }
    found
}

#[test]
fn two_ingests_and_two_days_at_once_on_a_fresh_lake_double_nothing() {
    // the same drop, twice at once, into a lake that does not exist yet
    let (_a, once) = workspace(150, 300, D);
    let ingest = ["ingest", "--source", "data"];
    both_succeed([spawn(&once, &ingest, &[]), spawn(&once, &ingest, &[])]);
    assert!(duplicates(&once).is_empty(), "{:?}", duplicates(&once));
    let events = query(&once, "SELECT COUNT(*) AS n FROM core.usage_events");
    // the reference: the whole day run alone (on the data landed above: no new rows)
    let day = ["run", "--as-of", D, "--source", "data"];
    cslake(&once, &day).ok();
    assert_eq!(
        query(&once, "SELECT COUNT(*) AS n FROM core.usage_events"),
        events
    );

    // two whole days at once, on another fresh lake of the same data
    let (_b, twice) = workspace(150, 300, D);
    both_succeed([spawn(&twice, &day, &[]), spawn(&twice, &day, &[])]);
    assert!(duplicates(&twice).is_empty(), "{:?}", duplicates(&twice));
    assert_eq!(
        query(&twice, "SELECT COUNT(*) AS n FROM core.usage_events"),
        events
    );
    assert_eq!(snapshot(&twice, D), snapshot(&once, D));
    // every command of both days wrote its audit row, and none is left running
    let runs = query(
        &twice,
        "SELECT command, status, COUNT(*) AS n FROM ops.runs GROUP BY command, status ORDER BY command, status",
    );
    assert!(runs.iter().all(|r| !r.contains("running")), "{runs:?}");
}

#[test]
fn a_writer_that_waits_too_long_fails_naming_the_holder() {
    let (_t, dir) = workspace(20, 30, D);
    std::fs::write(dir.join("cslake.toml"), "[leases]\nwait = \"1s\"\n").unwrap();
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    // another machine's run holds the core zone
    let leases = dir.join("lake/_cslake_leases/core");
    let newest = std::fs::read_dir(&leases)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".json")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap();
    let now = chrono::Utc::now();
    let holder = serde_json::json!({
        "run_id": "20261202T000000Z-elsewhere", "command": "ingest", "actor": "airflow",
        "host": "worker-7", "pid": 4242, "started": null,
        "acquired_at": now.to_rfc3339(), "expires_at": (now + chrono::Duration::minutes(10)).to_rfc3339(),
        "released": false
    });
    std::fs::write(
        leases.join(format!("{:020}.json", newest + 1)),
        holder.to_string(),
    )
    .unwrap();
    let out = cslake(&dir, &["ingest", "--source", "data", "--full"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("the core zone of the lake is being written by run 20261202T000000Z-elsewhere (cslake ingest, airflow on worker-7"),
        "{}",
        out.stderr
    );
    // other zones are free meanwhile
    cslake(&dir, &["features", "--as-of", D]).ok();
    // its audit row says why it failed
    let r = query(
        &dir,
        "SELECT status FROM ops.runs WHERE command = 'ingest' ORDER BY started_at DESC LIMIT 1",
    );
    assert_eq!(r[1], "failed");
}

#[test]
fn two_acts_at_once_deliver_every_alert_once() {
    let (_t, dir) = workspace(60, 300, D);
    let received: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let log = received.clone();
    let hook = Fixture::start(move |r| {
        if let Some(key) = r.headers.get("idempotency-key") {
            *log.lock().unwrap().entry(key.clone()).or_default() += 1;
        }
        Resp::status(200, "ok")
    });
    // a playbook that alerts on every scored account, routed to the webhook
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(
        dir.join("playbooks/everyone.toml"),
        "name = \"everyone\"\nversion = 1\n[trigger]\nwhen = \"risk_score >= 0\"\n\
         [[steps]]\naction = \"alert\"\ntitle = \"Look at {name}\"\npriority = \"P2\"\nto = [\"ops@example.test\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            "[actions]\nlibrary = \"playbooks\"\n[[actions.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/hook\"\n\
             [[actions.routes]]\nchannels = [\"hook\"]\n",
            hook.url
        ),
    )
    .unwrap();
    for step in ["ingest", "features", "train", "score"] {
        cslake(&dir, &["run", "--as-of", D, "--source", "data", "--only", step]).ok();
    }
    // a first model on 300 days is provisional: confirmed, its risk drives the playbook
    cslake(&dir, &["models", "promote", "churn-v1"]).ok();
    let act = ["act", "--as-of", D];
    both_succeed([spawn(&dir, &act, &[]), spawn(&dir, &act, &[])]);
    let received = received.lock().unwrap().clone();
    let scored = query(
        &dir,
        &format!("SELECT COUNT(*) AS n FROM scores.risk_scores WHERE as_of_date = DATE '{D}'"),
    );
    assert_eq!(
        received.len().to_string(),
        scored[1],
        "one alert per scored account reached the webhook"
    );
    assert!(
        received.values().all(|n| *n == 1),
        "delivered twice: {:?}",
        received.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let logged = query(
        &dir,
        "SELECT COUNT(*) - COUNT(DISTINCT delivery_id) AS d, COUNT(*) AS n FROM actions.deliveries",
    );
    assert_eq!(logged[1], format!("0,{}", scored[1]));
}
