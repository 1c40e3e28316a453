//! Secrets stay secret: a webhook URL (whoever holds it may post) and credentials a server echoes
//! back never reach stdout, stderr, `ops.runs` or `actions.deliveries`, in any encoding.

use crate::fixture::{Fixture, Resp};
use crate::{cslake_env, query, workspace};

const D: &str = "2026-06-30";

#[test]
fn secret_urls_and_echoed_credentials_are_masked_everywhere() {
    let (_t, dir) = workspace(40, 300, D);
    // a webhook that fails with its own URL in the answer, as some gateways do
    let hook =
        Fixture::start(|r| Resp::status(502, &format!("{{\"error\":\"upstream failed for {}\"}}", r.path)));
    let secret_path = "/services/T0SECRET/B0SECRET/XyZsEcReTtOkEn42";
    let hook_url = format!("{}{secret_path}", hook.url);
    // a REST source whose server echoes the Authorization header of a refused request
    let api = Fixture::start(|r| {
        Resp::status(
            400,
            &format!(
                "{{\"message\":\"bad request\",\"received\":\"{}\"}}",
                r.headers.get("authorization").cloned().unwrap_or_default()
            ),
        )
    });
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
            "[actions]\nlibrary = \"playbooks\"\n[actions.delivery]\nmax_retries = 1\nbackoff_ms = 1\n\
             [[actions.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\n\
             [[actions.routes]]\nchannels = [\"hook\"]\n\
             [[sources]]\nname = \"helpdesk\"\nkind = \"rest\"\nbase_url = \"{}\"\nmax_retries = 0\n\
             [sources.auth]\ntype = \"basic\"\nusername_env = \"API_USER\"\npassword_env = \"API_PASSWORD\"\n\
             [sources.tables.interactions]\npath = \"tickets\"\n",
            api.url
        ),
    )
    .unwrap();
    let env = [
        ("HOOK_URL", hook_url.as_str()),
        ("API_USER", "svc-cslake"),
        ("API_PASSWORD", "hunter2-is-not-safe"),
        ("RUST_LOG", "debug"),
    ];
    let mut seen = String::new();
    for step in ["ingest", "features", "train", "score", "act"] {
        let source = if step == "ingest" { "data" } else { "helpdesk" };
        let out = cslake_env(
            &dir,
            &["run", "--as-of", D, "--source", source, "--only", step],
            &env,
        );
        assert_eq!(out.code, 0, "{step}: {}", out.stderr);
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
    }
    let out = cslake_env(&dir, &["ingest", "--source", "helpdesk"], &env);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("answered HTTP 400"), "{}", out.stderr);
    seen.push_str(&out.stdout);
    seen.push_str(&out.stderr);
    for table in ["ops.runs", "actions.deliveries"] {
        seen.push_str(&query(&dir, &format!("SELECT * FROM {table}")).join("\n"));
    }
    // the deliveries failed, and say where to, by host
    let errors = query(&dir, "SELECT DISTINCT last_error FROM actions.deliveries");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("127.0.0.1") && e.contains("***")),
        "{errors:?}"
    );
    let basic = "c3ZjLWNzbGFrZTpodW50ZXIyLWlzLW5vdC1zYWZl"; // base64("svc-cslake:hunter2-is-not-safe")
    for secret in [
        "XyZsEcReTtOkEn42",
        "T0SECRET",
        "hunter2-is-not-safe",
        basic,
        "hunter2-is-not-safe".replace('-', "%2D").as_str(),
    ] {
        assert!(
            !seen.contains(secret),
            "{secret} leaked: {}",
            &seen[seen.find(secret).unwrap().saturating_sub(200)..]
                [..400.min(seen.len() - seen.find(secret).unwrap().saturating_sub(200))]
        );
    }
}
