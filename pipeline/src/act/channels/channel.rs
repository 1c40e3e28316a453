//! What every channel shares: a [`Delivery`] (one message with its idempotency key), its
//! [`Outcome`], and the [`Channel`] trait each kind implements.

use futures::future::BoxFuture;
use serde_json::Value;

use cslake_sinks::email::Attachment;

/// One message to one channel (and, for e-mail, its recipients).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The idempotency key: the same message always has the same key.
    pub key: String,
    /// `alert`, `renotify`, `digest`, `campaign` or `content`.
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
        /// The HTTP status, when the channel speaks HTTP.
        status: Option<u16>,
        /// The id the receiver gave what was delivered (a CRM's task id), when it gives one.
        reference: Option<String>,
    },
    /// `transient`: worth another attempt in a later run.
    Failed { error: String, transient: bool },
    /// The channel's own credentials were rejected: nothing sent to it can pass until they change.
    Unauthorized { error: String },
}

/// Where deliveries go: Slack, a signed webhook, e-mail, a CRM. An implementation sends each
/// delivery with the retries its transport allows within the run and says how it ended; it never
/// fails the run (a failed delivery is retried by a later run, then dead-lettered). Every
/// implementation passes the same conformance suite (`tests/conformance.rs`): a delivery arrives
/// once and carries its idempotency key; a refusal is a permanent failure; a server error is
/// retried and, when it persists, a transient failure; an unreachable endpoint is transient.
pub trait Channel: Send + Sync {
    /// The name it is configured under.
    fn name(&self) -> &str;

    /// `slack`, `webhook`, `email`, `hubspot` or `salesforce`.
    fn kind(&self) -> &'static str;

    /// Whether its deliveries go to e-mail recipients (`Delivery::to`).
    fn takes_recipients(&self) -> bool {
        false
    }

    /// Sends the deliveries; one outcome each, in order.
    fn send<'a>(&'a self, deliveries: &'a [Delivery]) -> BoxFuture<'a, Vec<Outcome>>;
}
