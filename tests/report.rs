//! The executive report and the PostgreSQL copy, end to end on one lake: `cslake run` with
//! goals and `[publish.postgres]` (a real PostgreSQL server started here, installed by
//! .ci/setup), then `cslake report --deliver` to an SMTP server and a signed webhook. What a
//! reader sees is checked as a reader would: the PDF rendered to images by pdftoppm (no blank
//! page, nothing at the paper's edge) and its text by pdftotext; every KPI reconciles with the
//! tables, in the PDF, the HTML and PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::actions::{SmtpSink, verify_signature};
use crate::fixture::{Fixture, Resp};
use crate::{cslake_env, query};

/// A private PostgreSQL server (the Debian packages' binaries) on a free port; stopped when
/// dropped. As root, the server runs as the `postgres` user, as PostgreSQL requires.
struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_root: bool,
}

impl PgServer {
    fn start(dir: &Path) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                let mut v: Vec<PathBuf> = d
                    .filter_map(|e| Some(e.ok()?.path().join("bin")))
                    .filter(|b| b.join("initdb").exists())
                    .collect();
                v.sort();
                v.pop()
            })
            .expect("PostgreSQL is not installed: run .ci/setup (it installs Debian's postgresql)");
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        std::fs::create_dir_all(dir).unwrap();
        let data = dir.join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = Self {
            bin,
            data,
            port,
            as_root,
        };
        // TLS: a private CA and a certificate for 127.0.0.1, as a managed database would have
        let sh = |cmd: &str| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=cslake-test-ca 2>/dev/null",
        );
        sh(
            "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null",
        );
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        sh(
            "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext.cnf 2>/dev/null && chmod 600 server.key",
        );
        if as_root {
            assert!(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres")
                    .arg(dir)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let init = s.pg(
            "initdb",
            &["-D", s.data.to_str().unwrap(), "-A", "trust", "-U", "cslake"],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let opts = format!(
            "-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key",
            d = dir.display()
        );
        let log = dir.join("server.log");
        let up = s.pg(
            "pg_ctl",
            &[
                "-D",
                s.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        assert!(
            up.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        s
    }

    fn pg(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args)
            .current_dir("/")
            .output()
            .expect("PostgreSQL tool runs")
    }

    fn url(&self) -> String {
        format!(
            "postgres://cslake@127.0.0.1:{}/postgres?sslmode=require",
            self.port
        )
    }

    /// One query through psql: rows of `|`-separated values.
    fn query(&self, sql: &str) -> Vec<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", &self.url(), "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.pg(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"],
        );
    }
}

/// A PPM (P6) image: width, height, RGB bytes.
fn read_ppm(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..i]).to_string());
    }
    assert_eq!(fields[0], "P6");
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (w, h, bytes[i + 1..].to_vec())
}

const D: &str = "2026-06-30";

#[test]
#[allow(clippy::too_many_lines)]
fn report_and_postgres_agree_with_the_tables() {
    let (_tmp, dir) = crate::workspace(160, 420, D);
    let dir = dir.as_path();
    let pg = PgServer::start(&dir.join("pg"));
    let smtp = SmtpSink::start(&dir.join("mail"));
    let server = Fixture::start(|r| match r.path.as_str() {
        "/board" => Resp::json(json!({"ok": true})),
        _ => Resp::status(404, "{}"),
    });
    let secret = "whsec-report-0123456789";
    std::fs::write(
        dir.join("cslake.toml"),
        format!(
            r#"
[analytics]
cost_per_intervention = 5

[[analytics.goals]]
metric = "tasks_overdue"
target = 0
direction = "at_most"

[[analytics.goals]]
metric = "grr_12m"
target = 0.9

[publish.postgres]
url_env = "PG_URL"
schema = "bi"
ca_file = "pg/ca.pem"
tables = ["analytics.financial_impact", "analytics.benchmarks", "analytics.team_performance",
          "analytics.team_summary", "analytics.team_goals", "scores.risk_scores"]

[report]
title = "Acme CS report"
deliver = ["execs", "board"]
recipients = ["ceo@example.com", "cfo@example.com"]

[actions.smtp]
host = "localhost"
port = {port}
from = "cslake@example.com"
ca_file = "mail/smtp-ca.pem"

[[actions.channels]]
name = "execs"
kind = "email"

[[actions.channels]]
name = "board"
kind = "webhook"
url = "{url}/board"
secret_env = "BOARD_SECRET"
"#,
            port = smtp.port,
            url = server.url
        ),
    )
    .unwrap();
    let pg_url = pg.url();
    let env = [("PG_URL", pg_url.as_str()), ("BOARD_SECRET", secret)];
    let run = |args: &[&str]| cslake_env(dir, args, &env);

    // the whole day, ending with analytics and the PostgreSQL copy
    let day = run(&["run", "--as-of", D, "--source", "data"]).ok();
    let s = day.summary();
    let published = s["publish"]["tables"].as_array().unwrap_or_else(|| panic!("{s}"));
    assert_eq!(
        published.len(),
        6,
        "every analytics table and the risk scores: {s}"
    );
    assert!(published.iter().all(|t| t["created"] == true), "{s}");

    // goals: one row per goal per CSM
    let csms: usize = query(
        dir,
        &format!("SELECT COUNT(*) FROM team_performance WHERE as_of_date = DATE '{D}'"),
    )[1]
    .parse()
    .unwrap();
    assert!(csms > 1);
    let goals = query(
        dir,
        &format!(
            "SELECT metric, COUNT(*), SUM(CASE WHEN met THEN 1 ELSE 0 END) FROM team_goals WHERE as_of_date = DATE '{D}' GROUP BY metric ORDER BY metric"
        ),
    );
    assert_eq!(goals.len(), 3, "{goals:?}");
    assert!(goals[1].starts_with(&format!("grr_12m,{csms},")), "{goals:?}");
    assert!(
        goals[2].starts_with(&format!("tasks_overdue,{csms},")),
        "{goals:?}"
    );

    // teams add up to their CSMs
    let by_team = query(
        dir,
        &format!(
            "SELECT SUM(accounts), SUM(tasks_completed), SUM(alerts) FROM team_summary WHERE as_of_date = DATE '{D}'"
        ),
    );
    let by_csm = query(
        dir,
        &format!(
            "SELECT SUM(accounts), SUM(tasks_completed), SUM(alerts) FROM team_performance WHERE as_of_date = DATE '{D}'"
        ),
    );
    assert_eq!(by_team[1], by_csm[1]);
    let teams: usize = query(dir, "SELECT COUNT(DISTINCT team) FROM csms")[1]
        .parse()
        .unwrap();
    assert_eq!(
        query(
            dir,
            &format!("SELECT COUNT(*) FROM team_summary WHERE as_of_date = DATE '{D}'")
        )[1],
        teams.to_string()
    );

    // benchmarks: the company against itself, its segments and the shipped industry table
    let fi = query(
        dir,
        &format!(
            "SELECT mrr, revenue_at_risk_annual, expansion_pipeline_mrr, grr_12m, nrr_12m, logo_churn_12m, accounts FROM financial_impact \
             WHERE as_of_date = DATE '{D}' AND dimension = 'all'"
        ),
    );
    let fi: Vec<f64> = fi[1].split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect();
    let bench = query(
        dir,
        &format!(
            "SELECT kpi_value, industry_median, industry_source FROM benchmarks WHERE as_of_date = DATE '{D}' AND dimension = 'all' AND kpi = 'grr_12m'"
        ),
    );
    let b: Vec<&str> = bench[1].splitn(3, ',').collect();
    assert!(
        (b[0].parse::<f64>().unwrap() - fi[3]).abs() < 1e-9,
        "{bench:?} vs {fi:?}"
    );
    assert!(b[2].contains("SaaS Capital"), "{bench:?}");
    let segs: usize = query(dir, "SELECT COUNT(DISTINCT segment) FROM accounts")[1]
        .parse()
        .unwrap();
    let seg_rows: usize = query(dir, &format!("SELECT COUNT(*) FROM benchmarks WHERE as_of_date = DATE '{D}' AND dimension = 'segment' AND kpi = 'nrr_12m' AND peer_rank BETWEEN 1 AND {segs}"))[1].parse().unwrap();
    assert_eq!(seg_rows, segs);

    // nested columns are JSON in PostgreSQL: each risk score's reasons, queryable with SQL
    assert_eq!(
        pg.query(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = 'bi' \
             AND table_name = 'scores_risk_scores' AND column_name = 'top_factors'"
        ),
        ["jsonb"]
    );
    let first = query(
        dir,
        &format!(
            "SELECT account_id, top_factors[1]['feature'] AS f FROM risk_scores WHERE as_of_date = DATE '{D}' \
             AND array_length(top_factors) > 0 ORDER BY account_id LIMIT 1"
        ),
    );
    let (account, feature) = first[1].split_once(',').unwrap();
    assert_eq!(
        pg.query(&format!(
            "SELECT top_factors->0->>'feature' FROM bi.scores_risk_scores WHERE as_of_date = '{D}' AND account_id = '{account}'"
        )),
        [feature]
    );

    // a connection that fails says why (the unknown CA is checked with the report below)
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = format!("postgres://cslake@127.0.0.1:{port}/postgres?sslmode=require");
    let out = cslake_env(
        dir,
        &["publish", "--as-of", D],
        &[("PG_URL", refused.as_str()), ("BOARD_SECRET", secret)],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("nothing accepts connections at that host and port"),
        "{}",
        out.stderr
    );

    // PostgreSQL holds the same rows and numbers
    let lake_rows: usize = query(
        dir,
        &format!("SELECT COUNT(*) FROM financial_impact WHERE as_of_date = DATE '{D}'"),
    )[1]
    .parse()
    .unwrap();
    let pg_all = pg.query(&format!(
        "SELECT count(*) OVER (), revenue_at_risk_annual, grr_12m FROM bi.analytics_financial_impact WHERE as_of_date = '{D}' AND dimension = 'all'"
    ));
    let p: Vec<f64> = pg_all[0].split('|').map(|v| v.parse().unwrap()).collect();
    assert_eq!(
        pg.query(&format!(
            "SELECT count(*) FROM bi.analytics_financial_impact WHERE as_of_date = '{D}'"
        ))[0],
        lake_rows.to_string()
    );
    assert!(
        (p[1] - fi[1]).abs() < 0.005 && (p[2] - fi[3]).abs() < 1e-9,
        "{pg_all:?} vs {fi:?}"
    );
    assert_eq!(
        pg.query(&format!(
            "SELECT count(*) FROM bi.analytics_team_goals WHERE as_of_date = '{D}'"
        ))[0],
        (2 * csms).to_string()
    );
    // re-publishing the day: no duplicates; a row the lake no longer has is removed; a column
    // dropped by hand comes back (the sink migrates)
    pg.query(&format!(
        "INSERT INTO bi.analytics_financial_impact (dimension, value, as_of_date) VALUES ('segment', 'gone', '{D}'); \
         ALTER TABLE bi.analytics_benchmarks DROP COLUMN industry_url"
    ));
    let again = run(&["publish", "--as-of", D]).ok();
    let t = again.summary()["publish"]["tables"].clone();
    assert_eq!(t[0]["deleted"], 1, "{t}");
    assert_eq!(t[1]["added_columns"], json!(["industry_url"]), "{t}");
    assert_eq!(
        pg.query(&format!(
            "SELECT count(*) FROM bi.analytics_financial_impact WHERE as_of_date = '{D}'"
        ))[0],
        lake_rows.to_string()
    );
    // GRR and NRR, company-wide and per segment, each matched to an industry band
    assert_eq!(
        pg.query(&format!("SELECT count(*) FROM bi.analytics_benchmarks WHERE as_of_date = '{D}' AND industry_url IS NOT NULL"))[0],
        (2 * (1 + segs)).to_string()
    );

    // the report, written and delivered
    let rep = run(&["report", "--as-of", D, "--out", "out", "--deliver"]).ok();
    let r = rep.summary();
    assert_eq!(r["report"]["layout_problems"], json!([]), "{r}");
    let pages = r["report"]["pages"].as_u64().unwrap();
    assert!(pages >= 3, "{r}");
    let pdf = dir.join(format!("out/cslake-report-{D}.pdf"));
    let html = std::fs::read_to_string(dir.join(format!("out/cslake-report-{D}.html"))).unwrap();

    // as a reader sees it: every page rendered, none blank, nothing at the paper's edge
    let png = Command::new("pdftoppm")
        .args(["-r", "40"])
        .arg(&pdf)
        .arg(dir.join("out/page"))
        .status()
        .expect("pdftoppm (poppler-utils, installed by .ci/setup) runs");
    assert!(png.success());
    let images: Vec<PathBuf> = crate::files_under(&dir.join("out"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ppm"))
        .collect();
    assert_eq!(images.len() as u64, pages);
    for img in &images {
        let (w, h, px) = read_ppm(img);
        let ink = |x: usize, y: usize| {
            let i = (y * w + x) * 3;
            px[i..i + 3].iter().any(|c| *c < 235)
        };
        let inked = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|(x, y)| ink(*x, *y))
            .count();
        assert!(
            inked * 100 > w * h,
            "{} is almost empty ({inked} inked pixels)",
            img.display()
        );
        let edge = (w / 25).max(2);
        let at_edge = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|(x, y)| {
                (*x < edge || *x >= w - edge || *y < edge / 2 || *y >= h - edge / 2) && ink(*x, *y)
            })
            .count();
        assert_eq!(at_edge, 0, "{} has ink at the paper's edge", img.display());
    }

    // the figures: the HTML carries the numbers behind the cards, the PDF shows the same values
    let text = String::from_utf8(
        Command::new("pdftotext")
            .args(["-layout"])
            .arg(&pdf)
            .arg("-")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let card = |key: &str| -> (f64, String) {
        let at = html
            .find(&format!("data-kpi=\"{key}\""))
            .unwrap_or_else(|| panic!("card {key}"));
        let rest = &html[at..];
        let raw: f64 = rest
            .split("data-value=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        let shown = rest
            .split("<div class=\"value\">")
            .nth(1)
            .unwrap()
            .split("</div>")
            .next()
            .unwrap()
            .to_string();
        (raw, shown)
    };
    for (key, expected) in [
        ("arr", fi[0] * 12.0),
        ("revenue_at_risk_annual", fi[1]),
        ("expansion_pipeline_annual", fi[2] * 12.0),
        ("grr_12m", fi[3]),
        ("nrr_12m", fi[4]),
        ("logo_churn_12m", fi[5]),
    ] {
        let (raw, shown) = card(key);
        assert!(
            (raw - expected).abs() <= 1e-6 * expected.abs().max(1.0),
            "{key}: report {raw}, table {expected}"
        );
        assert!(text.contains(&shown), "{key}: the PDF does not show {shown}");
    }
    let high: f64 = query(dir, &format!("SELECT COUNT(*) FROM risk_scores WHERE as_of_date = DATE '{D}' AND risk_band IN ('high', 'critical')"))[1].parse().unwrap();
    assert_eq!(card("high_risk_accounts").0, high);
    assert!(text.contains("Acme CS report"), "{text}");
    // no number is cut short anywhere ("$1.2…"), and every critical account is among the
    // accounts to act on, however small
    let chars: Vec<char> = text.chars().collect();
    let cut = chars
        .windows(2)
        .any(|w| w[1] == '…' && (w[0].is_ascii_digit() || matches!(w[0], '.' | ',' | '$' | '%')));
    assert!(!cut, "{text}");
    for name in query(
        dir,
        &format!(
            "SELECT a.name FROM risk_scores r JOIN accounts a ON a.account_id = r.account_id \
             WHERE r.as_of_date = DATE '{D}' AND r.risk_band = 'critical' LIMIT 45"
        ),
    )
    .iter()
    .skip(1)
    {
        assert!(
            html.contains(name.as_str()),
            "critical account {name} is not listed"
        );
    }
    for seg in query(dir, &format!("SELECT value, accounts FROM financial_impact WHERE as_of_date = DATE '{D}' AND dimension = 'segment'"))[1..].iter() {
        let (name, n) = seg.split_once(',').unwrap();
        assert!(html.contains(&format!("<tr><td>{name}</td><td class=\"num\">{n}</td>")), "segment {name} with {n} accounts");
    }
    assert!(text.contains("SaaS Capital"), "the industry source is cited");
    // the training content, by kind, as analytics.content_effectiveness has it
    let kinds = query(
        dir,
        &format!(
            "SELECT value, people_completed FROM content_effectiveness WHERE as_of_date = DATE '{D}' AND dimension = 'kind' ORDER BY value"
        ),
    );
    assert!(kinds.len() > 1, "the demo's content is measured: {kinds:?}");
    assert!(html.contains("What the training content changed"));
    for k in &kinds[1..] {
        let (kind, people) = k.split_once(',').unwrap();
        assert!(
            html.contains(&format!(
                "<tr><td>{}</td><td class=\"num\">{people}</td>",
                kind.replace('_', " ")
            )),
            "content kind {kind} with {people} people"
        );
    }

    // delivered: e-mail with the files attached, a signed webhook with the KPIs and the PDF
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (to, mail) = &mails[0];
    assert!(
        to.contains("ceo@example.com") && to.contains("cfo@example.com"),
        "{to}"
    );
    assert!(
        mail.contains(&format!("filename=\"cslake-report-{D}.pdf\"")) && mail.contains("application/pdf"),
        "{mail}"
    );
    let hooks = server.to("/board");
    assert_eq!(hooks.len(), 1);
    assert!(verify_signature(secret.as_bytes(), &hooks[0]));
    let body: Value = serde_json::from_str(&hooks[0].body).unwrap();
    assert_eq!(body["type"], "report");
    assert!((body["data"]["kpis"]["grr_12m"]["raw"].as_f64().unwrap() - fi[3]).abs() < 1e-9);
    let pdf_bytes = std::fs::read(&pdf).unwrap();
    let sha: String = ring::digest::digest(&ring::digest::SHA256, &pdf_bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sent = body["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["content_type"] == "application/pdf")
        .unwrap();
    assert_eq!(sent["sha256"], sha.as_str());
    assert_eq!(sent["size"], pdf_bytes.len());
    // the audit says what went where: the delivery and each publish
    let audit = |command: &str| {
        query(
            dir,
            &format!("SELECT message FROM ops.runs WHERE command = '{command}' AND status = 'succeeded' ORDER BY started_at DESC LIMIT 1"),
        )[1]
            .clone()
    };
    let delivered = audit("report --deliver");
    assert!(
        delivered.contains(&format!("executive report of {D} delivered: "))
            && delivered.contains("execs sent")
            && delivered.contains("board sent"),
        "{delivered}"
    );
    let published = audit("publish");
    assert!(
        published.contains("published to postgres://127.0.0.1:")
            && published.contains("schema bi: ")
            && published.contains("bi.analytics_team_performance (3 rows)"),
        "{published}"
    );

    // TLS is verified: without the private CA the server's certificate is refused
    let toml = std::fs::read_to_string(dir.join("cslake.toml")).unwrap();
    std::fs::write(
        dir.join("no-ca.toml"),
        toml.replace("ca_file = \"pg/ca.pem\"\n", ""),
    )
    .unwrap();
    let untrusted = run(&["--config", "no-ca.toml", "publish", "--as-of", D]);
    assert_eq!(untrusted.code, 1, "{}", untrusted.stderr);
    assert!(
        untrusted
            .stderr
            .contains("not signed by a CA this machine trusts: set [publish.postgres] ca_file"),
        "{}",
        untrusted.stderr
    );

    // mistakes are named, and nothing is written
    let bad = run(&["report", "--as-of", D, "--format", "docx", "--out", "out2"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--format docx: expected pdf, html"),
        "{}",
        bad.stderr
    );
    let early = run(&["report", "--as-of", "2026-06-01", "--out", "out3"]);
    assert_ne!(early.code, 0);
    assert!(
        early
            .stderr
            .contains("no rows for 2026-06-01: run `cslake analytics --as-of 2026-06-01`"),
        "{}",
        early.stderr
    );
    assert!(!dir.join("out3").exists());
    let toml = std::fs::read_to_string(dir.join("cslake.toml")).unwrap();
    std::fs::write(
        dir.join("cslake.toml"),
        toml.replace("metric = \"grr_12m\"", "metric = \"grr\""),
    )
    .unwrap();
    let goal = run(&["analytics", "--as-of", D]);
    assert_eq!(goal.code, 2, "{}", goal.stderr);
    assert!(
        goal.stderr
            .contains("[[analytics.goals]] metric `grr` is not a numeric column"),
        "{}",
        goal.stderr
    );
}
