//! E-mail over SMTP (lettre, STARTTLS/TLS): the idempotency key in the `Message-ID`, files as
//! attachments. Transient SMTP failures (4xx, connection errors) are retried with backoff.

use std::time::Duration;

use cslake_sinks::email::{Email as Message, Mailer};
use futures::future::BoxFuture;

use crate::act::channels::channel::{Channel, Delivery, Outcome};

/// `kind = "email"`, sent through `[actions.smtp]`.
pub struct Email {
    pub name: String,
    pub mailer: std::sync::Arc<Mailer>,
    /// Retries of a transient failure within the run, and the first delay (doubled each time).
    pub retries: u32,
    pub backoff: Duration,
}

impl Channel for Email {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    fn takes_recipients(&self) -> bool {
        true
    }

    fn send<'a>(&'a self, deliveries: &'a [Delivery]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                out.push(self.one(d).await);
            }
            out
        })
    }
}

impl Email {
    async fn one(&self, d: &Delivery) -> Outcome {
        if d.to.is_empty() {
            return Outcome::Failed {
                error: "no recipient e-mail address (is the CSM's e-mail in core.csms, or the team's lead in [actions.teams]?)".into(),
                transient: false,
            };
        }
        let email = Message {
            to: d.to.clone(),
            subject: d.subject.clone(),
            text: d.text.clone(),
            html: None,
            attachments: d.attachments.clone(),
            idempotency_key: d.key.clone(),
        };
        let mut attempt = 0;
        loop {
            match self.mailer.send(&email).await {
                Ok(()) => {
                    return Outcome::Sent {
                        status: None,
                        reference: None,
                    };
                }
                Err(e) if e.transient && attempt < self.retries => {
                    tokio::time::sleep(self.backoff.saturating_mul(1 << attempt.min(10))).await;
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
