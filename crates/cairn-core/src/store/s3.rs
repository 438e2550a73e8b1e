//! S3 and S3-compatible servers: checkpoint dirs (`s3://bucket/prefix`) and
//! data read by path (`SELECT * FROM 's3://bucket/file.parquet'`).
//!
//! Settings come from the standard `AWS_*` environment variables, then from
//! [`S3Options`] (`SET cairn.s3.*` in SQL). Secrets live in
//! [`Secret`](crate::config::Secret), which never prints its value, so they
//! cannot reach a plan, an error or a log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use super::{CheckpointStore, OBJECT_STORE_SCHEME, SessionStores};
use crate::config::S3Options;
use crate::error::{Error, Result};

/// Retries are few and bounded: an unreachable endpoint is an error within
/// about 20 seconds, not a hang (object_store's default is 10 retries over
/// up to 3 minutes).
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A part of a multipart upload is 16 MiB; this allows ~0.5 MB/s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A store for `bucket` reached with `options`.
pub fn bucket_store(options: &S3Options, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        // Create-only puts (If-None-Match: *) commit manifests.
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: RETRIES,
            retry_timeout: RETRY_TIMEOUT,
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_timeout(REQUEST_TIMEOUT),
        );
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    // The endpoint the builder ends up with, from these options or the
    // environment; an `http://` one is allowed unless told otherwise.
    let http_endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .is_some_and(|e| e.starts_with("http://"));
    match options.allow_http {
        Some(allow) => builder = builder.with_allow_http(allow),
        None if http_endpoint => builder = builder.with_allow_http(true),
        // Left to AWS_ALLOW_HTTP.
        None => {}
    }
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &options.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &options.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose());
    }
    if let Some(token) = &options.session_token {
        builder = builder.with_token(token.expose());
    }
    // The builder's errors name settings, never their values.
    let store = builder.build().map_err(|e| Error::InvalidCheckpointDir {
        dir: format!("s3://{bucket}"),
        reason: format!("cannot set up S3: {e}"),
    })?;
    Ok(Arc::new(store))
}

/// The bucket and prefix of an `s3://bucket/prefix` URL.
pub(crate) fn bucket_and_prefix(url: &Url) -> Result<(String, String)> {
    let bucket =
        url.host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| Error::InvalidCheckpointDir {
                dir: url.to_string(),
                reason: "it names no bucket; write s3://bucket/prefix".into(),
            })?;
    let prefix = url.path().trim_matches('/').to_string();
    Ok((bucket.to_string(), prefix))
}

/// A bucket's store, and the options it was made with.
type BucketStore = (S3Options, Arc<dyn ObjectStore>);

/// A session's object stores: what is registered, the checkpoint stores
/// its scans name (`cairn-checkpoint://`), and a store for any
/// `s3://bucket` a query names, made with the session's current S3
/// settings (made again when they change).
#[derive(Debug)]
pub struct CairnObjectStores {
    registered: DefaultObjectStoreRegistry,
    stores: Arc<SessionStores>,
    buckets: Mutex<HashMap<String, BucketStore>>,
}

impl CairnObjectStores {
    /// The registry of the session that uses `stores`.
    pub fn new(stores: Arc<SessionStores>) -> Self {
        Self {
            registered: DefaultObjectStoreRegistry::new(),
            stores,
            buckets: Mutex::default(),
        }
    }
}

impl ObjectStoreRegistry for CairnObjectStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.registered.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        self.registered.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if url.scheme() == OBJECT_STORE_SCHEME {
            return CheckpointStore::find(url)
                .map(|s| Arc::clone(s.object_store()))
                .ok_or_else(|| {
                    DataFusionError::from(Error::Internal(format!(
                        "a scan names the checkpoint store {url}, which is not open"
                    )))
                });
        }
        // What the caller registered wins, S3 buckets included.
        let registered = self.registered.get_store(url);
        if registered.is_ok() || url.scheme() != "s3" {
            return registered;
        }
        let (bucket, _) = bucket_and_prefix(url).map_err(DataFusionError::from)?;
        let options = self.stores.s3();
        let mut buckets = self.buckets.lock().expect("s3 stores poisoned");
        if let Some((made_with, store)) = buckets.get(&bucket)
            && *made_with == options
        {
            return Ok(Arc::clone(store));
        }
        let store = bucket_store(&options, &bucket).map_err(DataFusionError::from)?;
        buckets.insert(bucket, (options, Arc::clone(&store)));
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn secrets_never_print() {
        let options = S3Options {
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(Secret::new("wJalrXUtnFEMI-very-secret")),
            session_token: Some(Secret::new("token-very-secret")),
            ..Default::default()
        };
        let shown = format!("{options:?} {}", options.secret_access_key.clone().unwrap());
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("********"), "{shown}");
    }

    #[test]
    fn urls_name_their_bucket() {
        let url = Url::parse("s3://data/ckpt/run1/").unwrap();
        assert_eq!(
            bucket_and_prefix(&url).unwrap(),
            ("data".to_string(), "ckpt/run1".to_string())
        );
        let err = bucket_and_prefix(&Url::parse("s3:///x").unwrap()).unwrap_err();
        assert!(err.to_string().contains("names no bucket"), "{err}");
    }
}
