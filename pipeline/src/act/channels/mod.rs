//! Delivery through channels: Slack-compatible incoming webhooks ([`slack`]), generic JSON
//! webhooks signed with HMAC-SHA256 ([`webhook`]), e-mail over SMTP ([`email`]) and CRM
//! write-back ([`crm`]), each a [`Channel`]. Every delivery has an idempotency key: it is sent as
//! `Idempotency-Key` (webhooks), in the `Message-ID` (e-mail) or as the record it updates (CRM),
//! and the act job records it in `actions.deliveries` so a repeated run sends nothing twice. A new
//! channel is one file here implementing the trait, a kind in [`Dispatcher::new`], and a case in
//! the conformance suite.

pub mod channel;
pub mod crm;
pub mod email;
pub mod slack;
pub mod webhook;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cslake_sinks::email::{Mailer, SmtpSettings};
use url::Url;

pub use channel::{Channel, Delivery, Outcome};

use crate::http::{HttpClient, Options};
use crate::settings::{ActionsConfig, AuthConfig, ChannelConfig};
use crate::{Error, Result};

/// The configured `[[actions.channels]]`, by name.
pub struct Dispatcher {
    channels: HashMap<String, Box<dyn Channel>>,
}

/// A secret from the environment (a URL, a signing secret, an SMTP password); never printed.
fn env(name: &str, what: &str) -> Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .inspect(|v| crate::add_secrets([v.clone()]))
        .ok_or_else(|| Error::MissingEnv {
            var: name.to_string(),
            what: what.to_string(),
            why: "secrets are read from the environment only".into(),
        })
}

/// The channel kinds there are.
pub const CHANNEL_KINDS: &[&str] = &["slack", "webhook", "email"];

impl Dispatcher {
    /// Resolves every configured channel (URLs and secrets from the environment) and the SMTP
    /// server. A channel that cannot be set up is a configuration error before anything is sent.
    pub fn new(cfg: &ActionsConfig, config_dir: &Path) -> Result<Self> {
        let d = &cfg.delivery;
        let mailer = mailer(cfg, config_dir)?.map(Arc::new);
        let mut channels: HashMap<String, Box<dyn Channel>> = HashMap::new();
        for c in &cfg.channels {
            let what = format!("[[actions.channels]] '{}'", c.name);
            let http = |url: &Url| {
                HttpClient::new(
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
                )
                .map(|h| h.secret_url(url))
            };
            let channel: Box<dyn Channel> = match c.kind.as_str() {
                "slack" => {
                    let url = url(c, &what)?;
                    Box::new(slack::Slack {
                        name: c.name.clone(),
                        http: http(&url)?,
                        url,
                    })
                }
                "webhook" => {
                    let url = url(c, &what)?;
                    Box::new(webhook::Webhook {
                        name: c.name.clone(),
                        secret: c
                            .secret_env
                            .as_deref()
                            .map(|n| env(n, &what).map(String::into_bytes))
                            .transpose()?,
                        http: http(&url)?,
                        url,
                    })
                }
                "email" => Box::new(email::Email {
                    name: c.name.clone(),
                    mailer: mailer.clone().ok_or_else(|| {
                        Error::Config(format!("{what}: an email channel needs [actions.smtp]"))
                    })?,
                    retries: d.max_retries,
                    backoff: Duration::from_millis(d.backoff_ms),
                }),
                other => {
                    return Err(Error::Config(format!(
                        "{what}: kind '{other}': expected one of {CHANNEL_KINDS:?}"
                    )));
                }
            };
            if channels.insert(c.name.clone(), channel).is_some() {
                return Err(Error::Config(format!("{what} is defined twice")));
            }
        }
        Ok(Self { channels })
    }

    pub fn has(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// The channel configured under `name`.
    pub fn channel(&self, name: &str) -> Option<&dyn Channel> {
        self.channels.get(name).map(AsRef::as_ref)
    }

    /// Whether the channel's deliveries go to e-mail recipients.
    pub fn is_email(&self, channel: &str) -> bool {
        self.channels.get(channel).is_some_and(|c| c.takes_recipients())
    }

    /// Sends one delivery through its channel.
    pub async fn send(&self, d: &Delivery) -> Outcome {
        let Some(ch) = self.channels.get(&d.channel) else {
            return Outcome::Failed {
                error: format!("channel '{}' is not configured", d.channel),
                transient: false,
            };
        };
        ch.send(std::slice::from_ref(d))
            .await
            .pop()
            .unwrap_or(Outcome::Failed {
                error: format!("channel '{}' answered nothing", d.channel),
                transient: true,
            })
    }
}

/// The SMTP server of `[actions.smtp]`, if configured.
fn mailer(cfg: &ActionsConfig, config_dir: &Path) -> Result<Option<Mailer>> {
    let Some(s) = &cfg.smtp else {
        return Ok(None);
    };
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
        timeout: Duration::from_secs(s.timeout_seconds.unwrap_or(cfg.delivery.timeout_seconds)),
    };
    Mailer::new(&settings)
        .map(Some)
        .map_err(|e| Error::Config(format!("[actions.smtp]: {e}")))
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
