//! The HTTP client every API connector shares: authentication (static keys and OAuth 2.0),
//! a per-source rate limit, timeouts, and retries with exponential backoff and jitter on 429,
//! 5xx and network errors, honouring `Retry-After`. A 401/403 is never retried (beyond one
//! token refresh for OAuth): it becomes a "credentials rejected" error naming the environment
//! variables to check. Secrets come from the environment and are masked in every message.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use crate::settings::AuthConfig;
use crate::{Error, Result};

/// A parsed JSON response.
#[derive(Debug)]
pub struct Page {
    pub body: Value,
    /// The `Link` header's `rel="next"` target, if any.
    pub next_link: Option<String>,
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Bearer(String),
    Header(String, String),
    Query(String, String),
    Basic(String, String),
    OAuth(OAuth),
}

#[derive(Debug, Clone)]
struct OAuth {
    token_url: Url,
    client_id: String,
    client_secret: String,
    refresh_token: Option<String>,
    scope: Option<String>,
}

#[derive(Debug, Clone)]
struct Token {
    access: String,
    expires: Option<Instant>,
}

pub struct Options {
    pub timeout: Duration,
    pub max_retries: u32,
    pub backoff: Duration,
    pub requests_per_second: Option<f64>,
}

pub struct HttpClient {
    source: String,
    client: reqwest::Client,
    auth: Auth,
    /// The environment variables the credentials came from, for error messages.
    env_names: Vec<String>,
    secrets: Vec<String>,
    token: Mutex<Option<Token>>,
    /// What the token endpoint said besides the token (Salesforce's `instance_url`).
    pub token_extras: Mutex<serde_json::Map<String, Value>>,
    next_slot: Mutex<Instant>,
    opts: Options,
}

fn env_var(source: &str, name: &str) -> Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::MissingEnv {
            var: name.to_string(),
            what: format!("source '{source}'"),
            why: "credentials are read from the environment only".into(),
        })
}

/// Every form a secret travels in: as is, base64 (standard and URL-safe, padded or not) and
/// URL-encoded; longest first, so a longer form is masked before a shorter one inside it. Values
/// under 4 characters are left alone: they would mask unrelated text.
fn masks(secrets: &[String]) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut out: Vec<String> = Vec::new();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out.push(s.clone());
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            out.push(engine.encode(s.as_bytes()));
        }
        let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        out.push(encoded.replace('+', "%20"));
        out.push(encoded);
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    // and whatever prints (the logs, the summary line) masks them too
    crate::add_secrets(out.clone());
    out
}

impl HttpClient {
    pub fn new(source: &str, auth: &AuthConfig, opts: Options) -> Result<Self> {
        let mut env_names = Vec::new();
        let mut get = |key: &Option<String>, what: &str| -> Result<String> {
            let name = key.as_deref().ok_or_else(|| {
                Error::Config(format!(
                    "source '{source}': auth type '{}' needs `{what}` (the name of an environment variable)",
                    auth.kind
                ))
            })?;
            env_names.push(name.to_string());
            env_var(source, name)
        };
        let auth = match auth.kind.as_str() {
            "none" | "" => Auth::None,
            "bearer" => Auth::Bearer(get(&auth.token_env, "token_env")?),
            "header" | "query" => {
                let name = auth.name.clone().ok_or_else(|| {
                    Error::Config(format!(
                        "source '{source}': auth type '{}' needs `name` (the header or parameter)",
                        auth.kind
                    ))
                })?;
                let value = get(&auth.token_env, "token_env")?;
                if auth.kind == "header" {
                    Auth::Header(name, value)
                } else {
                    Auth::Query(name, value)
                }
            }
            "basic" => Auth::Basic(
                get(&auth.username_env, "username_env")?,
                get(&auth.password_env, "password_env")?,
            ),
            kind @ ("oauth2_client_credentials" | "oauth2_refresh_token") => {
                let token_url = auth.token_url.as_deref().ok_or_else(|| {
                    Error::Config(format!("source '{source}': OAuth 2.0 needs `token_url`"))
                })?;
                let token_url = Url::parse(token_url)
                    .map_err(|e| Error::Config(format!("source '{source}': token_url '{token_url}': {e}")))?;
                let client_id = get(&auth.client_id_env, "client_id_env")?;
                let client_secret = get(&auth.client_secret_env, "client_secret_env")?;
                let refresh_token = if kind == "oauth2_refresh_token" {
                    Some(get(&auth.refresh_token_env, "refresh_token_env")?)
                } else {
                    None
                };
                Auth::OAuth(OAuth {
                    token_url,
                    client_id,
                    client_secret,
                    refresh_token,
                    scope: auth.scope.clone(),
                })
            }
            other => {
                return Err(Error::Config(format!(
                    "source '{source}': unknown auth type '{other}' (none, bearer, header, query, basic, oauth2_client_credentials, oauth2_refresh_token)"
                )));
            }
        };
        let secrets: Vec<String> = match &auth {
            Auth::None => vec![],
            Auth::Bearer(t) | Auth::Header(_, t) | Auth::Query(_, t) => vec![t.clone()],
            // what goes over the wire is base64 of `user:password`: a server that echoes it back
            // must not get it into a log
            Auth::Basic(u, p) => vec![format!("{u}:{p}"), u.clone(), p.clone()],
            Auth::OAuth(o) => [Some(&o.client_secret), o.refresh_token.as_ref()]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        };
        let secrets = masks(&secrets);
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(Duration::from_secs(10).min(opts.timeout))
            .user_agent(concat!("cslake/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("source '{source}': HTTP client: {e}")))?;
        Ok(Self {
            source: source.to_string(),
            client,
            auth,
            env_names,
            secrets,
            token: Mutex::new(None),
            token_extras: Mutex::new(serde_json::Map::new()),
            next_slot: Mutex::new(Instant::now()),
            opts,
        })
    }

    /// A client for a URL that is itself a secret (a Slack or webhook URL grants whoever holds
    /// it the right to post): its path and query are masked wherever they would be shown, so
    /// logs, errors and `actions.deliveries` keep only its scheme and host.
    pub fn secret_url(mut self, url: &Url) -> Self {
        let mut parts = Vec::new();
        if url.path().len() > 1 {
            parts.push(url.path().to_string());
        }
        parts.extend(url.query().map(str::to_string));
        if !url.password().unwrap_or_default().is_empty() {
            parts.extend(url.password().map(str::to_string));
        }
        self.secrets.extend(masks(&parts));
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self
    }

    /// `text` with every secret, in every form it is sent in (as is, base64, URL-encoded),
    /// replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }

    /// The request did not get through, or kept failing (network, 5xx, 429).
    fn http_err(&self, message: String) -> Error {
        Error::Http {
            name: self.source.clone(),
            message: self.redact(&message),
            refused: false,
        }
    }

    /// The server answered and refused the request: it will refuse it again.
    fn refused(&self, message: String) -> Error {
        Error::Http {
            name: self.source.clone(),
            message: self.redact(&message),
            refused: true,
        }
    }

    fn rejected(&self, status: StatusCode, what: &str, body: &str) -> Error {
        let check = if self.env_names.is_empty() {
            "the source's auth settings".to_string()
        } else {
            self.env_names.join(", ")
        };
        Error::Credentials {
            name: self.source.clone(),
            message: self.redact(&format!(
                "{what} answered HTTP {status}{}; check {check}",
                snippet(body).map(|s| format!(" ({s})")).unwrap_or_default()
            )),
        }
    }

    /// Waits for this source's next request slot.
    async fn pace(&self) {
        let Some(rps) = self.opts.requests_per_second.filter(|r| *r > 0.0) else {
            return;
        };
        let interval = Duration::from_secs_f64(1.0 / rps);
        let wait = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + interval;
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The delay before retry number `attempt` (0-based): exponential with full jitter over its
    /// upper half, or what `Retry-After` asks for.
    fn delay(&self, attempt: u32, headers: Option<&HeaderMap>) -> Duration {
        if let Some(after) = headers.and_then(retry_after) {
            return after.min(Duration::from_secs(600));
        }
        let base = self.opts.backoff.saturating_mul(1u32 << attempt.min(16));
        let capped = base.min(Duration::from_secs(60));
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // cheap jitter: spreads concurrent clients without a random-number dependency
        let r = f64::from(nanos.wrapping_mul(2_654_435_761) % 1000) / 1000.0;
        capped.mul_f64(0.5 + 0.5 * r)
    }

    /// The OAuth access token, fetched (or refreshed when `renew`) as needed.
    async fn access_token(&self, renew: bool) -> Result<Option<String>> {
        let Auth::OAuth(o) = &self.auth else {
            return Ok(None);
        };
        let mut token = self.token.lock().await;
        if !renew
            && let Some(t) = token.as_ref()
            && t.expires
                .is_none_or(|e| Instant::now() + Duration::from_secs(60) < e)
        {
            return Ok(Some(t.access.clone()));
        }
        // the serializer is not Send: finish it before the first await
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            match &o.refresh_token {
                Some(r) => form
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", r),
                None => form.append_pair("grant_type", "client_credentials"),
            };
            form.append_pair("client_id", &o.client_id)
                .append_pair("client_secret", &o.client_secret);
            if let Some(scope) = &o.scope {
                form.append_pair("scope", scope);
            }
            form.finish()
        };
        let mut attempt = 0;
        let resp = loop {
            self.pace().await;
            let sent = self
                .client
                .post(o.token_url.clone())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Accept", "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if retryable(r.status()) && attempt < self.opts.max_retries => {
                    let d = self.delay(attempt, Some(r.headers()));
                    tracing::warn!(
                        source = self.source.as_str(),
                        status = r.status().as_u16(),
                        delay_ms = d.as_millis() as u64,
                        "token endpoint: retrying"
                    );
                    tokio::time::sleep(d).await;
                }
                Err(e) if attempt < self.opts.max_retries && (e.is_timeout() || e.is_connect()) => {
                    tokio::time::sleep(self.delay(attempt, None)).await;
                }
                Ok(r) => break r,
                Err(e) => {
                    return Err(self.http_err(format!("token endpoint {}: {e}", o.token_url)));
                }
            }
            attempt += 1;
        };
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_client_error() {
            return Err(self.rejected(status, &format!("the token endpoint {}", o.token_url), &text));
        }
        if !status.is_success() {
            return Err(self.http_err(format!("token endpoint {} answered HTTP {status}", o.token_url)));
        }
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| self.http_err(format!("token endpoint {} sent malformed JSON: {e}", o.token_url)))?;
        let Some(access) = json.get("access_token").and_then(Value::as_str) else {
            return Err(self.http_err(format!("token endpoint {} sent no access_token", o.token_url)));
        };
        let expires = json
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map(|s| Instant::now() + Duration::from_secs(s));
        if let Value::Object(map) = &json {
            let mut extras = self.token_extras.lock().await;
            for (k, v) in map {
                if !matches!(k.as_str(), "access_token" | "refresh_token" | "id_token") {
                    extras.insert(k.clone(), v.clone());
                }
            }
        }
        let t = Token {
            access: access.to_string(),
            expires,
        };
        *token = Some(t.clone());
        Ok(Some(t.access))
    }

    /// Fetches a token up front (OAuth sources learn their API host from it).
    pub async fn authenticate(&self) -> Result<()> {
        self.access_token(false).await.map(|_| ())
    }

    /// Sends one request and parses the JSON answer, retrying what is worth retrying.
    pub async fn json(&self, method: Method, url: &Url, body: Option<&Value>) -> Result<Page> {
        let body = body.map(|b| Body::Json(b.clone()));
        let (status, headers, text, shown) = self.send(method.clone(), url, &[], body.as_ref()).await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.rejected(status, &format!("{method} {shown}"), &text));
        }
        if !status.is_success() {
            return Err(self.refused(format!(
                "{method} {shown} answered HTTP {status}{}",
                snippet(&text).map(|s| format!(": {s}")).unwrap_or_default()
            )));
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            self.refused(format!(
                "{method} {shown} sent malformed JSON ({e}){}",
                snippet(&text).map(|s| format!(": {s}")).unwrap_or_default()
            ))
        })?;
        Ok(Page {
            body,
            next_link: next_link(&headers),
        })
    }

    /// Sends one request with extra headers, retrying network errors, 408, 429 and 5xx (and
    /// renewing an expired OAuth token once). Any other answer is returned as it is, with the
    /// URL as shown in messages (secrets masked); `Err` means the retries ran out.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        extra_headers: &[(String, String)],
        body: Option<&Body>,
    ) -> Result<(StatusCode, HeaderMap, String, String)> {
        let mut url = url.clone();
        if let Auth::Query(name, value) = &self.auth {
            url.query_pairs_mut().append_pair(name, value);
        }
        let shown = self.redact(url.as_str());
        let mut attempt = 0u32;
        let mut renewed = false;
        loop {
            self.pace().await;
            let token = self.access_token(false).await?;
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .header("Accept", "application/json");
            req = match (&self.auth, token) {
                (_, Some(t)) => req.bearer_auth(t),
                (Auth::Bearer(t), None) => req.bearer_auth(t),
                (Auth::Header(name, value), _) => req.header(name.as_str(), value.as_str()),
                (Auth::Basic(user, pass), _) => req.basic_auth(user, Some(pass)),
                _ => req,
            };
            for (k, v) in extra_headers {
                req = req.header(k.as_str(), v.as_str());
            }
            match body {
                Some(Body::Json(b)) => req = req.json(b),
                Some(Body::Raw { bytes, content_type }) => {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                        .body(bytes.clone());
                }
                None => {}
            }
            let started = Instant::now();
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e)
                    if attempt < self.opts.max_retries
                        && (e.is_timeout() || e.is_connect() || e.is_request()) =>
                {
                    let d = self.delay(attempt, None);
                    tracing::warn!(source = self.source.as_str(), url = shown.as_str(), error = %self.redact(&e.to_string()), delay_ms = d.as_millis() as u64, "request failed: retrying");
                    tokio::time::sleep(d).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => {
                    return Err(self.http_err(format!(
                        "{method} {shown} failed after {} attempts: {e}",
                        attempt + 1
                    )));
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            if retryable(status) {
                let text = resp.text().await.unwrap_or_default();
                if attempt >= self.opts.max_retries {
                    return Err(self.http_err(format!(
                        "{method} {shown} answered HTTP {status} {} times; giving up{}",
                        attempt + 1,
                        snippet(&text).map(|s| format!(" ({s})")).unwrap_or_default()
                    )));
                }
                let d = self.delay(attempt, Some(&headers));
                tracing::warn!(
                    source = self.source.as_str(),
                    url = shown.as_str(),
                    status = status.as_u16(),
                    delay_ms = d.as_millis() as u64,
                    "retrying"
                );
                tokio::time::sleep(d).await;
                attempt += 1;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && matches!(self.auth, Auth::OAuth(_)) && !renewed {
                // an expired or revoked access token: get a new one, once
                tracing::info!(
                    source = self.source.as_str(),
                    "access token rejected: renewing it"
                );
                renewed = true;
                self.access_token(true).await?;
                continue;
            }
            let text = resp
                .text()
                .await
                .map_err(|e| self.http_err(format!("{method} {shown}: reading the response: {e}")))?;
            tracing::debug!(
                source = self.source.as_str(),
                url = shown.as_str(),
                status = status.as_u16(),
                ms = started.elapsed().as_millis() as u64,
                bytes = text.len(),
                "response"
            );
            return Ok((status, headers, text, shown));
        }
    }
}

/// A request body: JSON, or bytes sent exactly as given (what a signature was computed over).
#[derive(Debug, Clone)]
pub enum Body {
    Json(Value),
    Raw { bytes: Vec<u8>, content_type: String },
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s >= 0.0).then(|| Duration::from_secs_f64(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// The `rel="next"` target of a `Link` header (RFC 8288).
fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(v) = value.to_str() else { continue };
        for part in v.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().to_ascii_lowercase().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                return Some(target.trim_start_matches('<').trim_end_matches('>').to_string());
            }
        }
    }
    None
}

/// The start of a response body, for error messages.
pub fn snippet(text: &str) -> Option<String> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let mut s: String = t.chars().take(200).collect();
    if s.len() < t.len() {
        s.push('…');
    }
    Some(s.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_header_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                "<https://x.test/items?page=1>; rel=\"prev\", <https://x.test/items?page=3>; rel=\"next\"",
            ),
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(next_link(&h).as_deref(), Some("https://x.test/items?page=3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
