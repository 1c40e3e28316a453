//! Object stores for the lake and for file drops: local folders, `memory://`, and S3 or any
//! S3-compatible store (`s3://bucket/prefix`). S3 settings come from the standard `AWS_*`
//! environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`) and from `[storage]` in `cslake.toml`
//! (`aws_endpoint`, `aws_region`, ...), which wins. Without static keys, credentials come from the
//! AWS SDK's default chain, the one the AWS CLI uses (`AWS_PROFILE` in the shared files with static
//! keys, `credential_process`, SSO or `role_arn` + `source_profile`; web identity; the ECS/EKS
//! container endpoint; EC2 instance metadata): [`SdkCredentials`]. When none of them has
//! credentials the command fails with exit 2 saying what was tried ([`NoCredentials`]).
//! Requests are path-style unless `aws_virtual_hosted_style_request = "true"`. A store that is
//! unreachable or failing is retried with backoff for `retry_timeout` (default `"3m"`; at most
//! `max_retries` times when that is set); past that the run fails and commits nothing more.
//!
//! Delta commits on S3 are safe with concurrent writers only because the store honours
//! `If-None-Match: *` on PutObject (AWS S3 since 2024, MinIO, Cloudflare R2, moto); the
//! conditional put is on by default and must not be turned off.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Once};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::CredentialProvider;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsCredential};
use object_store::path::Path;
use url::Url;

use crate::{Error, Result};

/// The S3 store for `url`: environment first, then the options that are S3 settings.
fn s3(url: &Url, options: &HashMap<String, String>) -> object_store::Result<(Arc<dyn ObjectStore>, Path)> {
    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
    for (key, value) in profile_region() {
        builder = builder.with_config(key, value);
    }
    // static keys (environment or [storage]) are used as they are; otherwise the SDK's chain
    let env_keys = std::env::var("AWS_ACCESS_KEY_ID").is_ok_and(|v| !v.is_empty());
    let option_keys = options.keys().any(|k| {
        matches!(
            AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()),
            Ok(AmazonS3ConfigKey::AccessKeyId | AmazonS3ConfigKey::SkipSignature)
        )
    });
    if !env_keys && !option_keys {
        builder = builder.with_credentials(Arc::new(SdkCredentials::new(url.as_str())));
    }
    // a store that is down (refusing connections, 5xx) is retried for `retry_timeout` (3 minutes
    // by default): the count of retries bounds it only when `max_retries` is set
    let mut retry = object_store::RetryConfig {
        max_retries: 1_000,
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(250),
            max_backoff: std::time::Duration::from_secs(15),
            base: 2.0,
        },
        ..object_store::RetryConfig::default()
    };
    for (k, v) in options {
        match k.to_ascii_lowercase().as_str() {
            // how long a store that is down is retried before the run fails
            "max_retries" => retry.max_retries = v.trim().parse().unwrap_or(retry.max_retries),
            "retry_timeout" => {
                if let Ok(d) = crate::units::parse_duration(v) {
                    retry.retry_timeout = d.to_std().unwrap_or(retry.retry_timeout);
                }
            }
            key => {
                if let Ok(key) = AmazonS3ConfigKey::from_str(key) {
                    builder = builder.with_config(key, v);
                }
            }
        }
    }
    builder = builder.with_retry(retry);
    let store = builder.build()?;
    let path = Path::from_url_path(url.path())?;
    Ok((Arc::new(store), path))
}

/// The region of `AWS_PROFILE` (or `default`) in the shared config file, when the environment sets
/// none: the store is built before any request, so this is read here rather than by the SDK.
fn profile_region() -> Vec<(AmazonS3ConfigKey, String)> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if env("AWS_REGION").is_some() || env("AWS_DEFAULT_REGION").is_some() {
        return Vec::new();
    }
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let path = env("AWS_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| std::path::PathBuf::from(h).join(".aws/config")));
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return Vec::new();
    };
    let section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    ini_section(&text, &section)
        .get("region")
        .map(|r| vec![(AmazonS3ConfigKey::Region, r.clone())])
        .unwrap_or_default()
}

/// How [`NoCredentials`] starts, so the CLI finds it in any error that wraps it.
pub const NO_CREDENTIALS: &str = "no AWS credentials for ";

/// No credential provider of the AWS chain had credentials: a configuration problem (exit 2).
#[derive(Debug, thiserror::Error)]
#[error(
    "no AWS credentials for {location}: tried the environment (AWS_ACCESS_KEY_ID), the profile '{profile}' \
     of the shared files (static keys, credential_process, SSO, role_arn), web identity \
     (AWS_WEB_IDENTITY_TOKEN_FILE), the container endpoint and the EC2 instance metadata. Set \
     AWS_PROFILE or the AWS_* variables, or [storage] in cslake.toml. Details: {detail}"
)]
pub struct NoCredentials {
    location: String,
    profile: String,
    detail: String,
}

/// S3 credentials from the AWS SDK's default chain, built on first use and kept until five
/// minutes before they expire. Written as an adapter only: the chain itself (profiles, SSO token
/// caches, role chaining, IMDSv2) is the SDK's, where hand-written readers go wrong.
#[derive(Debug)]
pub struct SdkCredentials {
    location: String,
    chain: tokio::sync::OnceCell<aws_config::default_provider::credentials::DefaultCredentialsChain>,
    cached: std::sync::Mutex<Option<(Arc<AwsCredential>, Option<std::time::SystemTime>)>>,
}

impl SdkCredentials {
    fn new(location: &str) -> Self {
        Self {
            location: location.to_string(),
            chain: tokio::sync::OnceCell::new(),
            cached: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let fresh = |expiry: &Option<std::time::SystemTime>| {
            expiry.is_none_or(|e| e > std::time::SystemTime::now() + std::time::Duration::from_secs(300))
        };
        if let Ok(c) = self.cached.lock()
            && let Some((cred, expiry)) = c.as_ref()
            && fresh(expiry)
        {
            return Ok(cred.clone());
        }
        let chain = self
            .chain
            .get_or_init(|| async {
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .build()
                    .await
            })
            .await;
        let creds = chain
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(NoCredentials {
                    location: self.location.clone(),
                    profile: std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into()),
                    detail: without_debug(
                        &aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
                    ),
                }),
            })?;
        let cred = Arc::new(AwsCredential {
            key_id: creds.access_key_id().to_string(),
            secret_key: creds.secret_access_key().to_string(),
            token: creds.session_token().map(str::to_string),
        });
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((cred.clone(), creds.expiry()));
        }
        Ok(cred)
    }
}

/// The SDK's error text without the `(TypeName(..))` debug dump it ends with: each provider tried
/// and why it had nothing is what a reader needs.
fn without_debug(text: &str) -> String {
    let cut = text.char_indices().find(|(i, _)| {
        let rest = &text[*i..];
        rest.starts_with(" (")
            && rest[2..].starts_with(|c: char| c.is_ascii_uppercase())
            && rest[2..]
                .find('(')
                .is_some_and(|j| rest[2..2 + j].chars().all(char::is_alphanumeric))
    });
    cut.map_or(text, |(i, _)| &text[..i]).trim_end().to_string()
}

/// The `key = value` pairs of one `[section]` of an INI file.
fn ini_section(text: &str, section: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            inside = line[1..line.len() - 1].trim() == section;
        } else if inside && let Some((k, v)) = line.split_once('=') {
            out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

/// Opens the store of a lake or file-drop location.
pub fn open(url: &Url, options: &HashMap<String, String>) -> Result<(Arc<dyn ObjectStore>, Path)> {
    register();
    match url.scheme() {
        "s3" | "s3a" => s3(url, options).map_err(|e| Error::Config(format!("{url}: {e}"))),
        _ => {
            let (store, path) = object_store::parse_url_opts(url, options.iter())
                .map_err(|e| Error::Config(format!("{url}: {e}")))?;
            Ok((Arc::from(store), path))
        }
    }
}

#[derive(Debug, Default)]
struct S3Factory;

impl ObjectStoreFactory for S3Factory {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, Path)> {
        // the store must point at the bucket root; the table's path comes back separately
        let (store, path) = s3(url, &config.raw).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        Ok((store, path))
    }
}

impl LogStoreFactory for S3Factory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        // the default log store commits with put-if-absent, which S3 does with If-None-Match
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

/// Teaches deltalake the `s3://` and `s3a://` schemes (once per process).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            if let Ok(url) = Url::parse(scheme) {
                object_store_factories().insert(url.clone(), Arc::new(S3Factory));
                logstore_factories().insert(url, Arc::new(S3Factory));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sdk_error_loses_its_debug_dump_only() {
        let text = "no credentials found in chain. Attempted:\n  Environment: not set (CredentialsNotLoaded(CredentialsNotLoaded { source: None }))";
        assert_eq!(
            super::without_debug(text),
            "no credentials found in chain. Attempted:\n  Environment: not set"
        );
        assert_eq!(super::without_debug("plain (as it is)"), "plain (as it is)");
    }

    #[test]
    fn profile_sections_of_the_shared_files() {
        let text = "[default]\naws_access_key_id = AKIA1\n\n[prod]\naws_access_key_id=AKIA2\naws_secret_access_key = s2\n";
        assert_eq!(super::ini_section(text, "prod")["aws_access_key_id"], "AKIA2");
        assert_eq!(super::ini_section(text, "default")["aws_access_key_id"], "AKIA1");
        assert!(super::ini_section(text, "dev").is_empty());
    }
}
