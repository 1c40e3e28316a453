//! Governance and operations: data-subject requests (export, erasure from every table and from
//! history, kept erased on reload), retention with housekeeping (`cslake maintain`), and backups.

use std::path::Path;

use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{cslake, query, workspace};

/// Every file under `dir` whose content (Parquet decoded, everything else as bytes) contains
/// `needle`, ignoring case.
pub(crate) fn files_mentioning(dir: &Path, needle: &str) -> Vec<String> {
    let needle = needle.to_lowercase();
    let mut found = Vec::new();
    for p in crate::files_under(dir) {
        let bytes = std::fs::read(&p).unwrap();
        let mut text = String::from_utf8_lossy(&bytes).to_lowercase();
        if p.extension().is_some_and(|x| x == "parquet") {
            let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                for col in batch.columns() {
                    let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()).unwrap();
                    for i in 0..batch.num_rows() {
                        text.push_str(&f.value(i).to_string().to_lowercase());
                        text.push('\n');
                    }
                }
            }
        }
        if let Some(at) = text.find(&needle) {
            // the path, then where the needle sits: a failure says which value or log action holds it
            let start = (0..=at.saturating_sub(120))
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            let around: String = text[start..].chars().take(240 + needle.len()).collect();
            let file = p.strip_prefix(dir).unwrap().display().to_string();
            found.push(format!("{file} …{around}…"));
        }
    }
    found
}

#[test]
fn an_erased_contact_is_gone_from_every_file_and_stays_gone() {
    let (_tmp, dir) = workspace(40, 120, "2026-03-31");
    let contacts = std::fs::read_to_string(dir.join("data/contacts.csv")).unwrap();
    let row: Vec<&str> = contacts.lines().nth(1).unwrap().split(',').collect();
    let (contact_id, account_id, email) = (row[0].to_string(), row[1].to_string(), row[2].to_string());
    let name = row[3].to_string();
    // other people may share the name: theirs stays
    let namesakes = contacts
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(3) == Some(name.as_str()) && !l.starts_with(&contact_id))
        .count();
    let only_namesakes = |dir: &Path| {
        let files = files_mentioning(&dir.join("lake"), &name);
        assert!(files.iter().all(|f| f.starts_with("core/contacts/")), "{files:?}");
        assert_eq!(
            query(
                dir,
                &format!("SELECT COUNT(*) AS n FROM core.contacts WHERE name = '{name}'")
            )[1],
            namesakes.to_string()
        );
    };
    // the e-mail also sits in a quarantined record and in an account's custom attribute
    std::fs::write(dir.join("cslake.toml"), "[ingest]\nreject_threshold = 0.5\n").unwrap();
    std::fs::create_dir_all(dir.join("late")).unwrap();
    std::fs::write(
        dir.join("late/contacts.csv"),
        format!(
            "contact_id,account_id,email,created_date\nX1,{account_id},{},not-a-date\n",
            email.to_uppercase()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("late/accounts.csv"),
        format!("account_id,name,Billing Contact\n{account_id},Renamed,{email}\n"),
    )
    .unwrap();
    // people write names and ids into free text: a ticket of another account names the contact
    std::fs::write(
        dir.join("late/interactions.csv"),
        format!(
            "interaction_id,account_id,kind,occurred_at,subject
             T-FREE,ACC-000003,ticket,2026-03-01T10:00:00Z,Call {} back re {contact_id} and ACC-000003
",
            name.to_uppercase()
        ),
    )
    .unwrap();
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    cslake(&dir, &["ingest", "--source", "late"]).ok();
    cslake(&dir, &["features", "--as-of", "2026-03-31"]).ok();
    // the search below finds the subject where it is stored before the erasure
    assert!(files_mentioning(&dir.join("lake"), &email).len() >= 3);

    // access request: everything on the subject, as JSON
    let out = cslake(
        &dir,
        &["gdpr", "export", "--contact", &email, "--out", "subject.json"],
    )
    .ok();
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("subject.json")).unwrap()).unwrap();
    assert_eq!(
        exported["tables"]["core.contacts"][0]["contact_id"],
        contact_id.as_str(),
        "{}",
        out.stdout
    );
    assert!(
        exported["tables"]["core.usage_events"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(
        exported["tables"]["ops.quarantine"]
            .as_array()
            .is_some_and(|r| r.len() == 1)
    );

    let s = cslake(&dir, &["gdpr", "erase", "--contact", &email])
        .ok()
        .summary();
    let tables: Vec<&str> = s["erasure"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(
        tables,
        [
            "core.accounts",
            // the account's attributes name the contact, in every version the history keeps
            "core.attribute_history",
            "core.contacts",
            "core.interactions",
            "core.usage_events",
            "features.usage_daily_users",
            "ops.quarantine"
        ],
        "{s}"
    );

    // not in any table, any older version, any data file, any log entry or checkpoint
    assert_eq!(files_mentioning(&dir.join("lake"), &email), Vec::<String>::new());
    assert_eq!(
        files_mentioning(&dir.join("lake"), &contact_id),
        Vec::<String>::new()
    );
    assert_eq!(
        query(
            &dir,
            &format!("SELECT name, attributes FROM core.accounts WHERE account_id = '{account_id}'")
        ),
        [
            "name,attributes",
            "Renamed,\"{\"\"Billing Contact\"\":\"\"[erased]\"\"}\""
        ]
    );
    // the name and the id in the ticket's text are blanked as words; the rest of it stays
    assert_eq!(
        query(
            &dir,
            "SELECT subject FROM core.interactions WHERE interaction_id = 'T-FREE'"
        )[1],
        "Call [erased] back re [erased] and ACC-000003"
    );
    only_namesakes(&dir);
    // the audit keeps a hash, and the command line it records is hashed too
    let audit = query(&dir, "SELECT identifier_kind FROM ops.erasures ORDER BY 1");
    assert_eq!(
        audit,
        ["identifier_kind", "contact", "contact_id", "email", "name"]
    );
    let args = query(&dir, "SELECT args FROM ops.runs WHERE command = 'gdpr erase'");
    assert!(args[1].contains("contact:sha256:"), "{args:?}");

    // the source still has the contact: loading it again does not bring it back
    let reload = cslake(&dir, &["ingest", "--source", "data", "--full"])
        .ok()
        .summary();
    // nor does the record that failed validation come back into the quarantine
    let late = cslake(&dir, &["ingest", "--source", "late", "--full"])
        .ok()
        .summary();
    assert!(late["tables"].to_string().contains("\"erased\":1"), "{late}");
    assert_eq!(files_mentioning(&dir.join("lake"), &email), Vec::<String>::new());
    // and the re-exported ticket lands again with the name and the id blanked, as erase left it
    assert_eq!(
        query(
            &dir,
            "SELECT subject FROM core.interactions WHERE interaction_id = 'T-FREE'"
        )[1],
        "Call [erased] back re [erased] and ACC-000003"
    );
    only_namesakes(&dir);
    let table = |name: &str| {
        reload["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        table("contacts")["erased"],
        1,
        "the report counts what was kept out: {reload}"
    );
    assert_eq!(
        query(
            &dir,
            &format!(
                "SELECT COUNT(*) AS n FROM core.contacts WHERE contact_id = '{contact_id}' OR lower(email) = '{email}'"
            )
        ),
        ["n", "0"]
    );
    assert_eq!(
        query(
            &dir,
            &format!("SELECT COUNT(*) AS n FROM core.usage_events WHERE contact_id = '{contact_id}'")
        ),
        ["n", "0"]
    );

    // an account goes with every row about it, features included
    let other = "ACC-000002";
    cslake(&dir, &["gdpr", "erase", "--account", other]).ok();
    for table in [
        "core.accounts",
        "core.contacts",
        "core.usage_events",
        "features.usage_activity",
    ] {
        assert_eq!(
            query(
                &dir,
                &format!("SELECT COUNT(*) AS n FROM {table} WHERE account_id = '{other}'")
            ),
            ["n", "0"],
            "{table}"
        );
    }
    assert_eq!(files_mentioning(&dir.join("lake"), other), Vec::<String>::new());
}

#[test]
fn maintain_ages_out_rows_compacts_and_keeps_them_out() {
    let (_tmp, dir) = workspace(30, 120, "2026-03-31");
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    // a second load: a second data file and a second version in the table
    std::fs::create_dir_all(dir.join("late/usage_events")).unwrap();
    std::fs::write(
        dir.join("late/usage_events/extra.csv"),
        "event_id,account_id,event_type,event_time\nL-1,ACC-000001,login,2026-03-30T10:00:00Z\n",
    )
    .unwrap();
    cslake(&dir, &["ingest", "--source", "late"]).ok();
    // retention is configured once the history is in
    std::fs::write(
        dir.join("cslake.toml"),
        "[retention]\nusage_events = \"60d\"\n\n[maintain]\nkeep_history_days = 0\n",
    )
    .unwrap();
    let dated = query(&dir, "SELECT COUNT(*) AS n FROM core.usage_events");
    let before: usize = dated[1].parse().unwrap();
    let expired: usize = query(
        &dir,
        "SELECT COUNT(*) AS n FROM core.usage_events WHERE event_time < TIMESTAMP '2026-01-30T00:00:00Z'",
    )[1]
    .parse()
    .unwrap();
    assert!(expired > 0 && expired < before);

    let dry = cslake(&dir, &["maintain", "--as-of", "2026-03-31", "--dry-run"])
        .ok()
        .summary();
    let events = |s: &serde_json::Value| {
        s["maintenance"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "core.usage_events")
            .cloned()
            .unwrap()
    };
    assert_eq!(events(&dry)["expired_rows"], expired, "{dry}");
    assert_eq!(
        query(&dir, "SELECT COUNT(*) AS n FROM core.usage_events")[1],
        before.to_string()
    );

    let done = cslake(&dir, &["maintain", "--as-of", "2026-03-31"])
        .ok()
        .summary();
    assert_eq!(events(&done)["retention_days"], 60, "{done}");
    assert_eq!(
        query(
            &dir,
            "SELECT COUNT(*) AS n, MIN(event_time) >= TIMESTAMP '2026-01-30T00:00:00Z' AS kept FROM core.usage_events"
        ),
        ["n,kept".to_string(), format!("{},true", before - expired)]
    );
    // with no history kept, only the current files and the latest log entry remain
    let table = dir.join("lake/core/usage_events");
    let data_files = std::fs::read_dir(&table)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count();
    assert_eq!(data_files, 1, "compacted into one file, the rest vacuumed");
    let logs = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(logs, 1);

    // reloading the source does not bring aged-out rows back
    let reload = cslake(&dir, &["ingest", "--source", "data", "--full"])
        .ok()
        .summary();
    let events = reload["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "usage_events")
        .cloned()
        .unwrap();
    assert!(events["expired"].as_u64().unwrap() >= expired as u64, "{reload}");
    assert_eq!(
        query(&dir, "SELECT COUNT(*) AS n FROM core.usage_events")[1],
        (before - expired).to_string()
    );
    // a run for a date counts the retention back from that date, not from the wall clock: a
    // late file landed by the run of 2026-03-31 keeps its March row and ages out its December one
    std::fs::create_dir_all(dir.join("later/usage_events")).unwrap();
    std::fs::write(
        dir.join("later/usage_events/more.csv"),
        "event_id,account_id,event_type,event_time
M-1,ACC-000001,login,2026-03-02T10:00:00Z
M-2,ACC-000001,login,2025-12-01T10:00:00Z
",
    )
    .unwrap();
    let day = cslake(
        &dir,
        &[
            "run",
            "--as-of",
            "2026-03-31",
            "--only",
            "ingest",
            "--source",
            "later",
        ],
    )
    .ok()
    .summary();
    let loaded = &day["ingest"]["tables"][0];
    assert_eq!(
        (loaded["table"].as_str(), loaded["expired"].as_u64()),
        (Some("usage_events"), Some(1)),
        "{day}"
    );
    assert_eq!(
        query(
            &dir,
            "SELECT event_id FROM core.usage_events WHERE event_id LIKE 'M-%'"
        )[1..],
        ["M-1"]
    );
    let bad = std::fs::write(dir.join("cslake.toml"), "[retention]\naccounts = \"7y\"\n");
    bad.unwrap();
    let out = cslake(&dir, &["maintain"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("[retention] accounts: not a table rows can age out of"),
        "{}",
        out.stderr
    );
}

#[test]
fn backups_are_incremental_verified_and_restore_a_lost_lake() {
    let (_tmp, dir) = workspace(30, 120, "2026-03-31");
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    cslake(&dir, &["features", "--as-of", "2026-03-31"]).ok();
    let first = cslake(&dir, &["backup", "--to", "bk"]).ok().summary();
    let copied = first["backup"]["copied"].as_u64().unwrap();
    assert!(copied > 20, "{first}");
    let second = cslake(&dir, &["backup", "--to", "bk"]).ok().summary();
    assert!(
        second["backup"]["copied"].as_u64().unwrap() < 10
            && second["backup"]["unchanged"].as_u64().unwrap() >= copied - 5,
        "only what changed is copied again: {second}"
    );
    cslake(&dir, &["backup", "--to", "bk", "--verify"]).ok();

    // a damaged object (same size, different bytes) is found by --verify and refused by restore
    let accounts = std::fs::read_dir(dir.join("bk/core/accounts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    let good = std::fs::read(&accounts).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&accounts, &bad).unwrap();
    let v = cslake(&dir, &["backup", "--to", "bk", "--verify"]);
    assert_eq!(v.code, 1);
    let name = accounts.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        v.stdout
            .contains(&format!("damaged or missing: core/accounts/{name}")),
        "{}",
        v.stdout
    );
    let r = cslake(&dir, &["--lake", "lake2", "restore", "--from", "bk"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("does not match its checksum"), "{}", r.stderr);
    std::fs::write(&accounts, &good).unwrap();

    // a lost lake comes back from the backup, whole
    std::fs::remove_dir_all(dir.join("lake2")).ok();
    let restored = cslake(&dir, &["--lake", "lake2", "restore", "--from", "bk"])
        .ok()
        .summary();
    assert!(
        restored["restore"]["tables"].as_array().unwrap().len() >= 10,
        "{restored}"
    );
    for table in ["core.accounts", "core.usage_events", "features.usage_activity"] {
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        let again: Vec<String> = cslake(&dir, &["--lake", "lake2", "query", &sql, "--format", "csv"])
            .ok()
            .stdout
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(again, query(&dir, &sql), "{table}");
    }

    // one live table rolled back to an earlier version
    std::fs::create_dir_all(dir.join("late")).unwrap();
    std::fs::write(
        dir.join("late/accounts.csv"),
        "account_id,name\nACC-000001,Renamed\n",
    )
    .unwrap();
    cslake(&dir, &["ingest", "--source", "late"]).ok();
    let renamed = query(
        &dir,
        "SELECT name FROM core.accounts WHERE account_id = 'ACC-000001'",
    );
    assert_eq!(renamed[1], "Renamed");
    cslake(&dir, &["restore", "--table", "core.accounts", "--version", "0"]).ok();
    let back = query(
        &dir,
        "SELECT name FROM core.accounts WHERE account_id = 'ACC-000001'",
    );
    assert_ne!(back[1], "Renamed");
    let nope = cslake(&dir, &["restore", "--table", "core.accounts", "--version", "99"]);
    assert_eq!(nope.code, 2, "{}", nope.stderr);
}

#[test]
fn personal_data_is_encrypted_at_rest_revealed_on_request_and_rotated() {
    let (_tmp, dir) = workspace(30, 120, "2026-03-31");
    let contacts = std::fs::read_to_string(dir.join("data/contacts.csv")).unwrap();
    let row: Vec<&str> = contacts.lines().nth(1).unwrap().split(',').collect();
    let (contact_id, account_id, email, name) = (row[0], row[1], row[2], row[3]);
    std::fs::write(dir.join("cslake.toml"), "[pii]\nmode = \"encrypt\"\n").unwrap();
    let k1 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let k2 = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    let missing = cslake(&dir, &["ingest", "--source", "data"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("CSLAKE_PII_KEY is not set"),
        "{}",
        missing.stderr
    );

    let env1 = [("CSLAKE_PII_KEY", k1)];
    crate::cslake_env(&dir, &["ingest", "--source", "data"], &env1).ok();
    // a meeting with the contact still lands on the account: attendees are matched in protected form
    std::fs::create_dir_all(dir.join("late")).unwrap();
    std::fs::write(
        dir.join("late/interactions.ics"),
        format!(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:m1\r\nDTSTART:20260330T150000Z\r\nSUMMARY:QBR\r\n\
             ATTENDEE:mailto:{}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            email.to_uppercase()
        ),
    )
    .unwrap();
    crate::cslake_env(&dir, &["ingest", "--source", "late"], &env1).ok();
    assert_eq!(
        query(
            &dir,
            "SELECT account_id, contact_id FROM core.interactions WHERE interaction_id = 'ics:m1'"
        ),
        [
            "account_id,contact_id".to_string(),
            format!("{account_id},{contact_id}")
        ]
    );

    // neither the e-mail nor the name is stored in clear anywhere
    assert_eq!(files_mentioning(&dir.join("lake"), email), Vec::<String>::new());
    assert_eq!(files_mentioning(&dir.join("lake"), name), Vec::<String>::new());
    let stored = query(
        &dir,
        &format!("SELECT email FROM core.contacts WHERE contact_id = '{contact_id}'"),
    );
    let domain = email.split('@').nth(1).unwrap();
    assert!(
        stored[1].starts_with("pii1.k") && stored[1].ends_with(&format!("@{domain}")),
        "{stored:?}"
    );

    // in clear only on request, with the key, and audited
    let sql = format!("SELECT email, name FROM core.contacts WHERE contact_id = '{contact_id}'");
    let shown: Vec<String> = crate::cslake_env(&dir, &["query", &sql, "--format", "csv", "--reveal"], &env1)
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(shown, ["email,name".to_string(), format!("{email},{name}")]);
    assert_eq!(
        query(
            &dir,
            "SELECT COUNT(*) AS n FROM ops.runs WHERE command = 'query --reveal'"
        ),
        ["n", "1"]
    );

    // a new key: old values stay readable, rotation re-encrypts them, reloads change nothing
    std::fs::write(
        dir.join("cslake.toml"),
        "[pii]\nmode = \"encrypt\"\nold_key_envs = [\"CSLAKE_PII_KEY_OLD\"]\n",
    )
    .unwrap();
    let env2 = [("CSLAKE_PII_KEY", k2), ("CSLAKE_PII_KEY_OLD", k1)];
    let r = crate::cslake_env(&dir, &["pii", "rotate"], &env2).ok().summary();
    let n_contacts = contacts.lines().count() - 1;
    assert_eq!(
        r["rotation"]["tables"]["core.contacts"],
        serde_json::json!(2 * n_contacts),
        "{r}"
    );
    let rotated = query(
        &dir,
        &format!("SELECT email FROM core.contacts WHERE contact_id = '{contact_id}'"),
    );
    assert_ne!(rotated[1], stored[1]);
    let shown: Vec<String> = crate::cslake_env(&dir, &["query", &sql, "--format", "csv", "--reveal"], &env2)
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(shown[1], format!("{email},{name}"));
    let again = crate::cslake_env(&dir, &["ingest", "--source", "data", "--full"], &env2)
        .ok()
        .summary();
    let c = again["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "contacts")
        .cloned()
        .unwrap();
    assert_eq!(
        (c["inserted"].as_u64(), c["updated"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
}

#[test]
fn roles_refuse_what_an_actor_may_not_run_and_every_command_is_audited() {
    let (_tmp, dir) = workspace(15, 40, "2026-03-31");
    let dir = dir.as_path();
    cslake(dir, &["ingest", "--source", "data"]).ok();
    let account = query(dir, "SELECT account_id FROM accounts ORDER BY account_id LIMIT 1")[1].clone();

    // a read writes its audit row too: who, what, the outcome and the rows it returned
    let q = cslake(
        dir,
        &["query", "SELECT account_id FROM accounts", "--format", "table"],
    )
    .ok();
    let run_id = q.summary()["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        query(
            dir,
            &format!("SELECT command, status, rows_read FROM ops.runs WHERE run_id = '{run_id}'")
        )[1..],
        ["query,succeeded,15"]
    );

    // without [access] every command is open; with it, roles decide
    let me = cslake(dir, &["access", "whoami"]).ok().summary();
    assert_eq!(me["enforced"], false, "{me}");
    let os = me["os_user"].as_str().unwrap().to_string();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            "[access]\nactors = {{ \"{os}\" = [\"engineer\"], \"airflow:*\" = [\"scheduler\"], ana = [\"analyst\"] }}\n\
             delegates = [\"{os}\"]\n"
        ),
    )
    .unwrap();
    let me = cslake(dir, &["--actor", "ana", "access", "whoami"]).ok();
    assert!(me.stdout.contains("Roles: analyst"), "{}", me.stdout);
    assert_eq!(me.summary()["enforced"], true);

    // the analyst reads, but may not erase or reveal; the refusal says who may, and is audited
    // without the subject in clear
    cslake(dir, &["--actor", "ana", "query", "SELECT COUNT(*) FROM accounts"]).ok();
    let refused = cslake(dir, &["--actor", "ana", "gdpr", "erase", "--account", &account]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "access denied: actor 'ana' (roles: analyst) may not run 'gdpr erase'; roles that may: admin"
        ),
        "{}",
        refused.stderr
    );
    let reveal = cslake(dir, &["--actor", "ana", "query", "SELECT 1", "--reveal"]);
    assert_eq!(reveal.code, 2);
    assert!(
        reveal.stderr.contains("may not run 'query --reveal'"),
        "{}",
        reveal.stderr
    );
    // the engineer runs the night's job and promotes models, but erasure is the admin's
    let engineer = cslake(dir, &["gdpr", "erase", "--account", &account, "--dry-run"]);
    assert_eq!(engineer.code, 2, "{}", engineer.stderr);
    assert!(
        engineer.stderr.contains("(roles: engineer)"),
        "{}",
        engineer.stderr
    );
    cslake(dir, &["tables"]).ok();
    // a scheduler's task name maps by prefix
    cslake(
        dir,
        &[
            "--actor",
            "airflow:cslake_daily:features",
            "features",
            "--as-of",
            "2026-03-31",
        ],
    )
    .ok();
    let scheduler = cslake(dir, &["--actor", "airflow:cslake_daily:x", "models", "rollback"]);
    assert_eq!(scheduler.code, 2, "{}", scheduler.stderr);

    let runs = query(
        dir,
        "SELECT command, actor, status, args FROM ops.runs WHERE status = 'refused' ORDER BY started_at",
    );
    assert_eq!(runs.len(), 5, "{runs:?}");
    assert!(
        runs[1].starts_with(&format!("gdpr erase,ana (via {os}),refused,")),
        "{runs:?}"
    );
    assert!(
        runs[2].starts_with(&format!("query --reveal,ana (via {os}),refused,")),
        "{runs:?}"
    );
    assert!(
        runs[3].starts_with(&format!("gdpr erase,{os},refused,")),
        "{runs:?}"
    );
    assert!(
        runs[4].starts_with("models rollback,airflow:cslake_daily:x"),
        "{runs:?}"
    );
    assert!(
        !runs.iter().any(|r| r.contains(&account)),
        "the subject of a refused erasure is in the audit log: {runs:?}"
    );
    let features = query(
        dir,
        "SELECT actor FROM ops.runs WHERE command = 'features' AND status = 'succeeded'",
    );
    assert_eq!(
        features[1..],
        [format!("airflow:cslake_daily:features (via {os})")]
    );

    // a name is a claim: only delegates may run as another actor
    std::fs::write(
        dir.join("cslake.toml"),
        format!("[access]\nactors = {{ \"{os}\" = [\"admin\"], ana = [\"analyst\"] }}\n"),
    )
    .unwrap();
    let claimed = cslake(dir, &["--actor", "ana", "query", "SELECT 1"]);
    assert_eq!(claimed.code, 2);
    assert!(
        claimed
            .stderr
            .contains(&format!("OS user '{os}' may not run commands as 'ana'")),
        "{}",
        claimed.stderr
    );
    // a mistyped role is a configuration error, not an open door
    std::fs::write(
        dir.join("cslake.toml"),
        format!("[access]\nactors = {{ \"{os}\" = [\"admni\"] }}\n"),
    )
    .unwrap();
    let typo = cslake(dir, &["tables"]);
    assert_eq!(typo.code, 2);
    assert!(typo.stderr.contains("no role 'admni'"), "{}", typo.stderr);

    // the store enforces the same line for the credentials a role is given
    std::fs::remove_file(dir.join("cslake.toml")).unwrap();
    let policy = cslake(
        dir,
        &[
            "--lake",
            "s3://acme-cs/lake",
            "access",
            "policy",
            "--role",
            "analyst",
        ],
    )
    .ok();
    let p: serde_json::Value = serde_json::from_str(&policy.stdout).unwrap();
    let text = p.to_string();
    assert!(text.contains("arn:aws:s3:::acme-cs/lake/scores/*"), "{text}");
    assert!(!text.contains("acme-cs/lake/core/*"), "{text}");
    assert!(text.contains("TheAuditLogIsAppendOnly"), "{text}");
}

#[test]
fn backups_keep_generations_and_a_restore_erases_again_what_was_erased_since() {
    let (_tmp, dir) = workspace(25, 90, "2026-03-31");
    let dir = dir.as_path();
    let contacts = std::fs::read_to_string(dir.join("data/contacts.csv")).unwrap();
    let email = contacts
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(2)
        .unwrap()
        .to_string();
    cslake(dir, &["ingest", "--source", "data"]).ok();
    let first = cslake(dir, &["backup", "--to", "bk"]).ok().summary();
    assert_eq!(first["backup"]["generations"], 1, "{first}");

    // erased after the backup: the backup learns of it, and keeps the subject until it ages out
    let erased = cslake(dir, &["gdpr", "erase", "--contact", &email]).ok();
    assert!(
        erased.stdout.contains("recorded in 1 backup(s)"),
        "{}",
        erased.stdout
    );
    assert!(!files_mentioning(&dir.join("bk"), &email).is_empty());
    let erasures = std::fs::read_dir(dir.join("bk/_cslake_backup/erasures"))
        .unwrap()
        .count();
    assert_eq!(erasures, 1);

    // a lake restored from it has no byte of the subject: the erasure is made again, and said
    std::fs::write(dir.join("cslake.toml"), "").unwrap();
    let restored = cslake(dir, &["--lake", "lake2", "restore", "--from", "bk"]).ok();
    assert!(
        restored
            .stdout
            .contains("1 erasure(s) recorded in the backup applied again: 1 subject(s) found in the restored tables and erased"),
        "{}",
        restored.stdout
    );
    assert_eq!(files_mentioning(&dir.join("lake2"), &email), Vec::<String>::new());
    let contacts = |lake: &str| {
        cslake(
            dir,
            &[
                "--lake",
                lake,
                "query",
                "SELECT COUNT(*) FROM core.contacts",
                "--format",
                "csv",
            ],
        )
        .ok()
        .stdout
    };
    assert_eq!(contacts("lake2"), contacts("lake"));

    // a second generation; with one day kept, the first goes, and with it the subject's files
    std::fs::write(
        dir.join("cslake.toml"),
        "[backup]\nkeep_last = 1\nkeep_daily = 1\nkeep_monthly = 0\nkeep_yearly = 0\n",
    )
    .unwrap();
    let second = cslake(dir, &["backup", "--to", "bk"]).ok().summary();
    let b = &second["backup"];
    assert_eq!(b["generations"], 1, "{second}");
    assert_eq!(b["pruned"].as_array().unwrap().len(), 1, "{second}");
    assert!(b["objects_removed"].as_u64().unwrap() > 0, "{second}");
    assert_eq!(files_mentioning(&dir.join("bk"), &email), Vec::<String>::new());
    cslake(dir, &["backup", "--to", "bk", "--verify"]).ok();
    let listed = cslake(dir, &["restore", "--from", "bk", "--list"]).ok().summary();
    assert_eq!(listed["generations"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["generations"][0], b["generation"]);
    // an older generation by name
    let gone = cslake(
        dir,
        &[
            "--lake",
            "lake3",
            "restore",
            "--from",
            "bk",
            "--generation",
            first["backup"]["generation"].as_str().unwrap(),
        ],
    );
    assert_eq!(gone.code, 2, "{}", gone.stderr);
    assert!(gone.stderr.contains("no backup generation"), "{}", gone.stderr);
}
