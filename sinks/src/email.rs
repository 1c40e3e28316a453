//! E-mail over SMTP: STARTTLS (port 587), implicit TLS (465) or plain (a local relay only).
//! Each message carries a `Message-ID` derived from the caller's idempotency key, so a receiving
//! system can recognise a message it has seen when a crashed run is repeated.

use std::time::Duration;

use lettre::message::{
    Attachment as LettreAttachment, Mailbox, Message, MultiPart, SinglePart, header::ContentType,
};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncTransport, Tokio1Executor};

/// How to reach the SMTP server. Secrets are resolved by the caller (from the environment).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// `starttls` (default), `tls` (implicit, port 465) or `none` (a relay on localhost).
    pub tls: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Extra trusted root certificate (PEM) for servers with a private CA.
    pub ca_pem: Option<Vec<u8>>,
    pub from: String,
    pub timeout: Duration,
}

/// A file sent with a message.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// One message.
#[derive(Debug, Clone, Default)]
pub struct Email {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Becomes the `Message-ID` (`<key@cslake>`).
    pub idempotency_key: String,
}

/// Why a message was not sent; `transient` failures are worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    pub transient: bool,
}

impl SendError {
    fn permanent(message: String) -> Self {
        Self {
            message,
            transient: false,
        }
    }
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

impl Mailer {
    pub fn new(s: &SmtpSettings) -> Result<Self, SendError> {
        let server = format!("{}:{}", s.host, s.port);
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|e| SendError::permanent(format!("SMTP from address '{}': {e}", s.from)))?;
        let tls_params = || -> Result<TlsParameters, SendError> {
            let mut b = TlsParameters::builder(s.host.clone());
            if let Some(pem) = &s.ca_pem {
                let cert = Certificate::from_pem(pem)
                    .map_err(|e| SendError::permanent(format!("SMTP ca_file: {e}")))?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls()
                .map_err(|e| SendError::permanent(format!("SMTP TLS for {server}: {e}")))
        };
        let tls = match s.tls.as_str() {
            "starttls" | "" => Tls::Required(tls_params()?),
            "tls" => Tls::Wrapper(tls_params()?),
            "none" => Tls::None,
            other => {
                return Err(SendError::permanent(format!(
                    "SMTP tls = '{other}': expected starttls, tls or none"
                )));
            }
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
            .port(s.port)
            .tls(tls)
            .timeout(Some(s.timeout));
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(Self {
            transport: b.build(),
            from,
            server,
        })
    }

    /// Sends one message (one SMTP transaction for all its recipients).
    pub async fn send(&self, email: &Email) -> Result<(), SendError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.as_str())
            .message_id(Some(format!(
                "<{}@cslake>",
                message_id_part(&email.idempotency_key)
            )));
        for to in &email.to {
            let mb: Mailbox = to
                .parse()
                .map_err(|e| SendError::permanent(format!("recipient '{to}': {e}")))?;
            b = b.to(mb);
        }
        let msg = match (&email.html, email.attachments.is_empty()) {
            (Some(html), true) => b.multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                html.clone(),
            )),
            (None, true) => b.header(ContentType::TEXT_PLAIN).body(email.text.clone()),
            (html, false) => {
                let body = match html {
                    Some(html) => MultiPart::alternative_plain_html(email.text.clone(), html.clone()),
                    None => MultiPart::mixed().singlepart(SinglePart::plain(email.text.clone())),
                };
                let mut mixed = MultiPart::mixed().multipart(body);
                for a in &email.attachments {
                    let ct = ContentType::parse(&a.content_type).map_err(|e| {
                        SendError::permanent(format!(
                            "attachment {}: content type {}: {e}",
                            a.filename, a.content_type
                        ))
                    })?;
                    mixed =
                        mixed.singlepart(LettreAttachment::new(a.filename.clone()).body(a.bytes.clone(), ct));
                }
                b.multipart(mixed)
            }
        }
        .map_err(|e| SendError::permanent(format!("building the message: {e}")))?;
        self.transport.send(msg).await.map(|_| ()).map_err(|e| SendError {
            // a refused recipient or message (5xx) will be refused again; the rest may pass later
            transient: !e.is_permanent(),
            message: format!("SMTP {}: {e}", self.server),
        })
    }
}

/// The key as the left part of a Message-ID (a dot-atom: no `:`, `@`, spaces or brackets).
fn message_id_part(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_+=".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect::<String>()
        .trim_matches('.')
        .replace("..", ".")
}
