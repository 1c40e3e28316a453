//! Slack (and Slack-compatible) incoming webhooks: the subject as a header block, the text as
//! mrkdwn, the idempotency key in the context line and the request headers.

use futures::future::BoxFuture;
use serde_json::json;
use url::Url;

use crate::act::channels::channel::{Channel, Delivery, Outcome};
use crate::act::channels::webhook::post;
use crate::http::HttpClient;

/// `kind = "slack"`.
pub struct Slack {
    pub name: String,
    pub url: Url,
    pub http: HttpClient,
}

impl Channel for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "slack"
    }

    fn send<'a>(&'a self, deliveries: &'a [Delivery]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                let body = json!({
                    "text": format!("*{}*\n{}", d.subject, d.text),
                    "blocks": [
                        {"type": "header", "text": {"type": "plain_text", "text": truncate(&d.subject, 150)}},
                        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&d.text, 2900)}},
                        {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("cslake · {}", d.key)}]}
                    ]
                });
                out.push(post(&self.http, &self.url, &d.key, body.to_string().into_bytes(), None).await);
            }
            out
        })
    }
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
