//! Object storage: ONE adapter, on aws-sdk-s3, for every S3 there is — the
//! embedded endpoint (`embedded.rs`, the default) or MinIO / AWS S3 / any S3
//! configured with `S3_ENDPOINT`.
//!
//! Keys in the API carry the bucket (`<bucket>/<identity_id>/<project_id>/<file>`,
//! as the documents show); [`ObjectStore::object_key`] splits and checks them.

pub mod disk;
pub mod embedded;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use futures::{StreamExt, TryStreamExt};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object storage: {0}")]
    Backend(String),
    #[error("object storage key refused: {0}")]
    BadKey(String),
}

fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

/// Where the store is and who the server is to it.
#[derive(Clone)]
pub struct StorageConfig {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// How many object requests one command keeps in flight.
const PARALLEL_REQUESTS: usize = 32;
/// From this many keys on, [`ObjectStore::sizes`] lists before it HEADs.
const RANGE_LIST_MIN_KEYS: usize = 8;

#[derive(Clone)]
pub struct ObjectStore {
    client: Client,
    bucket: String,
}

impl ObjectStore {
    pub fn new(config: &StorageConfig) -> ObjectStore {
        let s3 = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .endpoint_url(config.endpoint.clone())
            .credentials_provider(Credentials::new(
                config.access_key.clone(),
                config.secret_key.clone(),
                None,
                None,
                "tessera",
            ))
            .force_path_style(true)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build();
        ObjectStore {
            client: Client::from_conf(s3),
            bucket: config.bucket.clone(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket unless it is there.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = e.as_service_error().and_then(|s| {
                    aws_sdk_s3::error::ProvideErrorMetadata::code(s).map(str::to_owned)
                });
                match code.as_deref() {
                    Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists") => Ok(()),
                    _ => Err(backend(aws_sdk_s3::error::DisplayErrorContext(e))),
                }
            }
        }
    }

    /// The object key of an API key `<bucket>/<rest>`; refuses other buckets
    /// and any `.`/`..`/empty segment, backslash or control character.
    pub fn object_key<'a>(&self, api_key: &'a str) -> Result<&'a str, StorageError> {
        let rest = api_key
            .strip_prefix(self.bucket.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| StorageError::BadKey(format!("{api_key} is not in this bucket")))?;
        check_key(rest)?;
        Ok(rest)
    }

    /// The size of an object, `None` if it is absent.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(backend(aws_sdk_s3::error::DisplayErrorContext(e))),
        }
    }

    /// The sizes of many objects, in the order asked (`None`: not there).
    ///
    /// A batch is usually a run of neighbouring names, so one listing of the
    /// key range the batch spans answers it with a request per 1,000 keys
    /// instead of one per key. The listing stops after a budget of pages (the
    /// range may hold many other objects); every key it did not see is asked
    /// with HEAD, [`PARALLEL_REQUESTS`] at a time. The listing only ever
    /// confirms a key, so a missing object is always confirmed by HEAD.
    pub async fn sizes(&self, keys: &[&str]) -> Result<Vec<Option<u64>>, StorageError> {
        let mut listed = if keys.len() >= RANGE_LIST_MIN_KEYS {
            self.list_range(keys).await?
        } else {
            HashMap::new()
        };
        let unseen: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| !listed.contains_key(*k))
            .collect();
        let headed: Vec<Option<u64>> = futures::stream::iter(unseen.iter().map(|k| self.size(k)))
            .buffered(PARALLEL_REQUESTS)
            .try_collect()
            .await?;
        for (key, size) in unseen.into_iter().zip(headed) {
            if let Some(size) = size {
                listed.insert(key.to_owned(), size);
            }
        }
        Ok(keys.iter().map(|k| listed.get(*k).copied()).collect())
    }

    /// Sizes of the wanted keys seen by listing the range from the smallest
    /// to the largest of them, at most `1 + keys / 500` pages.
    async fn list_range(&self, keys: &[&str]) -> Result<HashMap<String, u64>, StorageError> {
        let wanted: HashSet<&str> = keys.iter().copied().collect();
        let (Some(lo), Some(hi)) = (wanted.iter().min(), wanted.iter().max()) else {
            return Ok(HashMap::new());
        };
        let prefix_len = lo
            .bytes()
            .zip(hi.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        // A common prefix ends on a char boundary of both keys.
        let prefix = lo.get(..prefix_len).unwrap_or_default();
        // Listing starts after this, so `lo` itself is included.
        let start_after = lo
            .char_indices()
            .last()
            .and_then(|(i, _)| lo.get(..i))
            .unwrap_or_default();
        let mut found = HashMap::new();
        let mut token: Option<String> = None;
        for _ in 0..=keys.len() / 500 {
            let mut request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(1000);
            request = match &token {
                Some(t) => request.continuation_token(t),
                None if start_after.is_empty() => request,
                None => request.start_after(start_after),
            };
            let page = request
                .send()
                .await
                .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if key > *hi {
                    return Ok(found);
                }
                if let (true, Some(size)) = (wanted.contains(key), object.size()) {
                    found.insert(key.to_owned(), u64::try_from(size).unwrap_or(0));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(found)
    }

    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        check_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.get_if_exists(key)
            .await?
            .ok_or_else(|| backend(format!("{key} is not in storage")))
    }

    /// An object's bytes, or `None` when there is no such object. The body is
    /// read once into a buffer of the announced length.
    pub async fn get_if_exists(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(backend(aws_sdk_s3::error::DisplayErrorContext(e))),
        };
        let length = out
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        let mut bytes = Vec::with_capacity(length);
        let mut body = out.body;
        while let Some(chunk) = body.try_next().await.map_err(backend)? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes))
    }

    /// Removes the given objects (absent ones are not an error).
    pub async fn delete(&self, keys: &[String]) -> Result<(), StorageError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build().map_err(backend))
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(backend)?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
            if let Some(err) = out.errors().first() {
                return Err(StorageError::Backend(format!(
                    "cannot delete {}: {}",
                    err.key().unwrap_or_default(),
                    err.message().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    /// Every key under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    /// Removes everything under `prefix` (which must end with `/`).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        if !prefix.ends_with('/') || prefix.len() < 2 {
            return Err(StorageError::BadKey(format!("{prefix} is not a folder")));
        }
        let keys = self.list(prefix).await?;
        self.delete(&keys).await?;
        Ok(keys.len())
    }

    /// Starts a multipart upload; the object appears only when it completes.
    pub async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<String, StorageError> {
        check_key(key)?;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| backend("the store gave no upload id"))
    }

    /// Uploads part `number` (1-based) and returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .customize()
            // Parts are large and hashing them twice (here to sign, at the
            // store to check) costs more than sending them; the length is
            // still checked and TLS or the loopback carries them intact.
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        out.e_tag()
            .map(str::to_owned)
            .ok_or_else(|| backend("the store gave no ETag for a part"))
    }

    /// Completes a multipart upload from its parts' ETags, in part order.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), StorageError> {
        let parts = etags
            .iter()
            .enumerate()
            .map(|(i, etag)| {
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(i32::try_from(i + 1).unwrap_or(i32::MAX))
                    .e_tag(etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    /// Drops an unfinished multipart upload and its parts.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    /// A URL that lets its holder PUT this one object until it expires.
    pub async fn presign_put(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        check_key(key)?;
        let config = PresigningConfig::expires_in(ttl).map_err(backend)?;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(backend)?;
        Ok(req.uri().to_owned())
    }

    /// A URL that lets its holder GET this one object until it expires.
    pub async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        check_key(key)?;
        let config = PresigningConfig::expires_in(ttl).map_err(backend)?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(backend)?;
        Ok(req.uri().to_owned())
    }
}

/// A safe object key: no empty, `.` or `..` segment, no backslash or control
/// character, at most 1024 bytes.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let bad = key.is_empty()
        || key.len() > 1024
        || key.contains('\\')
        || key.chars().any(char::is_control)
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        return Err(StorageError::BadKey(format!(
            "{key:?} is not a valid object key"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_that_escape_or_hide_are_refused() {
        assert!(check_key("us-east-2:abc/p_1/a.png").is_ok());
        for bad in [
            "", "a/../b", "../a", "a//b", "a/./b", "a\\b", "a/\nb", "/a", "a/",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
