//! The object store behind the embedded S3 endpoint: one file per object at
//! `<root>/<bucket>/<key>`, its content type and ETag in a sidecar at
//! `<root>/.meta/<bucket>/<key>`, written through `<root>/.tmp/` and renamed
//! into place, so a reader never sees half an object.
//!
//! Keys are checked by [`super::check_key`] (no empty, `.` or `..` segment),
//! so a key is always a path below its bucket. Each path segment is at most
//! 255 bytes (the file system's limit), whatever the key's length. A key
//! cannot also be the folder of longer keys (`a/b` and `a/b/c`): such a PUT
//! is refused.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use md5::Digest;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

pub struct Disk {
    root: PathBuf,
}

#[derive(Serialize, Deserialize, Default)]
struct Sidecar {
    content_type: Option<String>,
    etag: String,
}

fn internal(e: impl std::fmt::Display) -> s3s::S3Error {
    s3_error!(InternalError, "{e}")
}

impl Disk {
    pub fn new(root: &Path) -> std::io::Result<Disk> {
        std::fs::create_dir_all(root.join(".tmp"))?;
        std::fs::create_dir_all(root.join(".meta"))?;
        Ok(Disk {
            root: root.to_owned(),
        })
    }

    fn bucket_dir(&self, bucket: &str) -> S3Result<PathBuf> {
        if bucket.starts_with('.') || bucket.contains('/') || bucket.is_empty() {
            return Err(s3_error!(InvalidBucketName));
        }
        Ok(self.root.join(bucket))
    }

    fn paths(&self, bucket: &str, key: &str) -> S3Result<(PathBuf, PathBuf)> {
        super::check_key(key).map_err(|e| s3_error!(InvalidArgument, "{e}"))?;
        if key.split('/').any(|s| s.len() > 255) {
            return Err(s3_error!(KeyTooLongError));
        }
        let data = self.bucket_dir(bucket)?.join(key);
        let meta = self.root.join(".meta").join(bucket).join(key);
        Ok((data, meta))
    }

    async fn bucket_exists(&self, bucket: &str) -> S3Result<PathBuf> {
        let dir = self.bucket_dir(bucket)?;
        match tokio::fs::metadata(&dir).await {
            Ok(m) if m.is_dir() => Ok(dir),
            _ => Err(s3_error!(NoSuchBucket)),
        }
    }

    async fn sidecar(&self, meta: &Path) -> Sidecar {
        match tokio::fs::read(meta).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Sidecar::default(),
        }
    }

    /// Removes empty folders from `from` up to (not including) `stop`.
    fn prune(from: &Path, stop: &Path) {
        let mut dir = from.parent();
        while let Some(d) = dir {
            if d == stop || !d.starts_with(stop) || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    async fn remove(&self, bucket: &str, key: &str) -> S3Result<()> {
        let (data, meta) = self.paths(bucket, key)?;
        match tokio::fs::remove_file(&data).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {}
            Err(e) => return Err(internal(e)),
        }
        let _ = tokio::fs::remove_file(&meta).await;
        let bucket_dir = self.bucket_dir(bucket)?;
        let meta_dir = self.root.join(".meta").join(bucket);
        let _ = tokio::task::spawn_blocking(move || {
            Disk::prune(&data, &bucket_dir);
            Disk::prune(&meta, &meta_dir);
        })
        .await;
        Ok(())
    }
}

/// Every key under `dir` (a folder of `bucket_dir`), unsorted.
fn walk(bucket_dir: &Path, dir: &Path, out: &mut Vec<(String, u64, std::time::SystemTime)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(bucket_dir, &path, out);
        } else if let Ok(rel) = path.strip_prefix(bucket_dir) {
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((
                key,
                meta.len(),
                meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            ));
        }
    }
}

#[async_trait::async_trait]
impl S3 for Disk {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let dir = self.bucket_dir(&req.input.bucket)?;
        if tokio::fs::metadata(&dir).await.is_ok() {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket_exists(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        self.bucket_exists(&input.bucket).await?;
        let (data, meta) = self.paths(&input.bucket, &input.key)?;
        let Some(mut body) = input.body else {
            return Err(s3_error!(IncompleteBody));
        };
        let tmp = self
            .root
            .join(".tmp")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let mut file = tokio::fs::File::create(&tmp).await.map_err(internal)?;
        let mut md5 = md5::Md5::new();
        let mut written: u64 = 0;
        let result: S3Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk: Bytes = chunk.map_err(|e| s3_error!(IncompleteBody, "{e}"))?;
                md5.update(&chunk);
                written += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(internal)?;
            }
            file.flush().await.map_err(internal)?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        if input.content_length.is_some_and(|n| n as u64 != written) {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(s3_error!(
                IncompleteBody,
                "the body is shorter or longer than declared"
            ));
        }
        let etag = hex::encode(md5.finalize());
        let sidecar = Sidecar {
            content_type: input.content_type.map(|c| c.to_string()),
            etag: etag.clone(),
        };
        let placed: std::io::Result<()> = async {
            if let Some(parent) = data.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            if let Some(parent) = meta.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::write(&meta, serde_json::to_vec(&sidecar).unwrap_or_default()).await?;
            tokio::fs::rename(&tmp, &data).await
        }
        .await;
        if let Err(e) = placed {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(match e.kind() {
                std::io::ErrorKind::IsADirectory
                | std::io::ErrorKind::NotADirectory
                | std::io::ErrorKind::DirectoryNotEmpty => s3_error!(
                    InvalidArgument,
                    "the key collides with a folder of other keys"
                ),
                _ => internal(e),
            });
        }
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (data, meta) = self.paths(&input.bucket, &input.key)?;
        let file = tokio::fs::File::open(&data)
            .await
            .map_err(|_| s3_error!(NoSuchKey))?;
        let stat = file.metadata().await.map_err(internal)?;
        if stat.is_dir() {
            return Err(s3_error!(NoSuchKey));
        }
        let sidecar = self.sidecar(&meta).await;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some(stat.len() as i64),
            content_type: sidecar.content_type.and_then(|c| c.parse().ok()),
            e_tag: Some(ETag::Strong(sidecar.etag)),
            last_modified: stat.modified().ok().map(Timestamp::from),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (data, meta) = self.paths(&input.bucket, &input.key)?;
        let stat = match tokio::fs::metadata(&data).await {
            Ok(s) if s.is_file() => s,
            _ => return Err(s3_error!(NoSuchKey)),
        };
        let sidecar = self.sidecar(&meta).await;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(stat.len() as i64),
            content_type: sidecar.content_type.and_then(|c| c.parse().ok()),
            e_tag: Some(ETag::Strong(sidecar.etag)),
            last_modified: stat.modified().ok().map(Timestamp::from),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.remove(&req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let mut deleted = Vec::with_capacity(input.delete.objects.len());
        for o in &input.delete.objects {
            self.remove(&input.bucket, &o.key).await?;
            deleted.push(DeletedObject {
                key: Some(o.key.clone()),
                ..Default::default()
            });
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let bucket_dir = self.bucket_exists(&input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = input
            .continuation_token
            .clone()
            .or_else(|| input.start_after.clone())
            .unwrap_or_default();
        let max = input.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
        // Walk only the deepest folder the prefix names.
        let start_dir = match prefix.rfind('/') {
            Some(i) => bucket_dir.join(prefix.get(..i).unwrap_or_default()),
            None => bucket_dir.clone(),
        };
        let walk_prefix = prefix.clone();
        let mut keys = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&bucket_dir, &start_dir, &mut out);
            out.retain(|(k, _, _)| k.starts_with(&walk_prefix) && k.as_str() > after.as_str());
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        })
        .await
        .map_err(internal)?;
        let truncated = keys.len() > max;
        keys.truncate(max);
        let next = truncated
            .then(|| keys.last().map(|k| k.0.clone()))
            .flatten();
        let contents: Vec<Object> = keys
            .into_iter()
            .map(|(key, size, modified)| Object {
                key: Some(key),
                size: Some(size as i64),
                last_modified: Some(Timestamp::from(modified)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            max_keys: Some(max as i32),
            key_count: Some(contents.len() as i32),
            continuation_token: input.continuation_token,
            is_truncated: Some(truncated),
            next_continuation_token: next,
            contents: Some(contents),
            ..Default::default()
        }))
    }
}
