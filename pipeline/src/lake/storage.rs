//! Object stores for the lake and for file drops: local folders, `memory://`, and S3 or any
//! S3-compatible store (`s3://bucket/prefix`). S3 settings come from the standard `AWS_*`
//! environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, web identity and container credentials)
//! and from `[storage]` in `cslake.toml` (`aws_endpoint`, `aws_region`, ...), which wins.
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
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use url::Url;

use crate::{Error, Result};

/// The S3 store for `url`: environment first, then the options that are S3 settings.
fn s3(url: &Url, options: &HashMap<String, String>) -> object_store::Result<(Arc<dyn ObjectStore>, Path)> {
    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
    for (key, value) in profile_settings() {
        builder = builder.with_config(key, value);
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

/// Credentials and region from the shared AWS files (`~/.aws/credentials`, `~/.aws/config`) for
/// `AWS_PROFILE` (or `default`), when the environment does not set them: the profile chain the AWS
/// CLI and SDKs use. Static keys only; SSO and `credential_process` profiles need the variables.
fn profile_settings() -> Vec<(AmazonS3ConfigKey, String)> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let home = env("HOME").map(std::path::PathBuf::from);
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let read = |var: &str, default: &str| -> Option<String> {
        let path = env(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))?;
        std::fs::read_to_string(path).ok()
    };
    let mut out = Vec::new();
    if env("AWS_ACCESS_KEY_ID").is_none()
        && let Some(text) = read("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")
    {
        let s = ini_section(&text, &profile);
        for (name, key) in [
            ("aws_access_key_id", AmazonS3ConfigKey::AccessKeyId),
            ("aws_secret_access_key", AmazonS3ConfigKey::SecretAccessKey),
            ("aws_session_token", AmazonS3ConfigKey::Token),
        ] {
            if let Some(v) = s.get(name) {
                out.push((key, v.clone()));
            }
        }
    }
    if env("AWS_REGION").is_none()
        && env("AWS_DEFAULT_REGION").is_none()
        && let Some(text) = read("AWS_CONFIG_FILE", ".aws/config")
    {
        let section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        if let Some(r) = ini_section(&text, &section).get("region") {
            out.push((AmazonS3ConfigKey::Region, r.clone()));
        }
    }
    out
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
    fn profile_sections_of_the_shared_files() {
        let text = "[default]\naws_access_key_id = AKIA1\n\n[prod]\naws_access_key_id=AKIA2\naws_secret_access_key = s2\n";
        assert_eq!(super::ini_section(text, "prod")["aws_access_key_id"], "AKIA2");
        assert_eq!(super::ini_section(text, "default")["aws_access_key_id"], "AKIA1");
        assert!(super::ini_section(text, "dev").is_empty());
    }
}
