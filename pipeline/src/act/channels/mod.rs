//! Delivery through channels: Slack-compatible incoming webhooks, generic JSON webhooks signed
//! with HMAC-SHA256, and e-mail over SMTP. Every delivery has an idempotency key: it is sent as
//! `Idempotency-Key` (webhooks) or in the `Message-ID` (e-mail), and the act job records it in
//! `actions.deliveries` so a repeated run sends nothing twice.

pub mod crm;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use cslake_sinks::email::{Attachment, Email, Mailer, SmtpSettings};
use reqwest::Method;
use ring::hmac;
use serde_json::{Value, json};
use url::Url;

use crate::http::{Body, HttpClient, Options, snippet};
use crate::settings::ActionsConfig;
use crate::settings::AuthConfig;
use crate::settings::ChannelConfig;
use crate::{Error, Result};

/// One message to one channel (and, for e-mail, its recipients).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The idempotency key: the same message always has the same key.
    pub key: String,
    /// `alert`, `renotify`, `digest` or `campaign`.
    pub kind: String,
    /// The alert, campaign assignment or digest this delivers.
    pub ref_id: String,
    pub account_id: Option<String>,
    pub channel: String,
    /// E-mail recipients (empty for webhooks).
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    /// The structured content a webhook receives under `data`.
    pub data: Value,
    /// Files: attached to e-mails, base64 under `files` for webhooks, left out of Slack.
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Sent {
        status: Option<u16>,
    },
    /// `transient`: worth another attempt in a later run.
    Failed {
        error: String,
        transient: bool,
    },
}

enum Kind {
    Slack { url: Url },
    Webhook { url: Url, secret: Option<Vec<u8>> },
    Email,
}

struct Channel {
    kind: Kind,
    http: Option<HttpClient>,
}

pub struct Dispatcher {
    channels: HashMap<String, Channel>,
    mailer: Option<Mailer>,
}

fn env(name: &str, what: &str) -> Result<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
        Error::Config(format!(
            "{what}: the environment variable {name} is not set (secrets are read from the environment only)"
        ))
    })
}

/// The channel kinds there are.
pub const CHANNEL_KINDS: &[&str] = &["slack", "webhook", "email"];

impl Dispatcher {
    /// Resolves every configured channel (URLs and secrets from the environment) and the SMTP
    /// server. A channel that cannot be set up is a configuration error before anything is sent.
    pub fn new(cfg: &ActionsConfig, config_dir: &Path) -> Result<Self> {
        let d = &cfg.delivery;
        let mut channels = HashMap::new();
        for c in &cfg.channels {
            let what = format!("[[actions.channels]] '{}'", c.name);
            let kind = match c.kind.as_str() {
                "slack" => Kind::Slack { url: url(c, &what)? },
                "webhook" => Kind::Webhook {
                    url: url(c, &what)?,
                    secret: c
                        .secret_env
                        .as_deref()
                        .map(|n| env(n, &what).map(String::into_bytes))
                        .transpose()?,
                },
                "email" => {
                    if cfg.smtp.is_none() {
                        return Err(Error::Config(format!(
                            "{what}: an email channel needs [actions.smtp]"
                        )));
                    }
                    Kind::Email
                }
                other => {
                    return Err(Error::Config(format!(
                        "{what}: kind '{other}': expected one of {CHANNEL_KINDS:?}"
                    )));
                }
            };
            let http = match kind {
                Kind::Email => None,
                _ => Some(HttpClient::new(
                    &format!("channel {}", c.name),
                    &AuthConfig {
                        kind: "none".into(),
                        ..Default::default()
                    },
                    Options {
                        timeout: Duration::from_secs(d.timeout_seconds),
                        max_retries: d.max_retries,
                        backoff: Duration::from_millis(d.backoff_ms),
                        requests_per_second: None,
                    },
                )?),
            };
            if channels.insert(c.name.clone(), Channel { kind, http }).is_some() {
                return Err(Error::Config(format!("{what} is defined twice")));
            }
        }
        let mailer = match &cfg.smtp {
            None => None,
            Some(s) => {
                let ca_pem = s
                    .ca_file
                    .as_ref()
                    .map(|p| {
                        let p = config_dir.join(p);
                        std::fs::read(&p).map_err(|source| Error::Io {
                            path: p.display().to_string(),
                            source,
                        })
                    })
                    .transpose()?;
                let tls = s.tls.clone().unwrap_or_else(|| "starttls".into());
                let settings = SmtpSettings {
                    host: s.host.clone(),
                    port: s.port.unwrap_or(match tls.as_str() {
                        "tls" => 465,
                        "none" => 25,
                        _ => 587,
                    }),
                    tls,
                    username: s
                        .username_env
                        .as_deref()
                        .map(|n| env(n, "[actions.smtp]"))
                        .transpose()?,
                    password: s
                        .password_env
                        .as_deref()
                        .map(|n| env(n, "[actions.smtp]"))
                        .transpose()?,
                    ca_pem,
                    from: s.from.clone(),
                    timeout: Duration::from_secs(s.timeout_seconds.unwrap_or(d.timeout_seconds)),
                };
                Some(Mailer::new(&settings).map_err(|e| Error::Config(format!("[actions.smtp]: {e}")))?)
            }
        };
        Ok(Self { channels, mailer })
    }

    pub fn has(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    pub fn is_email(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| matches!(c.kind, Kind::Email))
    }

    /// Sends one delivery (with the retries the channel allows within this run).
    pub async fn send(&self, d: &Delivery, attempts: u32, backoff: Duration) -> Outcome {
        let Some(ch) = self.channels.get(&d.channel) else {
            return Outcome::Failed {
                error: format!("channel '{}' is not configured", d.channel),
                transient: false,
            };
        };
        match (&ch.kind, &ch.http) {
            (Kind::Email, _) => self.email(d, attempts, backoff).await,
            (Kind::Slack { url }, Some(http)) => {
                let body = json!({
                    "text": format!("*{}*\n{}", d.subject, d.text),
                    "blocks": [
                        {"type": "header", "text": {"type": "plain_text", "text": truncate(&d.subject, 150)}},
                        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&d.text, 2900)}},
                        {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("cslake · {}", d.key)}]}
                    ]
                });
                post(http, url, &d.key, body.to_string().into_bytes(), None).await
            }
            (Kind::Webhook { url, secret }, Some(http)) => {
                let mut body = json!({
                    "id": d.key,
                    "type": d.kind,
                    "ref_id": d.ref_id,
                    "account_id": d.account_id,
                    "subject": d.subject,
                    "text": d.text,
                    "data": d.data,
                });
                if !d.attachments.is_empty() {
                    body["files"] = d
                        .attachments
                        .iter()
                        .map(|a| {
                            json!({
                                "filename": a.filename,
                                "content_type": a.content_type,
                                "size": a.bytes.len(),
                                "sha256": hex_sha256(&a.bytes),
                                "content_base64": base64::engine::general_purpose::STANDARD.encode(&a.bytes),
                            })
                        })
                        .collect();
                }
                post(
                    http,
                    url,
                    &d.key,
                    body.to_string().into_bytes(),
                    secret.as_deref(),
                )
                .await
            }
            _ => Outcome::Failed {
                error: "channel without an HTTP client".into(),
                transient: false,
            },
        }
    }

    async fn email(&self, d: &Delivery, attempts: u32, backoff: Duration) -> Outcome {
        let Some(mailer) = &self.mailer else {
            return Outcome::Failed {
                error: "no [actions.smtp] server".into(),
                transient: false,
            };
        };
        if d.to.is_empty() {
            return Outcome::Failed {
                error: "no recipient e-mail address (is the CSM's e-mail in core.csms, or the team's lead in [actions.teams]?)".into(),
                transient: false,
            };
        }
        let email = Email {
            to: d.to.clone(),
            subject: d.subject.clone(),
            text: d.text.clone(),
            html: None,
            attachments: d.attachments.clone(),
            idempotency_key: d.key.clone(),
        };
        let mut attempt = 0;
        loop {
            match mailer.send(&email).await {
                Ok(()) => return Outcome::Sent { status: None },
                Err(e) if e.transient && attempt < attempts => {
                    tokio::time::sleep(backoff.saturating_mul(1 << attempt.min(10))).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Outcome::Failed {
                        error: e.message,
                        transient: e.transient,
                    };
                }
            }
        }
    }
}

fn url(c: &ChannelConfig, what: &str) -> Result<Url> {
    let raw = match (&c.url, &c.url_env) {
        (Some(u), None) => u.clone(),
        (None, Some(n)) => env(n, what)?,
        _ => {
            return Err(Error::Config(format!(
                "{what}: give exactly one of url or url_env"
            )));
        }
    };
    Url::parse(&raw).map_err(|e| Error::Config(format!("{what}: the URL is not valid: {e}")))
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `sha256=<hex>` over `"{timestamp}.{body}"`, as the `X-Cslake-Signature` header: the receiver
/// recomputes it with the shared secret and rejects old timestamps (replays).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn post(http: &HttpClient, url: &Url, key: &str, body: Vec<u8>, secret: Option<&[u8]>) -> Outcome {
    let mut headers = vec![
        ("Idempotency-Key".to_string(), key.to_string()),
        ("X-Cslake-Delivery".to_string(), key.to_string()),
    ];
    if let Some(secret) = secret {
        let ts = chrono::Utc::now().timestamp();
        headers.push(("X-Cslake-Timestamp".into(), ts.to_string()));
        headers.push(("X-Cslake-Signature".into(), signature(secret, ts, &body)));
    }
    let body = Body::Raw {
        bytes: body,
        content_type: "application/json".into(),
    };
    match http.send(Method::POST, url, &headers, Some(&body)).await {
        Ok((status, _, _, _)) if status.is_success() => Outcome::Sent {
            status: Some(status.as_u16()),
        },
        Ok((status, _, text, shown)) => Outcome::Failed {
            error: format!(
                "POST {shown} answered HTTP {status}{}",
                snippet(&text).map(|s| format!(": {s}")).unwrap_or_default()
            ),
            // a refused payload or credentials will be refused again
            transient: false,
        },
        Err(e) => Outcome::Failed {
            error: e.to_string(),
            transient: true,
        },
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // python3: hmac.new(b"k", b"1.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"k", 1, b"{}"),
            "sha256=3dd49b2593d0f9a349e9e71c4bde3e2b862c2be4003fe9b4ba81332029310158"
        );
    }
}
