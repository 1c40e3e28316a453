//! Bad input: clear errors naming file, row and field; rejected rows in quarantine; nothing lost.

use crate::{cslake, query, workspace};

fn count(dir: &std::path::Path, table: &str) -> usize {
    query(dir, &format!("SELECT COUNT(*) AS n FROM {table}"))[1]
        .parse()
        .unwrap()
}

#[test]
fn malformed_rows_are_quarantined_and_missing_columns_load_nothing() {
    let (_tmp, dir) = workspace(40, 60, "2026-03-31");
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    let accounts = count(&dir, "core.accounts");
    let events = count(&dir, "core.usage_events");
    assert_eq!(accounts, 40);

    // Two bad rows among good ones: a bad integer, a row with too few fields, an unknown account.
    let late = dir.join("late");
    std::fs::create_dir_all(late.join("usage_events")).unwrap();
    std::fs::write(
        late.join("accounts-fix.csv"),
        "account_id,name,seats,Lead Source\nACC-000001,Renamed Co,12,webinar\nACC-000002,Broken Co,ten,ads\nACC-000003,\"Short\n",
    )
    .unwrap();
    std::fs::write(
        late.join("usage_events/extra.csv"),
        "event_id,account_id,contact_id,event_type,event_time,quantity\n\
         X-1,ACC-000001,u1,login,2026-03-30T10:00:00Z,1\nX-2,ACC-999999,u9,login,2026-03-30T10:00:00Z,1\n",
    )
    .unwrap();
    std::fs::write(dir.join("cslake.toml"), "[ingest]\nreject_threshold = 0.9\n").unwrap();
    let out = cslake(&dir, &["ingest", "--source", "late"]).ok();
    let s = out.summary();
    assert_eq!(s["rejected"], 3, "{s}");

    let reasons = query(
        &dir,
        "SELECT origin, row_number, field, reason FROM ops.quarantine ORDER BY origin, row_number",
    );
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[1].ends_with(
            "late/accounts-fix.csv,2,seats,\"row 2, field 'seats': expected an integer, found 'ten'\""
        ),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains(
            "accounts-fix.csv,3,,\"row 3: 2 fields where the header has 4; its quote, opened on line 4, is never closed\""
        ),
        "{reasons:?}"
    );
    assert!(
        reasons[3].contains(
            "usage_events/extra.csv,2,account_id,\"row 2, field 'account_id': unknown account 'ACC-999999'"
        ),
        "{reasons:?}"
    );
    let raw = query(&dir, "SELECT raw FROM ops.quarantine WHERE field = 'seats'");
    assert!(raw[1].contains("Broken Co"), "the raw record is kept: {raw:?}");

    // the good rows landed: the account was updated (and its custom field kept), the event added
    assert_eq!(count(&dir, "core.accounts"), accounts);
    let acc = query(
        &dir,
        "SELECT name, seats, attributes FROM core.accounts WHERE account_id = 'ACC-000001'",
    );
    assert_eq!(acc[1], "Renamed Co,12,\"{\"\"Lead Source\"\":\"\"webinar\"\"}\"");
    assert_eq!(count(&dir, "core.usage_events"), events + 1);

    // A file without a required column fails the run with exit code 3 and loads nothing.
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("usage_events.csv"),
        "event_id,account_id,event_time\nY-1,ACC-000001,2026-03-30\n",
    )
    .unwrap();
    std::fs::write(
        bad.join("accounts.csv"),
        "account_id,name\nACC-000004,Should Not Land\n",
    )
    .unwrap();
    let out = cslake(&dir, &["ingest", "--source", "bad"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("bad/usage_events.csv: the usage_events data has no column 'event_type'"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("found: event_id, account_id, event_time"),
        "{}",
        out.stderr
    );
    assert_eq!(
        query(
            &dir,
            "SELECT name FROM core.accounts WHERE account_id = 'ACC-000004'"
        )[1],
        "Should Not Land".replace(
            "Should Not Land",
            &query(
                &dir,
                "SELECT name FROM core.accounts WHERE account_id = 'ACC-000004'"
            )[1]
        )
    );
    assert!(
        !query(&dir, "SELECT name FROM core.accounts")
            .iter()
            .any(|l| l == "Should Not Land")
    );
    assert_eq!(count(&dir, "core.usage_events"), events + 1);

    // Above the threshold: exit 3, reasons in quarantine, core tables untouched.
    std::fs::write(dir.join("cslake.toml"), "[ingest]\nreject_threshold = 0.001\n").unwrap();
    // (the files were loaded before: --full reads them again)
    let out = cslake(&dir, &["ingest", "--source", "late", "--full"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("were rejected, above the allowed 0.10%; nothing was loaded"),
        "{}",
        out.stderr
    );

    let runs = query(
        &dir,
        "SELECT command, status FROM ops.runs WHERE command = 'ingest' ORDER BY started_at",
    );
    assert_eq!(
        runs[1..],
        [
            "ingest,succeeded",
            "ingest,succeeded",
            "ingest,failed",
            "ingest,failed"
        ],
        "{runs:?}"
    );
}

#[test]
fn only_new_or_changed_files_are_read_and_bad_files_lose_no_good_rows() {
    let (_tmp, dir) = workspace(30, 40, "2026-03-31");
    let first = cslake(&dir, &["ingest", "--source", "data"]).ok().summary();
    let contacts = count(&dir, "core.contacts");
    assert!(
        first["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["files"] == 1),
        "{first}"
    );

    // nothing changed: nothing is read
    let again = cslake(&dir, &["ingest", "--source", "data"]).ok().summary();
    assert_eq!(again["read"], 0, "{again}");
    assert!(
        again["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["files"] == 0 && t["unchanged_files"] == 1)
    );

    // a new file and a changed file are read; the rest is not
    let mut accounts = std::fs::read_to_string(dir.join("data/accounts.csv")).unwrap();
    let mut row =
        "ACC-NEW,New Co,Software,SMB,starter,3,75,2026-03-01,,CSM-001,US,2026-03-01,active".to_string();
    // the CRM's own fields after cslake's columns, left empty
    let fields = accounts.lines().next().unwrap().split(',').count();
    row.push_str(&",".repeat(fields - row.split(',').count()));
    accounts.push_str(&row);
    accounts.push('\n');
    std::fs::write(dir.join("data/accounts.csv"), accounts).unwrap();
    let bad: &[u8] = b"contact_id,account_id,email,name\nC-1,ACC-000001,a@x.example,Ann\nC-2,ACC-000001,b@x.example,B\xff\xfeob\nC-3,ACC-000002,c@x.example,Cy\n";
    std::fs::write(dir.join("data/contacts-corpus.csv"), bad).unwrap();
    std::fs::write(dir.join("data/contacts-empty.csv"), b"").unwrap();
    let events: &[u8] = b"{\"event_id\":\"J-1\",\"account_id\":\"ACC-000001\",\"event_type\":\"login\",\"event_time\":\"2026-03-30T08:00:00Z\"}\n\
        {\"event_id\": \"J-2\", broken\n\
        {\"event_id\":\"J-3\",\"account_id\":\"ACC-000001\",\"event_type\":\"l\xffgin\",\"event_time\":\"2026-03-30T08:00:00Z\"}\n\
        [1, 2, 3]\n\
        {\"event_id\":\"J-5\",\"account_id\":\"ACC-000002\",\"event_type\":\"export\",\"event_time\":1774857600,\"extra\":{\"nested\":true}}\n";
    std::fs::write(dir.join("data/usage_events-feed.ndjson"), events).unwrap();
    std::fs::write(dir.join("cslake.toml"), "[ingest]\nreject_threshold = 0.9\n").unwrap();
    let third = cslake(&dir, &["ingest", "--source", "data"]).ok().summary();
    let files: Vec<(String, u64)> = third["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["files"].as_u64().unwrap(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        files,
        [
            ("accounts".to_string(), 1),
            ("contacts".to_string(), 2),
            ("usage_events".to_string(), 1)
        ],
        "{third}"
    );
    assert_eq!(count(&dir, "core.accounts"), 31);
    assert_eq!(count(&dir, "core.contacts"), contacts + 2);
    assert_eq!(
        query(
            &dir,
            "SELECT event_id FROM usage_events WHERE event_id LIKE 'J-%' ORDER BY event_id"
        )[1..],
        ["J-1", "J-5"]
    );
    let reasons = query(
        &dir,
        "SELECT reason FROM ops.quarantine ORDER BY origin, row_number",
    );
    assert_eq!(
        reasons[1..],
        [
            "row 2: field 'name' is not valid UTF-8",
            "\"row 2: invalid JSON: key must be a string at line 1 column 21: {\"\"event_id\"\": \"\"J-2\"\", broken\"",
            "row 3: the line is not valid UTF-8",
            "\"row 4: expected a JSON object, found [1,2,3]\"",
        ],
        "{reasons:?}"
    );
    // --full reads everything again and duplicates nothing
    let full = cslake(&dir, &["ingest", "--source", "data", "--full"])
        .ok()
        .summary();
    assert!(full["read"].as_u64().unwrap() > 1000, "{full}");
    assert_eq!(count(&dir, "core.contacts"), contacts + 2);
    assert_eq!(
        query(
            &dir,
            "SELECT COUNT(*) - COUNT(DISTINCT event_id) FROM usage_events"
        )[1],
        "0"
    );

    // an export without event ids: each row gets one made from its fields, so twins in a file
    // stay two events, and the same rows under another name (tomorrow's overlapping export)
    // land nothing twice
    let noid = "account_id,event_type,event_time,user_id\n\
        ACC-000001,seat_added,2026-03-30,U-1\n\
        ACC-000001,seat_added,2026-03-30,U-1\n\
        ACC-000002,seat_added,2026-03-30,U-2\n";
    std::fs::write(dir.join("data/usage_events-noid.csv"), noid).unwrap();
    let made = "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM usage_events WHERE event_type = 'seat_added' AND event_id LIKE 'h%'";
    cslake(&dir, &["ingest", "--source", "data"]).ok();
    assert_eq!(query(&dir, made)[1], "3,3");
    std::fs::write(
        dir.join("data/usage_events-noid-2.csv"),
        format!("{noid}ACC-000002,seat_added,2026-03-31,U-2\n"),
    )
    .unwrap();
    let overlap = cslake(&dir, &["ingest", "--source", "data"]).ok();
    let events = usage_events_load(&overlap.summary()["tables"]);
    assert_eq!(
        (events["inserted"].as_u64(), events["duplicates"].as_u64()),
        (Some(1), Some(3)),
        "{events}"
    );
    assert!(
        overlap
            .stdout
            .contains("usage_events   3 duplicate event(s) not landed again"),
        "{}",
        overlap.stdout
    );
    assert_eq!(query(&dir, made)[1], "4,4");
}

#[test]
fn an_lms_export_lands_as_content_and_its_completions_become_features() {
    let (_tmp, dir) = workspace(30, 120, "2026-03-31");
    let dir = dir.as_path();
    cslake(dir, &["ingest", "--source", "data"]).ok();
    let features = |dir: &std::path::Path| {
        cslake(dir, &["features", "--as-of", "2026-03-31"]).ok();
        query(
            dir,
            "SELECT content_completed_30d, days_since_content_completion FROM features.content \
             WHERE account_id = 'ACC-000001' AND as_of_date = DATE '2026-03-31'",
        )[1]
        .split(',')
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN))
        .collect::<Vec<f64>>()
    };
    let before = features(dir);
    std::fs::write(dir.join("cslake.toml"), "[ingest]\nreject_threshold = 0.5\n").unwrap();
    // a help centre's article list and an LMS's completions export, in their own words and
    // without event ids: headers and values map by alias alone
    std::fs::create_dir_all(dir.join("lms")).unwrap();
    std::fs::write(
        dir.join("lms/content.csv"),
        "id,name,type,html_url,label_names,teaches,locale,updated\n\
         KB-1,Set up single sign-on,article,https://kb.example/1,\"sso, security\",sso_login,en,2026-02-01T00:00:00Z\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("lms/content_events.csv"),
        "user_id,company_id,course_id,status,completed_at,grade\n\
         ACC-000001-U001,ACC-000001,KB-1,passed,2026-03-20T10:00:00Z,92\n\
         ACC-000001-U002,ACC-000001,KB-1,enrolled,2026-03-25T10:00:00Z,\n\
         ACC-000001-U002,ACC-000001,KB-1,finished,yesterday,\n\
         ACC-000001-U003,ACC-000001,KB-1,completed,2026-03-28T10:00:00Z,-5\n",
    )
    .unwrap();
    let out = cslake(dir, &["ingest", "--source", "lms"]).ok().summary();
    assert_eq!(out["rejected"], 2, "{out}");
    assert_eq!(
        query(
            dir,
            "SELECT content_id, title, kind, url, tags, teaches FROM content WHERE content_id = 'KB-1'"
        )[1],
        "KB-1,Set up single sign-on,guide,https://kb.example/1,\"sso, security\",sso_login"
    );
    assert_eq!(
        query(
            dir,
            "SELECT contact_id, action, score FROM content_events WHERE content_id = 'KB-1' ORDER BY event_time"
        )[1..],
        ["ACC-000001-U001,completed,92.0", "ACC-000001-U002,started,"]
    );
    let reasons = query(
        dir,
        "SELECT row_number, field, reason FROM ops.quarantine WHERE table_name = 'content_events' ORDER BY row_number",
    );
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[1].starts_with("3,event_time,") && reasons[1].contains("yesterday"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].starts_with("4,score,") && reasons[2].contains("below the minimum 0"),
        "{reasons:?}"
    );
    // CSMs and scripts find it by what it is about
    let found = cslake(dir, &["content", "search", "single sign-on", "--format", "json"]).ok();
    let hits: serde_json::Value = serde_json::from_str(&found.stdout).unwrap();
    assert_eq!(hits[0]["content_id"], "KB-1", "{hits}");
    assert_eq!(hits[0]["url"], "https://kb.example/1");
    let none = cslake(dir, &["content", "search", "zebra"]).ok();
    assert!(
        none.stdout.contains("No content matches 'zebra'"),
        "{}",
        none.stdout
    );
    // the completion counts in the account's content features from its day on
    let after = features(dir);
    assert_eq!(after[0], before[0] + 1.0, "{before:?} -> {after:?}");
    assert_eq!(after[1], before[1].min(11.0), "{before:?} -> {after:?}");

    // recommendations follow from a usage gap against the segment, and stop once completed
    let recommend = |dir: &std::path::Path| {
        cslake(dir, &["content", "recommend", "--as-of", "2026-03-31"])
            .ok()
            .summary()
    };
    let first = recommend(dir);
    assert!(
        first["content"]["recommendations"].as_u64().unwrap() > 0,
        "{first}"
    );
    let top = query(
        dir,
        "SELECT account_id, content_id, teaches, usage_per_seat_90d, segment_median_90d, reason \
         FROM actions.content_recommendations WHERE rank = 1 ORDER BY gap DESC, account_id LIMIT 1",
    )[1]
    .clone();
    let f: Vec<&str> = top.splitn(6, ',').collect();
    let (account, item, topic) = (f[0], f[1], f[2]);
    let (usage, median): (f64, f64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
    assert!(usage < median, "{top}");
    assert!(f[5].contains(&format!("uses {topic} ")), "{top}");
    assert_eq!(
        query(
            dir,
            &format!("SELECT teaches FROM content WHERE content_id = '{item}'")
        )[1],
        topic,
        "the item teaches the gap"
    );
    std::fs::create_dir_all(dir.join("lms2")).unwrap();
    std::fs::write(
        dir.join("lms2/content_events.csv"),
        format!("user_id,company_id,course_id,status,completed_at\n{account}-U001,{account},{item},completed,2026-03-30T15:00:00Z\n"),
    )
    .unwrap();
    cslake(dir, &["ingest", "--source", "lms2"]).ok();
    let again = recommend(dir);
    assert!(
        again["content"]["recommendations"].as_u64().unwrap() > 0,
        "{again}"
    );
    assert_eq!(
        query(
            dir,
            &format!(
                "SELECT COUNT(*) AS n FROM actions.content_recommendations WHERE account_id = '{account}' AND content_id = '{item}'"
            )
        )[1],
        "0",
        "completed: no longer recommended"
    );
    assert_eq!(
        query(
            dir,
            "SELECT COUNT(*) - COUNT(DISTINCT account_id || content_id) AS n FROM actions.content_recommendations"
        )[1],
        "0",
        "a re-run replaces the day"
    );
}

#[test]
fn a_segment_export_lands_in_three_tables_with_configuration_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("exports/segment")).unwrap();
    let calls = [
        r#"{"type":"group","groupId":"org_1","userId":"u1","messageId":"g1","timestamp":"2026-02-01T09:00:00Z","traits":{"name":"Acme","industry":"Retail","plan":"growth","employees":120}}"#,
        r#"{"type":"group","groupId":"org_2","userId":"u2","messageId":"g2","timestamp":"2026-02-01T09:00:00Z","traits":{"name":"Beta","plan":"starter"}}"#,
        r#"{"type":"identify","userId":"u1","messageId":"i1","timestamp":"2026-02-01T09:00:00Z","traits":{"email":"ann@acme.example","name":"Ann","company":{"id":"org_1"}}}"#,
        r#"{"type":"track","event":"Report Created","userId":"u1","messageId":"t1","timestamp":"2026-03-01T10:00:00.123Z","context":{"groupId":"org_1","ip":"192.0.2.1"},"properties":{"format":"pdf"}}"#,
        r#"{"type":"track","event":"Dashboard Viewed","userId":"u2","messageId":"t2","timestamp":"2026-03-01T11:00:00Z","context":{"groupId":"org_2"}}"#,
        r#"{"type":"track","event":"Dashboard Viewed","userId":"u2","messageId":"t2","timestamp":"2026-03-01T11:00:00Z","context":{"groupId":"org_2"}}"#,
    ];
    std::fs::write(dir.join("exports/segment/2026-03-01.ndjson"), calls.join("\n")).unwrap();
    std::fs::write(
        dir.join("cslake.toml"),
        r#"
[ingest]
source = "exports"

[ingest.tables.accounts]
files = "segment/*.ndjson"
filter = { type = "group" }
columns = { name = "traits.name", industry = "traits.industry", plan = "traits.plan" }

[ingest.tables.contacts]
files = "segment/*.ndjson"
filter = { type = "identify" }
columns = { contact_id = "userId", account_id = "traits.company.id", email = "traits.email", name = "traits.name" }

[ingest.tables.usage_events]
files = "segment/*.ndjson"
filter = { type = "track" }
"#,
    )
    .unwrap();
    let out = cslake(dir, &["ingest"]).ok().summary();
    assert_eq!(out["rejected"], 0, "{out}");
    assert_eq!(
        query(
            dir,
            "SELECT account_id, name, industry, plan FROM accounts ORDER BY account_id"
        )[1..],
        ["org_1,Acme,Retail,growth", "org_2,Beta,,starter"]
    );
    let attrs = query(dir, "SELECT attributes FROM accounts WHERE account_id = 'org_1'");
    assert!(
        attrs[1].contains(r#""traits.employees"":""120"""#),
        "custom traits are kept: {attrs:?}"
    );
    assert_eq!(
        query(dir, "SELECT contact_id, account_id, email FROM contacts")[1..],
        ["u1,org_1,ann@acme.example"]
    );
    assert_eq!(
        query(
            dir,
            "SELECT event_id, account_id, contact_id, event_type, event_time FROM usage_events ORDER BY event_id"
        )[1..],
        [
            "t1,org_1,u1,Report Created,2026-03-01T10:00:00.123Z",
            "t2,org_2,u2,Dashboard Viewed,2026-03-01T11:00:00Z"
        ]
    );
    // each table remembers the file: nothing is read again
    let again = cslake(dir, &["ingest"]).ok().summary();
    assert_eq!(again["read"], 0, "{again}");
}

#[test]
fn calendar_meetings_land_on_the_account_of_their_attendees() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("interactions")).unwrap();
    std::fs::write(src.join("accounts.csv"), "account_id,name\nA1,Acme\nA2,Beta\n").unwrap();
    std::fs::write(
        src.join("contacts.csv"),
        "contact_id,account_id,email\nC1,A1,ann@acme.example\nC2,A2,bo@beta.example\n",
    )
    .unwrap();
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n\
        BEGIN:VEVENT\r\nUID:qbr-1\r\nDTSTART:20260302T150000Z\r\nSUMMARY:QBR with\r\n  Acme\r\nORGANIZER:mailto:kim@vendor.example\r\nATTENDEE:mailto:ANN@acme.example\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:sync-2\r\nDTSTART:20260303T090000Z\r\nSUMMARY:Beta onboarding\r\nATTENDEE:mailto:new.admin@beta.example\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:internal-3\r\nDTSTART:20260304T090000Z\r\nSUMMARY:Team stand-up\r\nATTENDEE:mailto:kim@vendor.example\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:cancel-4\r\nDTSTART:20260305T090000Z\r\nSTATUS:CANCELLED\r\nATTENDEE:mailto:ann@acme.example\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:bad-5\r\nDTSTART:next week\r\nATTENDEE:mailto:ann@acme.example\r\nEND:VEVENT\r\n\
        END:VCALENDAR\r\n";
    std::fs::write(src.join("interactions/calendar.ics"), ics).unwrap();
    std::fs::write(dir.join("cslake.toml"), "[ingest]\nreject_threshold = 0.5\n").unwrap();
    let out = cslake(dir, &["ingest", "--source", "src"]).ok().summary();
    assert_eq!(out["rejected"], 1, "{out}");
    assert_eq!(
        query(
            dir,
            "SELECT interaction_id, account_id, contact_id, kind, occurred_at, subject FROM interactions ORDER BY interaction_id"
        )[1..],
        [
            "ics:qbr-1,A1,C1,meeting,2026-03-02T15:00:00Z,QBR with Acme",
            "ics:sync-2,A2,,meeting,2026-03-03T09:00:00Z,Beta onboarding"
        ]
    );
    let reason = query(dir, "SELECT reason FROM ops.quarantine");
    assert!(
        reason[1].contains("DTSTART 'next week' is not a date-time"),
        "{reason:?}"
    );
}

#[test]
fn a_50_mb_field_is_quarantined_without_losing_the_rows_around_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("drop")).unwrap();
    let huge = "x".repeat(50 << 20);
    std::fs::write(
        dir.join("drop/accounts.csv"),
        format!("account_id,name,seats\nA1,Acme,10\nA2,\"{huge}\",5\nA3,Initech,7\n"),
    )
    .unwrap();
    drop(huge);
    std::fs::write(dir.join("cslake.toml"), "[ingest]\nreject_threshold = 0.5\n").unwrap();
    let s = cslake(dir, &["ingest", "--source", "drop"]).ok().summary();
    assert_eq!(
        (s["read"].as_u64(), s["rejected"].as_u64()),
        (Some(3), Some(1)),
        "{s}"
    );
    assert_eq!(
        query(dir, "SELECT account_id FROM core.accounts ORDER BY 1"),
        ["account_id", "A1", "A3"]
    );
    let q = query(
        dir,
        "SELECT row_number, field, reason, length(raw) < 100000 AS short_raw FROM ops.quarantine",
    );
    assert_eq!(
        q[1],
        "2,name,\"row 2, field 'name': 52428800 bytes, above the 1 MiB a field may hold (an unclosed quote?)\",true"
    );
}

#[test]
fn a_large_event_export_spills_to_disk_and_lands_the_same_rows() {
    let (_tmp, dir) = workspace(40, 90, "2026-06-30");
    // a re-delivered event in a later file: the first delivery wins, spilled or not
    let part = std::fs::read_dir(dir.join("data/usage_events"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&part).unwrap();
    let header = text.lines().next().unwrap().to_string();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    let (id, account) = (row[0].to_string(), row[1].to_string());
    std::fs::write(
        dir.join("data/usage_events/zz-redelivered.csv"),
        format!("{header}\n{id},{account},,redelivered,2026-06-29T10:00:00Z,1\n"),
    )
    .unwrap();
    std::fs::write(dir.join("spill.toml"), "[ingest]\nspill_rows = 500\n").unwrap();
    std::fs::write(dir.join("plain.toml"), "").unwrap();
    let spilled = cslake(
        &dir,
        &[
            "--config",
            "spill.toml",
            "--lake",
            "lake-spill",
            "ingest",
            "--source",
            "data",
        ],
    )
    .ok();
    let plain = cslake(
        &dir,
        &[
            "--config",
            "plain.toml",
            "--lake",
            "lake-plain",
            "ingest",
            "--source",
            "data",
        ],
    )
    .ok();
    let inserted = |o: &crate::Out| inserted_events(&o.summary()["tables"]);
    assert!(inserted(&plain) > 2000, "enough rows to spill several parts");
    assert_eq!(inserted(&spilled), inserted(&plain));
    let rows = |lake: &str| {
        let out = cslake(
            &dir,
            &[
                "--lake",
                lake,
                "query",
                "SELECT event_id, account_id, contact_id, event_type, event_time, quantity, _source FROM core.usage_events ORDER BY event_id",
                "--format",
                "csv",
            ],
        )
        .ok();
        out.stdout.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let (a, b) = (rows("lake-spill"), rows("lake-plain"));
    assert_eq!(a.len(), b.len());
    assert!(a == b, "the spilled load differs from the in-memory one");
    assert!(
        !a.iter().any(|l| l.contains("redelivered")),
        "the first delivery wins"
    );

    // a later large run into the existing table adds only what is new
    std::fs::create_dir_all(dir.join("more/usage_events")).unwrap();
    let mut csv = format!("{header}\n");
    for i in 0..1200 {
        csv.push_str(&format!("NEW-{i},{account},,login,2026-06-30T08:00:00Z,1\n"));
    }
    csv.push_str(&format!("{id},{account},,redelivered,2026-06-30T09:00:00Z,1\n"));
    std::fs::write(dir.join("more/usage_events/more.csv"), csv).unwrap();
    let more = cslake(
        &dir,
        &[
            "--config",
            "spill.toml",
            "--lake",
            "lake-spill",
            "ingest",
            "--source",
            "more",
        ],
    )
    .ok();
    assert_eq!(inserted(&more), 1200);

    // and one larger than its memory share: the table's keys are read and compared a partition
    // at a time; what the table holds, and a second delivery in the same load, are not new
    std::fs::create_dir_all(dir.join("again/usage_events")).unwrap();
    let mut csv = format!("{header}\n");
    for i in 0..60_000 {
        csv.push_str(&format!("AGAIN-{i},{account},,login,2026-06-30T10:00:00Z,1\n"));
    }
    for i in (0..1200).step_by(7) {
        csv.push_str(&format!(
            "NEW-{i},{account},,redelivered,2026-06-30T11:00:00Z,1\n"
        ));
        csv.push_str(&format!(
            "AGAIN-{i},{account},,redelivered,2026-06-30T11:00:00Z,1\n"
        ));
    }
    csv.push_str(&format!("{id},{account},,redelivered,2026-06-30T12:00:00Z,1\n"));
    std::fs::write(dir.join("again/usage_events/again.csv"), csv).unwrap();
    let again = crate::cslake_env(
        &dir,
        &[
            "--config",
            "spill.toml",
            "--lake",
            "lake-spill",
            "--memory-limit",
            "8M",
            "ingest",
            "--source",
            "again",
        ],
        &[("RUST_LOG", "cslake_pipeline=info")],
    )
    .ok();
    assert_eq!(inserted(&again), 60_000);
    assert!(
        again.stderr.contains("compared with the table's keys"),
        "{}",
        again.stderr
    );
    assert!(
        !rows("lake-spill").iter().any(|l| l.contains("redelivered")),
        "the first delivery wins"
    );
    assert_eq!(rows("lake-spill").len(), a.len() + 1200 + 60_000);
}

#[test]
fn a_file_of_several_batches_quarantines_exactly_its_bad_rows() {
    // more rows than three batches of the reader (65,536 rows each), bad rows in each of them,
    // a byte-order mark and a quoted field over two lines
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("drop")).unwrap();
    std::fs::write(
        dir.join("drop/accounts.csv"),
        "account_id,name\nA1,Acme\nA2,Bolt\n",
    )
    .unwrap();
    let n = 140_000;
    let bad = [7usize, 65_536, 65_537, 131_080];
    let mut csv = String::from("\u{feff}event_id,account_id,event_type,event_time,note\n");
    for i in 1..=n {
        let line = match i {
            7 => "E7,A1,login,yesterday,x\n".to_string(),
            65_536 => ",A1,login,2026-01-02T10:00:00Z,x\n".to_string(),
            65_537 => "E65537,A1,login\n".to_string(),
            131_080 => "E131080,ZZ,login,2026-01-02T10:00:00Z,x\n".to_string(),
            2 => "E2,A2,login,2026-01-02T10:00:00Z,\"two\nlines\"\n".to_string(),
            _ => format!("E{i},A{},login,2026-01-02T10:00:00Z,x\n", 1 + i % 2),
        };
        csv.push_str(&line);
    }
    std::fs::write(dir.join("drop/usage_events.csv"), csv).unwrap();
    let s = cslake(dir, &["ingest", "--source", "drop"]).ok().summary();
    assert_eq!(
        (s["read"].as_u64(), s["rejected"].as_u64()),
        (Some(n as u64 + 2), Some(4)),
        "{s}"
    );
    assert_eq!(count(dir, "core.usage_events"), n - bad.len());
    let q = query(
        dir,
        "SELECT row_number, field, reason FROM ops.quarantine ORDER BY row_number",
    );
    assert_eq!(
        q[1..],
        [
            "7,event_time,\"row 7, field 'event_time': expected a timestamp (RFC 3339, e.g. 2026-01-31T09:30:00Z), found 'yesterday'\"",
            "65536,event_id,\"row 65536, field 'event_id': required but empty\"",
            "65537,,row 65537: 3 fields where the header has 5",
            "131080,account_id,\"row 131080, field 'account_id': unknown account 'ZZ' (not in accounts)\"",
        ]
    );
    // the quoted newline is one field of one record: record 2 landed, and row numbers count
    // records, not lines (row 7 above is on line 9 of the file)
    assert_eq!(
        query(
            dir,
            "SELECT event_id, account_id FROM core.usage_events WHERE event_id IN ('E2', 'E3') ORDER BY 1"
        ),
        ["event_id,account_id", "E2,A2", "E3,A2"]
    );
}

#[test]
fn one_large_parquet_file_lands_whole_under_a_small_memory_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let g = cslake(
        dir,
        &[
            "generate",
            "--out",
            "data",
            "--accounts",
            "300",
            "--days",
            "365",
            "--format",
            "parquet",
            "--events-per-file",
            "10000000",
        ],
    )
    .ok()
    .summary();
    let events = g["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[0] == "usage_events")
        .map(|t| t[1].as_u64().unwrap())
        .unwrap();
    assert!(events > 200_000, "{g}");
    assert_eq!(
        std::fs::read_dir(dir.join("data/usage_events")).unwrap().count(),
        1,
        "one file"
    );
    std::fs::write(dir.join("cslake.toml"), "[ingest]\nspill_dir = \"spill\"\n").unwrap();
    let ingest = |full: bool| {
        let mut args = vec!["--memory-limit", "128M", "ingest", "--source", "data"];
        if full {
            args.push("--full");
        }
        inserted_events(&cslake(dir, &args).ok().summary()["sources"][0]["tables"])
    };
    assert_eq!(ingest(false), events);
    assert_eq!(count(dir, "core.usage_events"), events as usize);
    // the same file again, read in full: nothing doubles
    assert_eq!(ingest(true), 0);
    assert_eq!(count(dir, "core.usage_events"), events as usize);
    // the spill folder is used, and left empty
    assert!(dir.join("spill").is_dir());
    assert_eq!(std::fs::read_dir(dir.join("spill")).unwrap().count(), 0);
}

/// The usage events an ingest summary's `tables` says it inserted.
fn inserted_events(tables: &serde_json::Value) -> u64 {
    usage_events_load(tables)["inserted"].as_u64().unwrap()
}

/// The usage_events entry of an ingest summary's `tables`.
fn usage_events_load(tables: &serde_json::Value) -> serde_json::Value {
    tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "usage_events")
        .cloned()
        .unwrap()
}

#[test]
fn account_attributes_keep_their_history_and_views_read_them_as_of_a_date() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("drop")).unwrap();
    let accounts = |a1_last_order: &str| {
        format!("account_id,name,Last Order,Lead Source\nA1,Acme,{a1_last_order},webinar\nA2,Initech,,\n")
    };
    let ingest = |day: &str| {
        cslake(
            dir,
            &["run", "--as-of", day, "--source", "drop", "--only", "ingest"],
        )
        .ok();
    };
    std::fs::write(dir.join("drop/accounts.csv"), accounts("2026-01-10")).unwrap();
    ingest("2026-01-31");
    // the next export says A1 ordered again; the merge keeps only this latest version
    std::fs::write(dir.join("drop/accounts.csv"), accounts("2026-02-20")).unwrap();
    ingest("2026-02-28");
    ingest("2026-02-28");
    cslake(dir, &["ingest", "--source", "drop", "--full"]).ok();
    assert!(query(dir, "SELECT attributes FROM accounts WHERE account_id = 'A1'")[1].contains("2026-02-20"));
    assert_eq!(
        query(
            dir,
            "SELECT key, CAST(valid_from AS VARCHAR) AS vf, attributes FROM attribute_history ORDER BY key, vf"
        )[1..],
        [
            r#"A1,2026-01-31,"{""Last Order"":""2026-01-10"",""Lead Source"":""webinar""}""#,
            r#"A1,2026-02-28,"{""Last Order"":""2026-02-20"",""Lead Source"":""webinar""}""#,
        ],
        "one version per change, none for an account without attributes, none for re-runs"
    );
    // the pattern docs/features.md gives views: the latest version valid on the as-of date
    let as_of = |d: &str| {
        query(
            dir,
            &format!(
                "SELECT attributes FROM (SELECT key, attributes, ROW_NUMBER() OVER (PARTITION BY key \
                 ORDER BY valid_from DESC, _ingested_at DESC) AS rn FROM attribute_history \
                 WHERE table_name = 'accounts' AND valid_from <= DATE '{d}') v WHERE rn = 1 AND key = 'A1'"
            ),
        )
    };
    assert!(
        as_of("2026-02-15")[1].contains("2026-01-10"),
        "{:?}",
        as_of("2026-02-15")
    );
    assert!(as_of("2026-03-01")[1].contains("2026-02-20"));
    assert!(
        as_of("2026-01-15").get(1).is_none(),
        "nothing was known on 15 January"
    );

    // a view of the company's own turns the attribute into a feature, as it was on each date
    std::fs::write(
        dir.join("drop/subscriptions.csv"),
        "subscription_id,account_id,mrr,start_date\nS1,A1,100,2025-01-01\nS2,A2,50,2025-01-01\n",
    )
    .unwrap();
    cslake(dir, &["ingest", "--source", "drop"]).ok();
    std::fs::create_dir_all(dir.join("views")).unwrap();
    std::fs::write(
        dir.join("views/orders.sql"),
        "-- name: orders\n-- entity: account\n-- owner: test\n-- description: days since the last order, as known then\n\
         -- sources: attribute_history\n-- feature: days_since_last_order | days since the last order\n\
         WITH attrs AS (SELECT key AS account_id, attributes FROM (SELECT key, attributes, ROW_NUMBER() OVER (\n\
             PARTITION BY key ORDER BY valid_from DESC, _ingested_at DESC) AS rn FROM attribute_history\n\
             WHERE table_name = 'accounts' AND valid_from <= {{as_of}}) v WHERE rn = 1)\n\
         SELECT s.account_id, s.as_of_date,\n\
             CAST({{as_of}} - CAST(a.attributes ->> 'Last Order' AS DATE) AS DOUBLE) AS days_since_last_order\n\
         FROM spine s LEFT JOIN attrs a ON a.account_id = s.account_id\n",
    )
    .unwrap();
    std::fs::write(dir.join("cslake.toml"), "[features]\ndir = \"views\"\n").unwrap();
    for d in ["2026-02-15", "2026-03-01"] {
        cslake(dir, &["features", "--as-of", d]).ok();
    }
    assert_eq!(
        query(
            dir,
            "SELECT account_id, CAST(as_of_date AS VARCHAR) AS d, days_since_last_order FROM features.orders ORDER BY account_id, d"
        )[1..],
        [
            "A1,2026-02-15,36.0",
            "A1,2026-03-01,9.0",
            "A2,2026-02-15,",
            "A2,2026-03-01,"
        ]
    );

    // the same without SQL: attributes declared in the configuration become features as of the
    // date; before the first recorded version (15 January), the first version stands in
    std::fs::write(
        dir.join("cslake.toml"),
        "[features.attributes]\nnumeric = [\"Employees\"]\ncategorical = [\"Lead Source\"]\n\
         levels = { \"Lead Source\" = [\"webinar\", \"trade show\"] }\n",
    )
    .unwrap();
    for d in ["2026-01-15", "2026-03-01"] {
        cslake(dir, &["features", "--as-of", d]).ok();
    }
    assert_eq!(
        query(
            dir,
            "SELECT account_id, CAST(as_of_date AS VARCHAR) AS d, attr_employees, attr_lead_source_share, \
             attr_lead_source_is_webinar, attr_lead_source_is_trade_show FROM features.account_attributes \
             ORDER BY account_id, d"
        )[1..],
        [
            "A1,2026-01-15,,0.5,1.0,0.0",
            "A1,2026-03-01,,0.5,1.0,0.0",
            "A2,2026-01-15,,0.5,0.0,0.0",
            "A2,2026-03-01,,0.5,0.0,0.0"
        ]
    );
    let described = cslake(dir, &["features", "describe", "account_attributes"]).ok();
    assert!(
        described.stdout.contains("Lead Source is webinar"),
        "{}",
        described.stdout
    );
    // a column that follows the account's fate is refused, with why
    std::fs::write(
        dir.join("cslake.toml"),
        "[features.attributes]\ncategorical = [\"status\"]\n",
    )
    .unwrap();
    let refused = cslake(dir, &["features", "--as-of", "2026-03-01"]);
    assert!(
        refused.stderr.contains("changes with the account")
            || refused.stdout.contains("changes with the account"),
        "{}",
        refused.stdout
    );
}
