//! API connectors against local fixture servers that speak each API's documented shapes:
//! paging, auth, incremental reads, and the failures real APIs produce (429 with Retry-After,
//! 500s, expired tokens, malformed JSON, rejected credentials, pages that repeat records).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::fixture::{Fixture, Req, Resp};
use crate::{cslake, cslake_env, query};

fn tempdir() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().to_path_buf();
    (t, p)
}

fn company(id: &str, name: &str, updated: &str) -> serde_json::Value {
    json!({
        "id": id,
        "properties": {"name": name, "industry": "Software", "hubspot_owner_id": "9", "country": "US",
            "createdate": "2024-01-05T10:00:00.000Z", "arr_band": "100k+", "hs_lastmodifieddate": updated},
        "createdAt": "2024-01-05T10:00:00.000Z", "updatedAt": updated, "archived": false
    })
}

#[test]
fn hubspot_lands_companies_contacts_owners_and_deals_then_reads_only_changes() {
    let throttled = AtomicUsize::new(0);
    let server = Fixture::start(move |r: &Req| {
        if r.headers.get("authorization").map(String::as_str) != Some("Bearer pat-na1-secret") {
            return Resp::status(401, r#"{"status":"error","category":"INVALID_AUTHENTICATION"}"#);
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/crm/v3/objects/companies") => {
                // the first call is rate limited, as HubSpot does under burst
                if throttled.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Resp::status(429, r#"{"status":"error","category":"RATE_LIMITS"}"#)
                        .header("Retry-After", "1");
                }
                match r.q("after") {
                    None => Resp::json(json!({
                        "results": [company("101", "Acme", "2026-03-01T10:00:00.000Z"), company("102", "Globex", "2026-03-02T10:00:00.000Z")],
                        "paging": {"next": {"after": "102", "link": "…"}}
                    })),
                    // the second page repeats a record of the first
                    Some("102") => Resp::json(json!({
                        "results": [company("102", "Globex", "2026-03-02T10:00:00.000Z"), company("103", "Initech", "2026-03-03T10:00:00.000Z")]
                    })),
                    Some(other) => Resp::status(400, &format!("unexpected after={other}")),
                }
            }
            ("POST", "/crm/v3/objects/companies/search") => Resp::json(json!({
                "total": 1,
                "results": [company("103", "Initech Corp", "2026-03-05T09:00:00.000Z")]
            })),
            ("GET", "/crm/v3/objects/contacts") => Resp::json(json!({"results": [
                {"id": "201", "properties": {"email": "ana@acme.com", "firstname": "Ana", "lastname": "Ruiz", "jobtitle": "VP Ops",
                    "associatedcompanyid": "101", "createdate": "2024-02-01T00:00:00Z"}, "updatedAt": "2026-03-01T00:00:00Z"},
                {"id": "202", "properties": {"email": "bo@globex.com", "firstname": "Bo", "lastname": null,
                    "associatedcompanyid": "102", "createdate": "2024-02-01T00:00:00Z"}, "updatedAt": "2026-03-01T00:00:00Z"}
            ]})),
            ("POST", "/crm/v3/objects/contacts/search") => Resp::json(json!({"total": 0, "results": []})),
            ("GET", "/crm/v3/owners") => Resp::json(json!({"results": [
                {"id": "9", "email": "sam@vendor.com", "firstName": "Sam", "lastName": "Lee", "teams": [{"id": "1", "name": "Enterprise", "primary": true}]}
            ]})),
            ("GET", "/crm/v3/objects/deals") => Resp::json(json!({"results": [
                {"id": "301", "properties": {"dealname": "Acme renewal 2026", "amount": "12000", "dealstage": "closedwon",
                    "closedate": "2026-02-01T00:00:00Z", "hs_is_closed": "true", "hs_is_closed_won": "true", "dealtype": "existingbusiness",
                    "hubspot_owner_id": "9", "createdate": "2025-12-01T00:00:00Z", "pipeline": "default"},
                 "associations": {"companies": {"results": [{"id": "101", "type": "deal_to_company"}]}}, "updatedAt": "2026-02-01T00:00:00Z"}
            ]})),
            _ => Resp::status(404, "{}"),
        }
    });
    let (_t, dir) = tempdir();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            "[[sources]]\nname = \"crm\"\nkind = \"hubspot\"\nbase_url = \"{}\"\n\n\
             [sources.tables.accounts]\nfields = [\"arr_band\"]\n",
            server.url
        ),
    )
    .unwrap();
    let env = [("HUBSPOT_TOKEN", "pat-na1-secret")];
    let out = cslake_env(&dir, &["ingest"], &env).ok();
    let s = out.summary();
    assert_eq!(s["sources"][0]["source"], "crm", "{s}");
    assert_eq!(s["rejected"], 0, "{s}");

    assert_eq!(
        query(
            &dir,
            "SELECT account_id, name, csm_id, country FROM core.accounts ORDER BY account_id"
        ),
        [
            "account_id,name,csm_id,country",
            "101,Acme,9,US",
            "102,Globex,9,US",
            "103,Initech,9,US"
        ]
    );
    let attrs = query(
        &dir,
        "SELECT attributes FROM core.accounts WHERE account_id = '101'",
    );
    assert!(
        attrs[1].contains("properties.arr_band") && attrs[1].contains("100k+"),
        "custom property kept: {attrs:?}"
    );
    assert_eq!(
        query(
            &dir,
            "SELECT contact_id, account_id, name, role FROM core.contacts ORDER BY contact_id"
        ),
        [
            "contact_id,account_id,name,role",
            "201,101,Ana Ruiz,VP Ops",
            "202,102,Bo,"
        ]
    );
    assert_eq!(
        query(&dir, "SELECT csm_id, name, team FROM core.csms"),
        ["csm_id,name,team", "9,Sam Lee,Enterprise"]
    );
    assert_eq!(
        query(
            &dir,
            "SELECT deal_id, account_id, amount, stage, is_won, close_date FROM core.deals"
        ),
        [
            "deal_id,account_id,amount,stage,is_won,close_date",
            "301,101,12000.0,closedwon,true,2026-02-01"
        ]
    );
    // the list asked for the mapped and the configured properties
    let first = &server.to("/crm/v3/objects/companies")[1];
    let props = first.q("properties").unwrap();
    assert!(
        props.contains("arr_band") && props.contains("hubspot_owner_id"),
        "{props}"
    );

    // the next run reads companies and contacts changed since the newest change loaded
    server.clear();
    let s = cslake_env(&dir, &["ingest", "--source", "crm"], &env)
        .ok()
        .summary();
    let search = server.to("/crm/v3/objects/companies/search");
    assert_eq!(search.len(), 1, "{:?}", server.requests());
    let body: serde_json::Value = serde_json::from_str(&search[0].body).unwrap();
    assert_eq!(
        body["filterGroups"][0]["filters"][0]["propertyName"],
        "hs_lastmodifieddate"
    );
    assert_eq!(body["filterGroups"][0]["filters"][0]["operator"], "GTE");
    // 2026-03-03T10:00:00Z in epoch milliseconds
    assert_eq!(body["filterGroups"][0]["filters"][0]["value"], "1772532000000");
    assert!(
        server
            .to("/crm/v3/objects/companies")
            .iter()
            .all(|r| r.method == "POST")
    );
    let accounts = s["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "accounts")
        .cloned()
        .unwrap();
    assert_eq!(
        (accounts["inserted"].as_u64(), accounts["updated"].as_u64()),
        (Some(0), Some(1)),
        "{s}"
    );
    assert_eq!(
        query(
            &dir,
            "SELECT COUNT(*) AS n, MAX(name) AS newest FROM core.accounts WHERE account_id = '103'"
        ),
        ["n,newest", "1,Initech Corp"]
    );
    assert_eq!(query(&dir, "SELECT COUNT(*) AS n FROM core.deals"), ["n", "1"]);
    assert_eq!(
        query(
            &dir,
            "SELECT stream, cursor FROM ops.source_cursors WHERE source = 'crm' ORDER BY stream"
        ),
        [
            "stream,cursor",
            "accounts,2026-03-05T09:00:00.000Z",
            "contacts,2026-03-01T00:00:00Z"
        ]
    );
}

#[test]
fn stripe_pages_by_last_id_retries_server_errors_and_derives_mrr() {
    let failures = AtomicUsize::new(0);
    let server = Fixture::start(move |r: &Req| {
        let page = |data: serde_json::Value, more: bool| {
            Resp::json(json!({"object": "list", "data": data, "has_more": more, "url": r.path}))
        };
        match r.path.as_str() {
            "/v1/customers" => match r.q("starting_after") {
                None => page(
                    json!([{"id": "cus_A", "object": "customer", "name": "Acme", "email": "billing@acme.com", "created": 1735689600, "address": {"country": "DE"}, "livemode": false}]),
                    true,
                ),
                Some("cus_A") => {
                    // a transient failure in the middle of paging
                    if failures.fetch_add(1, Ordering::SeqCst) == 0 {
                        return Resp::status(500, r#"{"error":{"type":"api_error"}}"#);
                    }
                    page(
                        json!([{"id": "cus_B", "object": "customer", "name": "Globex", "created": 1738368000, "address": null}]),
                        false,
                    )
                }
                Some(x) => Resp::status(400, &format!("bad cursor {x}")),
            },
            "/v1/subscriptions" => {
                assert_eq!(r.q("status"), Some("all"));
                page(
                    json!([
                        {"id": "sub_1", "customer": "cus_A", "status": "active", "start_date": 1735689600, "ended_at": null, "created": 1735689600,
                         "items": {"object": "list", "data": [{"quantity": 20, "price": {"id": "price_team", "nickname": "Team", "unit_amount": 1500, "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}}}]}},
                        {"id": "sub_2", "customer": "cus_B", "status": "canceled", "start_date": 1738368000, "ended_at": 1769904000, "created": 1738368000,
                         "items": {"object": "list", "data": [{"quantity": 1, "price": {"id": "price_ent_y", "unit_amount": 1200000, "currency": "usd", "recurring": {"interval": "year", "interval_count": 1}}}]}}
                    ]),
                    false,
                )
            }
            "/v1/invoices" => page(
                json!([
                    {"id": "in_1", "customer": "cus_A", "created": 1769904000, "due_date": 1771113600, "amount_due": 30000, "currency": "usd",
                     "status": "paid", "paid": true, "attempt_count": 2, "status_transitions": {"paid_at": 1770076800}},
                    {"id": "in_2", "customer": "cus_B", "created": 1769904000, "due_date": null, "amount_due": 100000, "currency": "usd",
                     "status": "open", "paid": false, "attempt_count": 3, "status_transitions": {"paid_at": null}}
                ]),
                false,
            ),
            _ => Resp::status(404, "{}"),
        }
    });
    let (_t, dir) = tempdir();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            "[[sources]]\nname = \"billing\"\nkind = \"stripe\"\nbase_url = \"{}\"\nbackoff_ms = 20\n",
            server.url
        ),
    )
    .unwrap();
    let env = [("STRIPE_API_KEY", "sk_test_abc123")];
    cslake_env(&dir, &["ingest"], &env).ok();
    assert_eq!(
        query(
            &dir,
            "SELECT account_id, name, country, created_date FROM core.accounts ORDER BY 1"
        ),
        [
            "account_id,name,country,created_date",
            "cus_A,Acme,DE,2025-01-01",
            "cus_B,Globex,,2025-02-01"
        ]
    );
    assert_eq!(
        query(
            &dir,
            "SELECT subscription_id, plan, seats, mrr, start_date, end_date, status FROM core.subscriptions ORDER BY 1"
        ),
        [
            "subscription_id,plan,seats,mrr,start_date,end_date,status",
            "sub_1,Team,20,300.0,2025-01-01,,active",
            "sub_2,price_ent_y,1,1000.0,2025-02-01,2026-02-01,canceled"
        ]
    );
    assert_eq!(
        query(
            &dir,
            "SELECT invoice_id, amount, status, paid_date, payment_failures FROM core.invoices ORDER BY 1"
        ),
        [
            "invoice_id,amount,status,paid_date,payment_failures",
            "in_1,300.0,paid,2026-02-03,1",
            "in_2,1000.0,open,,3"
        ]
    );
    let customers = server.to("/v1/customers");
    assert_eq!(
        customers.len(),
        3,
        "first page, a 500, then the retried second page"
    );
    assert_eq!(customers[0].headers["authorization"], "Bearer sk_test_abc123");

    server.clear();
    cslake_env(&dir, &["ingest"], &env).ok();
    assert_eq!(
        server.to("/v1/customers")[0].q("created[gte]"),
        Some("1738368000")
    );
    // invoices look 35 days behind their cursor, to see payments of recent invoices
    assert_eq!(server.to("/v1/invoices")[0].q("created[gte]"), Some("1766880000"));
    assert_eq!(
        server.to("/v1/subscriptions")[0].q("created[gte]"),
        None,
        "subscriptions are read in full"
    );
    assert_eq!(
        query(&dir, "SELECT COUNT(*) AS n FROM core.subscriptions"),
        ["n", "2"]
    );
}

#[test]
fn a_long_api_history_is_staged_on_disk_and_lands_once() {
    // 60 pages of 100 invoices, more than the table may hold in memory ([ingest] spill_rows =
    // 500): each page becomes a batch, staged to disk as they come, and one commit lands them;
    // an invoice seen again on a later page (paid since) lands in its last version, and an item
    // that is not an object is quarantined with its page and row
    const PAGES: usize = 60;
    let server = Fixture::start(move |r: &Req| {
        let list = |data: Vec<serde_json::Value>, more: bool| {
            Resp::json(json!({"object": "list", "data": data, "has_more": more, "url": r.path}))
        };
        let invoice = |i: usize, status: &str| {
            json!({"id": format!("in_{i:05}"), "customer": "cus_A", "created": 1769904000 + i, "due_date": null,
                   "amount_due": 1000 + i, "currency": "usd", "status": status, "paid": status == "paid",
                   "attempt_count": 1, "status_transitions": {"paid_at": null}})
        };
        match r.path.as_str() {
            "/v1/customers" => list(
                vec![json!({"id": "cus_A", "object": "customer", "name": "Acme", "created": 1735689600})],
                false,
            ),
            "/v1/subscriptions" => list(vec![], false),
            "/v1/invoices" => {
                let page = r
                    .q("starting_after")
                    .map_or(0, |id| id[3..].parse::<usize>().unwrap() / 100 + 1);
                let mut data: Vec<serde_json::Value> = (page * 100..page * 100 + 100)
                    .map(|i| invoice(i, "open"))
                    .collect();
                if page == 30 {
                    // in_00007 again, paid by now; and an item that is not an object
                    data.insert(10, invoice(7, "paid"));
                    data.insert(20, json!("not an invoice"));
                }
                list(data, page + 1 < PAGES)
            }
            _ => Resp::status(404, "{}"),
        }
    });
    let (_t, dir) = tempdir();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            "[ingest]\nspill_rows = 500\n\n[[sources]]\nname = \"billing\"\nkind = \"stripe\"\nbase_url = \"{}\"\n",
            server.url
        ),
    )
    .unwrap();
    let out = cslake_env(
        &dir,
        &["ingest"],
        &[
            ("STRIPE_API_KEY", "sk_test_abc123"),
            ("RUST_LOG", "cslake_pipeline::ingest=info"),
        ],
    )
    .ok();
    assert!(
        out.stderr.contains("loaded (from the spill)"),
        "the invoices were staged on disk: {}",
        out.stderr
    );
    let s = out.summary();
    let invoices = s["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "invoices")
        .unwrap()
        .clone();
    assert_eq!(
        (
            invoices["pages"].as_u64(),
            invoices["read"].as_u64(),
            invoices["rejected"].as_u64(),
            invoices["inserted"].as_u64()
        ),
        (Some(PAGES as u64), Some(6002), Some(1), Some(6000)),
        "{invoices}"
    );
    assert_eq!(
        query(
            &dir,
            "SELECT COUNT(*) AS n, COUNT(DISTINCT invoice_id) AS ids, ROUND(SUM(amount), 2) AS amount FROM core.invoices"
        ),
        // amounts in cents: 10.00 to 69.99
        ["n,ids,amount", "6000,6000,239970.0"]
    );
    assert_eq!(
        query(
            &dir,
            "SELECT status FROM core.invoices WHERE invoice_id = 'in_00007'"
        ),
        ["status", "paid"],
        "the last version of an entity wins"
    );
    let q = query(
        &dir,
        "SELECT table_name, origin, row_number, reason FROM ops.quarantine",
    );
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(
        q[1].starts_with("invoices,") && q[1].contains("starting_after=in_02999"),
        "the page is named: {q:?}"
    );
    assert!(
        q[1].ends_with(",21,\"row 21: expected a JSON object, found \"\"not an invoice\"\"\""),
        "{q:?}"
    );
}

#[test]
fn salesforce_soql_pages_and_renews_an_expired_token() {
    let tokens = AtomicUsize::new(0);
    let server = Fixture::start(move |r: &Req| {
        let base = r.headers.get("host").cloned().unwrap_or_default();
        match r.path.as_str() {
            "/services/oauth2/token" => {
                assert!(r.body.contains("grant_type=client_credentials"), "{}", r.body);
                let n = tokens.fetch_add(1, Ordering::SeqCst);
                Resp::json(
                    json!({"access_token": format!("tok{n}"), "instance_url": format!("http://{base}"), "token_type": "Bearer"}),
                )
            }
            "/services/data/v60.0/query" => {
                // the first token has expired by the time it is used
                if r.headers["authorization"] == "Bearer tok0" {
                    return Resp::status(
                        401,
                        r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
                    );
                }
                let q = r.q("q").unwrap();
                if q.contains("FROM Account") {
                    Resp::json(
                        json!({"totalSize": 3, "done": false, "nextRecordsUrl": "/services/data/v60.0/query/01gRO-2000",
                        "records": [
                            {"attributes": {"type": "Account", "url": "/x"}, "Id": "001A", "Name": "Acme", "Industry": "Retail", "OwnerId": "005X",
                             "BillingCountry": "FR", "CreatedDate": "2024-01-15T10:00:00.000+0000", "SystemModstamp": "2026-03-01T10:00:00.000+0000", "Tier__c": "Gold"},
                            {"attributes": {"type": "Account"}, "Id": "001B", "Name": "Globex", "SystemModstamp": "2026-03-02T10:00:00.000+0000", "CreatedDate": "2024-01-16T10:00:00.000+0000"}
                        ]}),
                    )
                } else if q.contains("FROM Contact") {
                    Resp::json(json!({"totalSize": 1, "done": true, "records": [
                        {"attributes": {"type": "Contact"}, "Id": "003A", "AccountId": "001A", "Email": "jo@acme.fr", "Name": "Jo Martin",
                         "Title": "CTO", "CreatedDate": "2024-02-01T00:00:00.000+0000", "SystemModstamp": "2026-03-01T00:00:00.000+0000"}
                    ]}))
                } else {
                    Resp::json(json!({"totalSize": 0, "done": true, "records": []}))
                }
            }
            "/services/data/v60.0/query/01gRO-2000" => {
                Resp::json(json!({"totalSize": 3, "done": true, "records": [
                    {"attributes": {"type": "Account"}, "Id": "001C", "Name": "Initech", "SystemModstamp": "2026-03-03T10:00:00.000+0000", "CreatedDate": "2024-01-17T10:00:00.000+0000"}
                ]}))
            }
            _ => Resp::status(404, "[]"),
        }
    });
    let (_t, dir) = tempdir();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            "[[sources]]\nname = \"sfdc\"\nkind = \"salesforce\"\nonly = [\"accounts\", \"contacts\"]\n\
             auth = {{ type = \"oauth2_client_credentials\", token_url = \"{}/services/oauth2/token\", client_id_env = \"SF_ID\", client_secret_env = \"SF_SECRET\" }}\n\n\
             [sources.tables.accounts]\nfields = [\"Tier__c\"]\ncolumns = {{ segment = \"Tier__c\" }}\n",
            server.url
        ),
    )
    .unwrap();
    let env = [("SF_ID", "client-id"), ("SF_SECRET", "client-secret-xyz")];
    cslake_env(&dir, &["ingest"], &env).ok();
    assert_eq!(
        query(
            &dir,
            "SELECT account_id, name, segment, created_date FROM core.accounts ORDER BY 1"
        ),
        [
            "account_id,name,segment,created_date",
            "001A,Acme,Gold,2024-01-15",
            "001B,Globex,,2024-01-16",
            "001C,Initech,,2024-01-17"
        ]
    );
    let attrs = query(
        &dir,
        "SELECT attributes FROM core.accounts WHERE account_id = '001A'",
    );
    assert!(
        !attrs[1].contains("attributes.url"),
        "Salesforce record metadata is not an attribute: {attrs:?}"
    );
    assert_eq!(
        query(&dir, "SELECT contact_id, account_id, name FROM core.contacts"),
        ["contact_id,account_id,name", "003A,001A,Jo Martin"]
    );
    let soql = server.to("/services/data/v60.0/query");
    assert!(
        soql[1].q("q").unwrap().contains("Tier__c"),
        "{:?}",
        soql[1].q("q")
    );

    server.clear();
    cslake_env(&dir, &["ingest"], &env).ok();
    let q = server.to("/services/data/v60.0/query")[0]
        .q("q")
        .unwrap()
        .to_string();
    assert!(
        q.ends_with("FROM Account WHERE SystemModstamp >= 2026-03-03T10:00:00Z ORDER BY SystemModstamp"),
        "{q}"
    );
}

#[test]
fn generic_rest_source_by_configuration_alone() {
    // offset paging with an API key header for accounts, Link-header paging for tickets
    let broken = Mutex::new(false);
    let server = Fixture::start(move |r: &Req| {
        let switch = r.path == "/break" || r.path == "/fix";
        if !switch && r.headers.get("x-api-key").map(String::as_str) != Some("key-777") {
            return Resp::status(403, r#"{"error":"forbidden"}"#);
        }
        match r.path.as_str() {
            "/api/v2/orgs" => {
                let offset: usize = r.q("offset").unwrap_or("0").parse().unwrap();
                let all = [("o1", "Acme"), ("o2", "Globex"), ("o3", "Initech")];
                let page: Vec<_> = all
                    .iter()
                    .skip(offset)
                    .take(2)
                    .map(|(id, n)| json!({"org": {"id": id, "display_name": n}, "plan_tier": "growth", "seats_bought": 10}))
                    .collect();
                Resp::json(json!({"payload": {"orgs": page}}))
            }
            "/api/v2/tickets" => {
                if *broken.lock().unwrap() {
                    return Resp::status(200, r#"[{"id": "t9", "org_id": "o1""#);
                }
                match r.q("page") {
                    None => Resp::json(json!([{"id": "t1", "org_id": "o1", "opened": "03/01/2026 09:30", "state": "solved", "modified": "2026-03-01T12:00:00Z"}]))
                        .header("Link", &format!("<http://{}/api/v2/tickets?page=2>; rel=\"next\"", r.headers["host"])),
                    Some("2") => Resp::json(json!([{"id": "t2", "org_id": "o2", "opened": "03/02/2026 10:00", "state": "open", "modified": "2026-03-02T12:00:00Z"}])),
                    Some(_) => Resp::json(json!([])),
                }
            }
            "/break" => {
                *broken.lock().unwrap() = true;
                Resp::json(json!({}))
            }
            "/fix" => {
                *broken.lock().unwrap() = false;
                Resp::json(json!({}))
            }
            _ => Resp::status(404, "{}"),
        }
    });
    let (_t, dir) = tempdir();
    let config = format!(
        r#"[[sources]]
name = "helpdesk"
kind = "rest"
base_url = "{url}/api/v2"
auth = {{ type = "header", name = "X-Api-Key", token_env = "HELPDESK_KEY" }}

[sources.tables.accounts]
path = "orgs"
records = "payload.orgs"
paging = {{ type = "offset", param = "offset", limit_param = "limit", page_size = 2 }}
columns = {{ account_id = "org.id", name = "org.display_name", plan = "plan_tier", seats = "seats_bought" }}

[sources.tables.interactions]
path = "tickets"
paging = {{ type = "link" }}
incremental = {{ field = "modified", param = "updated_since" }}
columns = {{ interaction_id = "id", account_id = "org_id", occurred_at = "opened", status = "state" }}
constants = {{ kind = "ticket" }}
date_formats = ["%m/%d/%Y %H:%M"]
"#,
        url = server.url
    );
    std::fs::write(dir.join("cslake.toml"), config).unwrap();
    let env = [("HELPDESK_KEY", "key-777")];
    cslake_env(&dir, &["ingest", "--source", "helpdesk"], &env).ok();
    assert_eq!(
        query(
            &dir,
            "SELECT account_id, name, plan, seats FROM core.accounts ORDER BY 1"
        ),
        [
            "account_id,name,plan,seats",
            "o1,Acme,growth,10",
            "o2,Globex,growth,10",
            "o3,Initech,growth,10"
        ]
    );
    assert_eq!(
        query(
            &dir,
            "SELECT interaction_id, account_id, kind, occurred_at, status FROM core.interactions ORDER BY 1"
        ),
        [
            "interaction_id,account_id,kind,occurred_at,status",
            "t1,o1,ticket,2026-03-01T09:30:00Z,solved",
            "t2,o2,ticket,2026-03-02T10:00:00Z,open"
        ]
    );
    let orgs = server.to("/api/v2/orgs");
    assert_eq!(
        orgs.iter()
            .map(|r| r.q("offset").unwrap_or("-").to_string())
            .collect::<Vec<_>>(),
        ["-", "2"],
        "the short second page ends the paging"
    );

    // malformed JSON: the run fails naming the URL, loads nothing, and keeps the cursor
    reqwest_get(&format!("{}/break", server.url));
    server.clear();
    let out = cslake_env(&dir, &["ingest", "--source", "helpdesk"], &env);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("source 'helpdesk': GET ")
            && out
                .stderr
                .contains("/api/v2/tickets?updated_since=2026-03-02T12%3A00%3A00Z sent malformed JSON"),
        "{}",
        out.stderr
    );
    assert_eq!(
        query(
            &dir,
            "SELECT cursor FROM ops.source_cursors WHERE stream = 'interactions'"
        ),
        ["cursor", "2026-03-02T12:00:00Z"]
    );
    let runs = query(
        &dir,
        "SELECT status FROM ops.runs WHERE command = 'ingest' ORDER BY started_at",
    );
    assert_eq!(runs, ["status", "succeeded", "failed"]);
    reqwest_get(&format!("{}/fix", server.url));
    cslake_env(&dir, &["ingest", "--source", "helpdesk"], &env).ok();
    assert_eq!(
        query(&dir, "SELECT COUNT(*) AS n FROM core.interactions"),
        ["n", "2"]
    );

    // rejected credentials: no retry, exit 2, the variable named and the secret never shown
    server.clear();
    let out = cslake_env(
        &dir,
        &["ingest", "--source", "helpdesk"],
        &[("HELPDESK_KEY", "wrong-key-123")],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("credentials rejected") && out.stderr.contains("HELPDESK_KEY"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong-key-123") && !out.stdout.contains("wrong-key-123"));
    assert_eq!(server.requests().len(), 1, "a 403 is not retried");

    // a missing variable is a configuration error before any request
    let out = cslake(&dir, &["ingest", "--source", "helpdesk"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("the environment variable HELPDESK_KEY is not set"),
        "{}",
        out.stderr
    );
}

/// A GET without a client library: the fixture's switch endpoints.
fn reqwest_get(url: &str) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).ok();
}

#[test]
fn google_calendar_meetings_land_on_the_attendees_accounts() {
    let server = Fixture::start(move |r: &Req| match r.path.as_str() {
        "/token" => {
            assert!(
                r.body.contains("grant_type=refresh_token") && r.body.contains("refresh_token=rt-1"),
                "{}",
                r.body
            );
            Resp::json(json!({"access_token": "ya29.x", "expires_in": 3599, "token_type": "Bearer"}))
        }
        "/calendar/v3/calendars/cs%40vendor.com/events" => {
            assert_eq!(r.headers["authorization"], "Bearer ya29.x");
            assert_eq!(r.q("singleEvents"), Some("true"));
            match r.q("pageToken") {
                None => Resp::json(
                    json!({"kind": "calendar#events", "nextPageToken": "p2", "items": [
                        {"id": "ev1", "status": "confirmed", "summary": "QBR Acme", "updated": "2026-03-01T08:00:00.000Z",
                         "start": {"dateTime": "2026-03-02T15:00:00+01:00"}, "organizer": {"email": "cs@vendor.com"},
                         "attendees": [{"email": "cs@vendor.com"}, {"email": "Ana@Acme.com"}, {"email": "room-1@resource.calendar.google.com", "resource": true}]},
                        {"id": "ev2", "status": "confirmed", "summary": "Team standup", "updated": "2026-03-01T09:00:00.000Z",
                         "start": {"dateTime": "2026-03-02T09:00:00Z"}, "attendees": [{"email": "cs@vendor.com"}]}
                    ]}),
                ),
                Some("p2") => Resp::json(json!({"kind": "calendar#events", "items": [
                    {"id": "ev3", "status": "confirmed", "summary": "Globex onboarding", "updated": "2026-03-04T09:00:00.000Z",
                     "start": {"date": "2026-03-05"}, "attendees": [{"email": "new.person@globex.com"}]}
                ]})),
                Some(_) => Resp::json(json!({"items": []})),
            }
        }
        _ => Resp::status(404, "{}"),
    });
    let (_t, dir) = tempdir();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/accounts.csv"),
        "account_id,name\nA1,Acme\nA2,Globex\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("data/contacts.csv"),
        "contact_id,account_id,email\nc1,A1,ana@acme.com\nc2,A2,bo@globex.com\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            "[ingest]\nsource = \"data\"\n\n[[sources]]\nname = \"calendar\"\nkind = \"google_calendar\"\n\
             base_url = \"{url}/calendar/v3\"\ncalendars = [\"cs@vendor.com\"]\n\
             auth = {{ type = \"oauth2_refresh_token\", token_url = \"{url}/token\", client_id_env = \"G_ID\", client_secret_env = \"G_SECRET\", refresh_token_env = \"G_REFRESH\" }}\n",
            url = server.url
        ),
    )
    .unwrap();
    let env = [("G_ID", "cid"), ("G_SECRET", "csecret"), ("G_REFRESH", "rt-1")];
    let s = cslake_env(&dir, &["ingest"], &env).ok().summary();
    assert_eq!(
        s["sources"].as_array().unwrap().len(),
        2,
        "the file drop, then the calendar: {s}"
    );
    assert_eq!(
        query(
            &dir,
            "SELECT interaction_id, account_id, contact_id, kind, occurred_at, subject FROM core.interactions ORDER BY 1"
        ),
        [
            "interaction_id,account_id,contact_id,kind,occurred_at,subject",
            "gcal:ev1,A1,c1,meeting,2026-03-02T14:00:00Z,QBR Acme",
            "gcal:ev3,A2,,meeting,2026-03-05T00:00:00Z,Globex onboarding"
        ]
    );
    server.clear();
    cslake_env(&dir, &["ingest", "--source", "calendar"], &env).ok();
    let ev = server.to("/calendar/v3/calendars/cs%40vendor.com/events");
    assert_eq!(ev[0].q("updatedMin"), Some("2026-03-04T09:00:00.000Z"));
}

/// A help centre's article list through the generic REST source, with the documented mapping of
/// docs/connectors.md (Zendesk Guide's shapes: `articles`, `next_page` URLs, `label_names` arrays,
/// basic auth as `email/token`): the catalogue lands, and its labels say what each article teaches.
#[test]
fn a_help_centre_lands_as_the_content_catalogue() {
    let server = Fixture::start(move |r: &Req| {
        // "ann@vendor.example/token:tok-1" in base64
        if r.headers.get("authorization").map(String::as_str)
            != Some("Basic YW5uQHZlbmRvci5leGFtcGxlL3Rva2VuOnRvay0x")
        {
            return Resp::status(401, r#"{"error":"Couldn't authenticate you"}"#);
        }
        let host = &r.headers["host"];
        match (r.path.as_str(), r.q("page")) {
            ("/api/v2/help_center/articles.json", None) => Resp::json(json!({
                "articles": [
                    {"id": 360001, "html_url": "https://help.vendor.example/hc/en-us/articles/360001-Set-up-SSO",
                     "title": "Set up single sign-on", "body": "<p>…</p>", "locale": "en-us",
                     "label_names": ["sso_login", "security"], "updated_at": "2026-02-01T10:00:00Z", "draft": false},
                    {"id": 360002, "html_url": "https://help.vendor.example/hc/en-us/articles/360002-Reports",
                     "title": "Build your first report", "body": "<p>…</p>", "locale": "en-us",
                     "label_names": ["create_report"], "updated_at": "2026-02-03T10:00:00Z", "draft": false}
                ],
                "next_page": format!("http://{host}/api/v2/help_center/articles.json?page=2&per_page=2"),
                "page": 1, "page_count": 2, "count": 3
            })),
            ("/api/v2/help_center/articles.json", Some("2")) => Resp::json(json!({
                "articles": [
                    {"id": 360003, "html_url": "https://help.vendor.example/hc/de/articles/360003-Berichte",
                     "title": "Berichte exportieren", "body": "<p>…</p>", "locale": "de",
                     "label_names": [], "updated_at": "2026-02-05T10:00:00Z", "draft": false}
                ],
                "next_page": null, "page": 2, "page_count": 2, "count": 3
            })),
            _ => Resp::status(404, "{}"),
        }
    });
    let (_t, dir) = tempdir();
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            r#"[[sources]]
name = "help_centre"
kind = "rest"
base_url = "{url}/api/v2"
auth = {{ type = "basic", username_env = "ZENDESK_USER", password_env = "ZENDESK_TOKEN" }}

[sources.tables.content]
path = "help_center/articles.json"
records = "articles"
params = {{ per_page = "2" }}
paging = {{ type = "next_url", next = "next_page" }}
columns = {{ content_id = "id", url = "html_url", tags = "label_names", teaches = "label_names", language = "locale" }}
constants = {{ kind = "guide" }}
ignore = ["body"]
"#,
            url = server.url
        ),
    )
    .unwrap();
    let env = [
        ("ZENDESK_USER", "ann@vendor.example/token"),
        ("ZENDESK_TOKEN", "tok-1"),
    ];
    cslake_env(&dir, &["ingest", "--source", "help_centre"], &env).ok();
    assert_eq!(
        query(
            &dir,
            "SELECT content_id, title, kind, language, updated_at FROM core.content ORDER BY 1"
        )[1..],
        [
            "360001,Set up single sign-on,guide,en-us,2026-02-01T10:00:00Z",
            "360002,Build your first report,guide,en-us,2026-02-03T10:00:00Z",
            "360003,Berichte exportieren,guide,de,2026-02-05T10:00:00Z"
        ]
    );
    // the labels are what search and recommendations read
    let found = cslake(&dir, &["content", "search", "sso login", "--format", "json"]).ok();
    let hits: serde_json::Value = serde_json::from_str(&found.stdout).unwrap();
    assert_eq!(hits[0]["content_id"], "360001", "{hits}");
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
}
