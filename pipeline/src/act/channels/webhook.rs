//! Generic JSON webhooks: the delivery as a JSON document, signed with HMAC-SHA256 over
//! `"<timestamp>.<body>"` when a secret is configured, with the idempotency key in
//! `Idempotency-Key` and `X-Cslake-Delivery`.

use base64::Engine;
use futures::future::BoxFuture;
use reqwest::Method;
use ring::hmac;
use serde_json::json;
use url::Url;

use crate::act::channels::channel::{Channel, Delivery, Outcome};
use crate::http::{Body, HttpClient, snippet};

/// `kind = "webhook"`.
pub struct Webhook {
    pub name: String,
    pub url: Url,
    pub secret: Option<Vec<u8>>,
    pub http: HttpClient,
}

impl Channel for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, deliveries: &'a [Delivery]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(deliveries.len());
            for d in deliveries {
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
                out.push(
                    post(
                        &self.http,
                        &self.url,
                        &d.key,
                        body.to_string().into_bytes(),
                        self.secret.as_deref(),
                    )
                    .await,
                );
            }
            out
        })
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

pub(crate) async fn post(
    http: &HttpClient,
    url: &Url,
    key: &str,
    body: Vec<u8>,
    secret: Option<&[u8]>,
) -> Outcome {
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
            reference: None,
        },
        Ok((status, _, text, shown)) => Outcome::Failed {
            error: http.redact(&format!(
                "POST {shown} answered HTTP {status}{}",
                snippet(&text).map(|s| format!(": {s}")).unwrap_or_default()
            )),
            // a refused payload or credentials will be refused again
            transient: false,
        },
        Err(e) => Outcome::Failed {
            error: http.redact(&e.to_string()),
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
