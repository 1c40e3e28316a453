//! Object stores for the lake and for file drops: local folders, `memory://`, and S3 or any
//! S3-compatible store (`s3://bucket/prefix`). S3 settings come from the standard `AWS_*`
//! environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, web identity and container credentials)
//! and from `[storage]` in `cslake.toml` (`aws_endpoint`, `aws_region`, ...), which wins.
//! Requests are path-style unless `aws_virtual_hosted_style_request = "true"`.
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
    for (k, v) in options {
        if let Ok(key) = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()) {
            builder = builder.with_config(key, v);
        }
    }
    let store = builder.build()?;
    let path = Path::from_url_path(url.path())?;
    Ok((Arc::new(store), path))
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
