//! Conformance suites: every implementation of a trait passes the same tests. Each channel
//! (Slack, webhook, e-mail, HubSpot and Salesforce as CRM write-back) and each API connector
//! (generic REST, HubSpot, Salesforce, Stripe, Google Calendar) runs against a local server that
//! speaks its documented shapes, through the same code `cslake act` and `cslake ingest` use.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use cslake_pipeline::act::channels::crm::Crm;
use cslake_pipeline::act::channels::{Channel, Delivery, Dispatcher, Outcome};
use cslake_pipeline::ingest::connectors::{self, Connector};
use cslake_pipeline::settings::{
    ActionsConfig, AuthConfig, ChannelConfig, CrmConfig, DeliveryConfig, SmtpConfig, SourceKind,
};
use serde_json::{Value, json};

use crate::fixture::{Fixture, Req, Resp, Smtp, SmtpMode, closed_port};
use crate::{cslake, cslake_env};

// ---------------------------------------------------------------- channels

/// Few retries with short backoff, so the failure cases are quick.
fn delivery_config() -> DeliveryConfig {
    DeliveryConfig {
        max_retries: 2,
        backoff_ms: 1,
        timeout_seconds: 5,
        ..DeliveryConfig::default()
    }
}

/// A delivery of the kind the channel takes.
fn delivery(kind: &str, key: &str) -> Delivery {
    let (dkind, data) = match kind {
        "hubspot" | "salesforce" => (
            "record_update",
            json!({"object_id": "001A", "fields": {"cslake_risk_score": 87}}),
        ),
        _ => ("alert", json!({"alert_id": "a-1", "priority": "P1"})),
    };
    Delivery {
        key: key.into(),
        kind: dkind.into(),
        ref_id: "001A".into(),
        account_id: Some("001A".into()),
        channel: kind.into(),
        to: vec!["csm@example.test".into()],
        subject: "[P1] Acme is at risk".into(),
        text: "Call them today".into(),
        data,
        attachments: Vec::new(),
    }
}

/// What the HTTP fixture answers with, switched by the test.
const ACCEPT: u16 = 200;

/// An HTTP fixture for a channel kind: it answers with the status set in `status` (and, for a
/// CRM that accepts, the body its API documents).
fn http_fixture(kind: &'static str, status: Arc<AtomicU16>) -> Fixture {
    Fixture::start(move |req: &Req| {
        if req.path.ends_with("/oauth2/token") {
            return Resp::json(json!({"access_token": "t", "expires_in": 3600}));
        }
        let code = status.load(Ordering::SeqCst);
        if code != ACCEPT {
            return Resp::status(code, r#"{"message":"no"}"#);
        }
        match kind {
            // batch update: 200 with the updated records
            "hubspot" => Resp::json(json!({"status": "COMPLETE", "results": [{"id": "001A"}]})),
            // sObject Collections: one result per record, in order
            "salesforce" => Resp::json(json!([{"id": "001A", "success": true, "errors": []}])),
            _ => Resp::status(200, "ok"),
        }
    })
}

/// Builds the channel of `kind` pointed at `url` (HTTP) or the SMTP fixture.
fn channel(kind: &str, url: &str, smtp: &Smtp) -> Box<dyn ChannelOwner> {
    let delivery = delivery_config();
    match kind {
        "hubspot" | "salesforce" => {
            let cfg = CrmConfig {
                name: kind.into(),
                kind: kind.into(),
                base_url: Some(url.into()),
                auth: Some(AuthConfig {
                    kind: "none".into(),
                    ..Default::default()
                }),
                api_version: None,
                object_id: None,
                fields: HashMap::new(),
                push_tasks: false,
                batch_size: None,
            };
            Box::new(Crm::open(&cfg, &delivery).expect("crm"))
        }
        _ => {
            let actions = ActionsConfig {
                channels: vec![ChannelConfig {
                    name: kind.into(),
                    kind: kind.into(),
                    url: (kind != "email").then(|| format!("{url}/hook")),
                    url_env: None,
                    secret_env: None,
                }],
                smtp: Some(SmtpConfig {
                    host: "127.0.0.1".into(),
                    port: Some(smtp.port),
                    tls: Some("none".into()),
                    username_env: None,
                    password_env: None,
                    ca_file: None,
                    from: "cslake@example.test".into(),
                    timeout_seconds: Some(5),
                }),
                delivery,
                ..Default::default()
            };
            Box::new(Dispatcher::new(&actions, Path::new(".")).expect("dispatcher"))
        }
    }
}

/// A channel, whichever way it is built.
trait ChannelOwner {
    fn get(&self) -> &dyn Channel;
}

impl ChannelOwner for Crm {
    fn get(&self) -> &dyn Channel {
        self
    }
}

impl ChannelOwner for Dispatcher {
    fn get(&self) -> &dyn Channel {
        let mut names = ["slack", "webhook", "email"].into_iter();
        names
            .find_map(|n| self.channel(n))
            .expect("one configured channel")
    }
}

async fn send_one(c: &dyn Channel, d: &Delivery) -> Outcome {
    c.send(std::slice::from_ref(d)).await.pop().expect("one outcome")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_delivers_once_refuses_for_good_and_retries_what_is_transient() {
    let smtp = Smtp::start();
    for kind in ["slack", "webhook", "email", "hubspot", "salesforce"] {
        let status = Arc::new(AtomicU16::new(ACCEPT));
        let http = http_fixture(kind, status.clone());
        let owner = channel(kind, &http.url, &smtp);
        let c = owner.get();
        assert_eq!(c.kind(), kind);
        let received = || -> usize {
            if kind == "email" {
                smtp.attempts()
            } else {
                http.requests()
                    .iter()
                    .filter(|r| !r.path.ends_with("/token"))
                    .count()
            }
        };

        // 1. delivered once, carrying its idempotency key
        let d = delivery(kind, &format!("alert:a-1:{kind}"));
        let o = send_one(c, &d).await;
        assert!(matches!(o, Outcome::Sent { .. }), "{kind}: {o:?}");
        assert_eq!(received(), 1, "{kind}: one request for one delivery");
        match kind {
            "email" => {
                let m = smtp.messages();
                assert_eq!(m.len(), 1);
                // the key, in the characters a Message-ID allows
                let id = format!("Message-ID: <{}@cslake>", d.key.replace(':', "."));
                assert!(m[0].contains(&id), "{}", m[0]);
            }
            "slack" | "webhook" => {
                let r = &http.requests()[0];
                assert_eq!(r.headers.get("idempotency-key"), Some(&d.key), "{kind}");
                assert!(r.body.contains("Acme is at risk"), "{kind}: {}", r.body);
            }
            _ => {
                // the CRM record is the one named, with the field's value
                let r = http
                    .requests()
                    .into_iter()
                    .find(|r| !r.path.ends_with("/token"))
                    .unwrap();
                assert!(
                    r.body.contains("001A") && r.body.contains("87"),
                    "{kind}: {}",
                    r.body
                );
            }
        }
        http.clear();
        smtp.clear();

        // 2. a refusal is final: no retry, not transient
        status.store(422, Ordering::SeqCst);
        smtp.set(SmtpMode::Refuse);
        let o = send_one(c, &delivery(kind, "k2")).await;
        assert!(
            matches!(o, Outcome::Failed { transient: false, .. }),
            "{kind}: a refusal must be permanent: {o:?}"
        );
        assert_eq!(received(), 1, "{kind}: a refusal is not retried");
        http.clear();
        smtp.clear();

        // 3. a server error is retried, and transient when it persists
        status.store(503, Ordering::SeqCst);
        smtp.set(SmtpMode::Defer);
        let o = send_one(c, &delivery(kind, "k3")).await;
        assert!(
            matches!(o, Outcome::Failed { transient: true, .. }),
            "{kind}: a persisting server error must be transient: {o:?}"
        );
        assert_eq!(received(), 3, "{kind}: the first try and max_retries = 2");
        http.clear();
        smtp.clear();
        status.store(ACCEPT, Ordering::SeqCst);
        smtp.set(SmtpMode::Accept);
    }

    // 4. an unreachable endpoint is transient, for every HTTP channel
    let nowhere = closed_port();
    let dead_smtp = Smtp::start();
    for kind in ["slack", "webhook", "hubspot", "salesforce"] {
        let owner = channel(kind, &nowhere, &dead_smtp);
        let o = send_one(owner.get(), &delivery(kind, "k4")).await;
        assert!(
            matches!(o, Outcome::Failed { transient: true, .. }),
            "{kind}: an unreachable endpoint must be transient: {o:?}"
        );
    }
}

// ---------------------------------------------------------------- connectors

/// `[sources.auth]` of a connector's default authentication, with the token endpoint moved to
/// the fixture.
fn auth_toml(auth: &AuthConfig, url: &str) -> String {
    let mut out = format!("[sources.auth]\ntype = \"{}\"\n", auth.kind);
    for (k, v) in [
        ("token_env", &auth.token_env),
        ("username_env", &auth.username_env),
        ("password_env", &auth.password_env),
        ("client_id_env", &auth.client_id_env),
        ("client_secret_env", &auth.client_secret_env),
        ("refresh_token_env", &auth.refresh_token_env),
    ] {
        if let Some(v) = v {
            out.push_str(&format!("{k} = \"{v}\"\n"));
        }
    }
    if auth.token_url.is_some() {
        out.push_str(&format!("token_url = \"{url}/oauth2/token\"\n"));
    }
    out
}

/// cslake.toml with one source of `kind` at the fixture. Rejected rows do not fail the run: the
/// suite is about reading, and the synthetic records do not all land.
fn config(kind: SourceKind, url: &str) -> String {
    let name = format!("{kind:?}").to_lowercase();
    let kind_name = match kind {
        SourceKind::GoogleCalendar => "google_calendar".to_string(),
        _ => name.clone(),
    };
    let auth = match kind {
        SourceKind::Rest => AuthConfig {
            kind: "bearer".into(),
            token_env: Some("CONFORMANCE_REST_TOKEN".into()),
            ..Default::default()
        },
        k => connectors::connector(k).default_auth(),
    };
    let mut t = format!(
        "[ingest]\nreject_threshold = 1.0\n\n[[sources]]\nname = \"{name}\"\nkind = \"{kind_name}\"\nbase_url = \"{url}\"\n\
         max_retries = 2\nbackoff_ms = 1\nrequests_per_second = 1000\n{}",
        auth_toml(&auth, url)
    );
    if kind == SourceKind::Rest {
        t.push_str(
            "[sources.tables.accounts]\npath = \"v2/organizations\"\nrecords = \"organizations\"\n\
             columns = { account_id = \"id\", name = \"name\" }\n\
             paging = { type = \"cursor\", next = \"meta.after_cursor\", param = \"page[after]\", has_more = \"meta.has_more\" }\n\
             incremental = { field = \"updated_at\", param = \"updated_since\" }\n",
        );
    }
    t
}

/// The environment variables a connector's credentials come from, all set.
fn credentials(kind: SourceKind) -> Vec<(String, String)> {
    let auth = match kind {
        SourceKind::Rest => AuthConfig {
            token_env: Some("CONFORMANCE_REST_TOKEN".into()),
            ..Default::default()
        },
        k => connectors::connector(k).default_auth(),
    };
    [
        auth.token_env,
        auth.username_env,
        auth.password_env,
        auth.client_id_env,
        auth.client_secret_env,
        auth.refresh_token_env,
    ]
    .into_iter()
    .flatten()
    .map(|v| (v, "secret-value".to_string()))
    .collect()
}

/// One record in the vendor's documented shape, changed on day `n` of March 2026.
fn item(kind: SourceKind, n: u32) -> Value {
    match kind {
        SourceKind::Rest => {
            json!({"id": n, "name": format!("Org {n}"), "updated_at": format!("2026-03-0{n}T10:00:00Z")})
        }
        SourceKind::Hubspot => {
            json!({"id": n.to_string(), "properties": {"name": format!("Co {n}"), "email": format!("p{n}@x.test")},
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": format!("2026-03-0{n}T10:00:00.000Z"), "archived": false})
        }
        SourceKind::Salesforce => {
            json!({"attributes": {"type": "Account", "url": "/x"}, "Id": format!("001{n}"), "Name": format!("Co {n}"),
            "SystemModstamp": format!("2026-03-0{n}T10:00:00.000+0000")})
        }
        SourceKind::Stripe => {
            json!({"id": format!("obj_{n}"), "object": "x", "created": 1_772_000_000 + n, "customer": "cus_1",
            "status": "active", "items": {"data": []}})
        }
        SourceKind::GoogleCalendar => json!({"id": format!("ev{n}"), "status": "confirmed", "summary": "QBR",
            "updated": format!("2026-03-0{n}T10:00:00.000Z"), "start": {"dateTime": "2026-03-01T15:00:00Z"},
            "end": {"dateTime": "2026-03-01T16:00:00Z"}, "attendees": [{"email": "a@customer.test"}]}),
    }
}

/// Sets a dotted path (`properties.name`, `associations.companies.results.0.id`) in a JSON object.
fn set(v: &mut Value, path: &str, value: Value) {
    let mut at = v;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let next_is_index = parts.get(i + 1).is_some_and(|n| n.parse::<usize>().is_ok());
        let empty = || if next_is_index { json!([]) } else { json!({}) };
        at = match (p.parse::<usize>(), &mut *at) {
            (Ok(k), Value::Array(a)) => {
                while a.len() <= k {
                    a.push(empty());
                }
                &mut a[k]
            }
            (_, Value::Object(m)) => {
                if last {
                    m.entry(p.to_string()).or_insert(value);
                    return;
                }
                m.entry(p.to_string()).or_insert_with(empty)
            }
            _ => return,
        };
        if last {
            if at.is_object() && at.as_object().is_some_and(serde_json::Map::is_empty) {
                *at = value;
            }
            return;
        }
    }
}

/// The vendor's record with a value for every field its built-in mappings read (so each table's
/// required columns are there), typed as the canonical column wants it.
fn filled(kind: SourceKind, n: u32) -> Value {
    use cslake_pipeline::lake::schema::{ColType, core_table};
    let mut v = item(kind, n);
    for (table, m) in connectors::connector(kind).builtin() {
        let Some(spec) = core_table(table) else { continue };
        for (col, field) in &m.columns {
            let Some(c) = spec.column(col) else { continue };
            let value = match c.ty {
                ColType::Str => json!(format!("v{n}")),
                ColType::Int => json!(n),
                ColType::Float => json!(10.5),
                ColType::Bool => json!(true),
                ColType::Date => json!("2026-03-01"),
                ColType::Timestamp => json!("2026-03-01T10:00:00Z"),
            };
            let fields: Vec<String> = if field.contains('{') {
                field
                    .split('{')
                    .skip(1)
                    .filter_map(|p| p.split_once('}').map(|(f, _)| f.to_string()))
                    .collect()
            } else {
                vec![field.clone()]
            };
            for f in fields {
                set(&mut v, &f, value.clone());
            }
        }
    }
    v
}

/// A page in the vendor's documented shape: the first says more follow (the way the vendor says
/// it), the second is the last.
fn page(kind: SourceKind, req: &Req) -> Resp {
    let second = match kind {
        SourceKind::Rest => req.q("page[after]") == Some("c2"),
        SourceKind::Hubspot => req.q("after") == Some("2") || req.body.contains("\"after\":\"2\""),
        SourceKind::Salesforce => req.path.ends_with("/01gNEXT-2000"),
        SourceKind::Stripe => req.q("starting_after") == Some("obj_1"),
        SourceKind::GoogleCalendar => req.q("pageToken") == Some("p2"),
    };
    let items = vec![filled(kind, if second { 2 } else { 1 })];
    Resp::json(match (kind, second) {
        (SourceKind::Rest, false) => {
            json!({"organizations": items, "meta": {"has_more": true, "after_cursor": "c2"}})
        }
        (SourceKind::Rest, true) => {
            json!({"organizations": items, "meta": {"has_more": false, "after_cursor": null}})
        }
        (SourceKind::Hubspot, false) => {
            json!({"results": items, "paging": {"next": {"after": "2", "link": "x"}}})
        }
        (SourceKind::Hubspot, true) => json!({"results": items}),
        (SourceKind::Salesforce, false) => json!({"totalSize": 2, "done": false,
            "nextRecordsUrl": "/services/data/v60.0/query/01gNEXT-2000", "records": items}),
        (SourceKind::Salesforce, true) => json!({"totalSize": 2, "done": true, "records": items}),
        (SourceKind::Stripe, false) => {
            json!({"object": "list", "data": items, "has_more": true, "url": req.path})
        }
        (SourceKind::Stripe, true) => {
            json!({"object": "list", "data": items, "has_more": false, "url": req.path})
        }
        (SourceKind::GoogleCalendar, false) => {
            json!({"kind": "calendar#events", "items": items, "nextPageToken": "p2"})
        }
        (SourceKind::GoogleCalendar, true) => {
            json!({"kind": "calendar#events", "items": items, "nextSyncToken": "s"})
        }
    })
}

/// How the vendor fixture answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pages,
    /// 401 to everything, the token endpoint included.
    Unauthorized,
    /// One 429 with `Retry-After: 0` first.
    Limited,
}

fn vendor(kind: SourceKind, mode: Arc<std::sync::Mutex<(Mode, usize)>>) -> Fixture {
    Fixture::start(move |req: &Req| {
        let mut m = mode.lock().unwrap();
        if req.path.ends_with("/oauth2/token") {
            return match m.0 {
                Mode::Unauthorized => Resp::status(401, r#"{"error":"invalid_client"}"#),
                _ => Resp::json(json!({"access_token": "t", "token_type": "Bearer", "expires_in": 3600})),
            };
        }
        match m.0 {
            Mode::Unauthorized => Resp::status(401, r#"{"message":"bad token"}"#),
            Mode::Limited if m.1 == 0 => {
                m.1 += 1;
                Resp::status(429, r#"{"message":"slow down"}"#).header("Retry-After", "0")
            }
            _ => page(kind, req),
        }
    })
}

#[test]
fn every_connector_pages_keeps_its_cursor_waits_out_limits_and_stops_on_rejected_credentials() {
    let all: Vec<&dyn Connector> = connectors::all().to_vec();
    assert_eq!(all.len(), 5);
    for c in all {
        let kind = c.kind();
        assert!(
            std::ptr::addr_eq(connectors::connector(kind), c),
            "{kind:?}: the registry names it"
        );
        // built-in mappings name canonical tables and columns only
        for (table, m) in c.builtin() {
            let spec = cslake_pipeline::lake::schema::core_table(table)
                .unwrap_or_else(|| panic!("{kind:?}: built-in table {table} is not canonical"));
            for col in m.columns.keys().chain(m.constants.keys()) {
                assert!(
                    spec.column(col).is_some(),
                    "{kind:?}: {table}.{col} is not a canonical column"
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(std::sync::Mutex::new((Mode::Pages, 0)));
        let f = vendor(kind, state.clone());
        std::fs::write(dir.path().join("cslake.toml"), config(kind, &f.url)).unwrap();
        let name = format!("{kind:?}").to_lowercase();
        let creds = credentials(kind);
        let env: Vec<(&str, &str)> = creds.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ingest = ["ingest", "--source", name.as_str()];

        // credentials come from the environment only: without them, exit 2 naming the
        // variable, before any request
        let out = cslake(dir.path(), &ingest);
        assert_eq!(out.code, 2, "{kind:?}: {}", out.stderr);
        assert!(out.stderr.contains(&creds[0].0), "{kind:?}: {}", out.stderr);
        assert!(
            f.requests().is_empty(),
            "{kind:?}: nothing is sent without credentials"
        );

        // every stream reads both pages
        let out = cslake_env(dir.path(), &ingest, &env).ok();
        let tables = out.summary()["tables"].as_array().cloned().unwrap_or_default();
        assert!(!tables.is_empty(), "{kind:?}: {}", out.stdout);
        for t in &tables {
            assert_eq!(t["pages"].as_u64().unwrap_or_default() % 2, 0, "{kind:?}: {t}");
            assert!(
                t["pages"].as_u64() >= Some(2),
                "{kind:?}: both pages of every stream: {t}"
            );
        }
        assert!(
            f.requests()
                .iter()
                .filter(|r| !r.path.ends_with("/token"))
                .all(|r| r
                    .headers
                    .get("authorization")
                    .is_some_and(|a| a.contains("secret-value") || a.contains(" t"))),
            "{kind:?}: every request carries the credentials"
        );

        // the next run asks only for what changed since the newest change loaded (2026-03-02)
        f.clear();
        cslake_env(dir.path(), &ingest, &env).ok();
        if c.builtin().iter().any(|(_, m)| m.incremental.is_some()) || kind == SourceKind::Rest {
            let asked: Vec<String> = f
                .requests()
                .iter()
                .map(|r| format!("{:?} {}", r.query, r.body))
                .collect();
            assert!(
                asked.iter().any(|a| ["2026-03-02", "1772445600000", "1772000002"]
                    .iter()
                    .any(|c| a.contains(c))),
                "{kind:?}: no request carries the cursor: {asked:?}"
            );
        }

        // a 429 with Retry-After is waited out, and the run goes on
        f.clear();
        *state.lock().unwrap() = (Mode::Limited, 0);
        cslake_env(dir.path(), &["ingest", "--source", name.as_str(), "--full"], &env).ok();
        assert!(
            f.requests().iter().any(|r| !r.path.ends_with("/token")),
            "{kind:?}"
        );

        // rejected credentials stop the source with exit 2, without a retry storm
        f.clear();
        *state.lock().unwrap() = (Mode::Unauthorized, 0);
        let out = cslake_env(dir.path(), &["ingest", "--source", name.as_str(), "--full"], &env);
        assert_eq!(out.code, 2, "{kind:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("credentials rejected"),
            "{kind:?}: {}",
            out.stderr
        );
        assert!(
            f.requests().len() <= 3,
            "{kind:?}: {} requests after a 401",
            f.requests().len()
        );
    }
}
