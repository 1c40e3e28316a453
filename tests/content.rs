//! A playbook's `send_content` step end to end: each enrolled account gets the content it has
//! not completed yet, listed items first, by e-mail to its contacts and by webhook, exactly
//! once across re-runs; `cslake content recommend` names the playbook as the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use crate::actions::SmtpSink;
use crate::fixture::{Fixture, Resp};

const D2: &str = "2026-06-30";

/// `cslake query --format json`: one object per row.
fn rows(dir: &Path, sql: &str) -> Vec<Value> {
    crate::cslake(dir, &["query", sql, "--format", "json"])
        .ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)]
fn a_playbook_sends_each_account_its_content_once() {
    let (_tmp, dir) = crate::workspace(120, 300, D2);
    let dir = dir.as_path();
    let smtp = SmtpSink::start(&dir.join("mail"));
    let hook = Fixture::start(|_| Resp::json(json!({"ok": true})));
    crate::cslake(dir, &["run", "--as-of", D2, "--source", "data"]).ok();
    crate::cslake(dir, &["models", "promote", "churn-v1"]).ok();
    // the playbook offers the most completed item first; the accounts that completed it are
    // enrolled too, and must get the rest of their recommendations instead
    let top = &rows(
        dir,
        "SELECT content_id, title FROM content_events JOIN content USING (content_id) \
         WHERE action = 'completed' GROUP BY content_id, title \
         ORDER BY COUNT(DISTINCT account_id) DESC, content_id LIMIT 1",
    )[0];
    let (listed, listed_title) = (
        top["content_id"].as_str().unwrap(),
        top["title"].as_str().unwrap(),
    );
    let completed: BTreeSet<(String, String)> = rows(
        dir,
        &format!(
            "SELECT DISTINCT account_id, content_id FROM content_events \
             WHERE action = 'completed' AND CAST(event_time AS DATE) <= DATE '{D2}'"
        ),
    )
    .iter()
    .map(|r| {
        (
            r["account_id"].as_str().unwrap().to_string(),
            r["content_id"].as_str().unwrap().to_string(),
        )
    })
    .collect();
    let completers: Vec<String> = completed
        .iter()
        .filter(|(_, c)| c == listed)
        .map(|(a, _)| format!("'{a}'"))
        .collect();
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(
        dir.join("playbooks/learn.toml"),
        format!(
            "name = 'learn'\nversion = 1\n[trigger]\n\
             when = \"risk_score >= 0 AND (account_id LIKE '%3' OR account_id IN ({}))\"\n\
             [[steps]]\naction = 'send_content'\ntop = 2\ncontent = ['{listed}', 'NO-SUCH-ITEM']\n\
             title = 'Picked for {{name}}'\nto = ['contacts']\n\
             [[steps]]\naction = 'send_content'\nchannel = 'hook'\ntop = 1\n",
            completers.join(", ")
        ),
    )
    .unwrap();
    // a step naming a channel that is not configured is refused before anything is sent
    std::fs::write(dir.join("cslake.toml"), "[actions]\nlibrary = \"playbooks\"\n").unwrap();
    let refused = crate::cslake(dir, &["act", "--as-of", D2]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(
        refused.stderr.contains(
            "learn.toml: playbook 'learn': step 2: channel 'hook' is not defined in [[actions.channels]]"
        ),
        "{}",
        refused.stderr
    );
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            "[actions]\nlibrary = \"playbooks\"\n\n\
             [actions.smtp]\nhost = \"localhost\"\nport = {}\nfrom = \"cslake@example.com\"\nca_file = \"mail/smtp-ca.pem\"\n\n\
             [[actions.channels]]\nname = \"mail\"\nkind = \"email\"\n\n\
             [[actions.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/content\"\n",
            smtp.port, hook.url
        ),
    )
    .unwrap();
    let listing = crate::cslake(dir, &["playbooks", "list"]).ok();
    assert!(
        listing.stdout.contains(&format!(
            "day 0: send up to 2 content item(s) ({listed}, NO-SUCH-ITEM first) to contacts"
        )),
        "{}",
        listing.stdout
    );

    let out = crate::cslake(dir, &["act", "--as-of", D2]).ok();
    let s = &out.summary()["actions"];
    let sends = s["content_sends"].as_u64().unwrap() / 2;
    assert!(sends > completers.len() as u64, "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("Content sends {} (", 2 * sends)),
        "{}",
        out.stdout
    );
    let delivered = rows(
        dir,
        "SELECT account_id, recipients, subject, body, payload, status FROM actions.deliveries \
         WHERE kind = 'content' AND channel = 'mail' ORDER BY account_id",
    );
    assert_eq!(
        delivered.len() as u64,
        sends - s["content_nothing_to_send"].as_u64().unwrap() / 2,
        "{}",
        out.stdout
    );
    // the webhook step: one item each, with why it was picked, as JSON
    let posted = hook.to("/content");
    assert_eq!(posted.len(), delivered.len());
    for r in &posted {
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["type"], "content", "{body}");
        let items = body["data"]["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{body}");
        assert!(
            items[0]["reason"].as_str().is_some_and(|w| !w.is_empty()),
            "{body}"
        );
        assert!(r.headers["idempotency-key"].ends_with(":2"), "{:?}", r.headers);
    }
    let contacts: BTreeMap<String, BTreeSet<String>> = rows(
        dir,
        "SELECT account_id, email FROM contacts WHERE email IS NOT NULL",
    )
    .iter()
    .fold(BTreeMap::new(), |mut m, r| {
        m.entry(r["account_id"].as_str().unwrap().to_string())
            .or_insert_with(BTreeSet::new)
            .insert(r["email"].as_str().unwrap().to_string());
        m
    });
    let (mut first_listed, mut instead) = (0, 0);
    for d in &delivered {
        let account = d["account_id"].as_str().unwrap();
        assert_eq!(d["status"], "sent", "{d}");
        let to: BTreeSet<String> = d["recipients"]
            .as_str()
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        assert_eq!(Some(&to), contacts.get(account), "to the account's contacts: {d}");
        assert!(d["subject"].as_str().unwrap().starts_with("Picked for "), "{d}");
        let payload: Value = serde_json::from_str(d["payload"].as_str().unwrap()).unwrap();
        let items = payload["items"].as_array().unwrap();
        assert!(!items.is_empty() && items.len() <= 2, "{payload}");
        for it in items {
            let id = it["content_id"].as_str().unwrap();
            assert!(
                !completed.contains(&(account.to_string(), id.to_string())),
                "{account} already completed {id}: {payload}"
            );
            assert_ne!(id, "NO-SUCH-ITEM");
        }
        if completed.contains(&(account.to_string(), listed.to_string())) {
            instead += 1;
            assert!(
                items
                    .iter()
                    .all(|it| it["reason"].as_str().unwrap().starts_with("uses ")),
                "{payload}"
            );
        } else {
            first_listed += 1;
            assert_eq!(items[0]["content_id"], listed, "{payload}");
            assert_eq!(items[0]["reason"], "listed in playbook learn");
            assert!(
                d["body"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("1. {listed_title} (")),
                "{d}"
            );
        }
    }
    assert!(first_listed > 0 && instead > 0, "{first_listed} {instead}");
    let mail = smtp.messages();
    let content_mail: Vec<&(String, String)> = mail
        .iter()
        .filter(|(_, t)| t.contains("Subject: Picked for "))
        .collect();
    assert_eq!(content_mail.len(), delivered.len(), "{mail:?}");
    // customers get titles and links, not the internal reason
    assert!(
        content_mail
            .iter()
            .all(|(_, t)| t.contains("https://") && !t.contains("Why: ") && !t.contains("median")),
        "{content_mail:?}"
    );

    // the same day again sends nothing, and the recommendations name the playbook
    let again = crate::cslake(dir, &["act", "--as-of", D2]).ok();
    let d = &again.summary()["actions"]["deliveries"];
    assert_eq!(d["sent"], 0, "{}", again.stdout);
    assert_eq!(d["already_sent"].as_u64(), Some(2 * delivered.len() as u64));
    assert_eq!(smtp.messages().len(), mail.len());
    assert_eq!(hook.to("/content").len(), posted.len());
    crate::cslake(dir, &["content", "recommend", "--as-of", D2]).ok();
    let from_playbook = rows(
        dir,
        &format!(
            "SELECT account_id, content_id, rank FROM actions.content_recommendations \
             WHERE as_of_date = DATE '{D2}' AND reason = 'listed in playbook learn'"
        ),
    );
    assert_eq!(from_playbook.len(), first_listed, "{from_playbook:?}");
    assert!(
        from_playbook
            .iter()
            .all(|r| r["content_id"] == listed && r["rank"] == 1),
        "{from_playbook:?}"
    );
}
