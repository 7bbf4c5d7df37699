//! The object store behind the embedded S3 endpoint: one file per object at
//! `<root>/<bucket>/<key>`, its content type and ETag in a sidecar at
//! `<root>/.meta/<bucket>/<key>`, written through `<root>/.tmp/`, synced to
//! disk and renamed into place, so a reader never sees half an object.
//!
//! Keys are checked by [`super::check_key`] (no empty, `.` or `..` segment),
//! so a key is always a path below its bucket. Each path segment is at most
//! 255 bytes (the file system's limit), whatever the key's length. A key
//! cannot also be the folder of longer keys (`a/b` and `a/b/c`): such a PUT
//! is refused.

use std::collections::HashSet;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use md5::Digest;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use serde::{Deserialize, Serialize};

pub struct Disk {
    root: PathBuf,
    /// Parts being written into their upload's data file right now, by
    /// upload id and part number: a second upload of the same part at the
    /// same time goes to a file of its own instead of the same bytes.
    writing: std::sync::Mutex<HashSet<(String, i32)>>,
}

/// Parts of a multipart upload at most.
const MAX_PARTS: i32 = 10_000;

/// The smallest part that can set an upload's stride (S3's minimum size of
/// every part but the last).
const MIN_STRIDE: u64 = 5 * 1024 * 1024;

/// An open multipart upload: `<root>/.uploads/<upload_id>/upload.json`.
///
/// The first part of at least [`MIN_STRIDE`] bytes sets the upload's stride
/// (`stride`); every part of exactly that length is written straight into the
/// upload's `data` file at `(number - 1) × stride`, leaving an empty marker
/// `<part number>.<etag>.at`. Any other part (the short last one, or one of
/// another length) is kept as its own file `<part number>.<etag>`. When the
/// parts asked for on completion are the in-place run 1, 2, … N (the last one
/// possibly its own file, appended), `data` is cut to length and renamed into
/// place: a multipart upload of equal parts is written once, never joined by
/// a copy. Otherwise the parts are copied, in order, into a temp file that is
/// renamed into place. Either way the object appears whole or not at all.
#[derive(Serialize, Deserialize)]
struct Upload {
    bucket: String,
    key: String,
    content_type: Option<String>,
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
        std::fs::create_dir_all(root.join(".uploads"))?;
        Disk::drop_stale_uploads(&root.join(".uploads"));
        Ok(Disk {
            root: root.to_owned(),
            writing: std::sync::Mutex::default(),
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

    /// Multipart uploads untouched for a day were left by a killed writer
    /// (a worker retries with a new upload); their parts go, as an S3
    /// lifecycle rule for incomplete uploads would remove them.
    fn drop_stale_uploads(uploads: &Path) {
        let Ok(entries) = std::fs::read_dir(uploads) else {
            return;
        };
        let day = std::time::Duration::from_secs(24 * 3600);
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > day);
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join(".tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn upload_dir(&self, upload_id: &str) -> S3Result<PathBuf> {
        if upload_id.is_empty() || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(self.root.join(".uploads").join(upload_id))
    }

    /// An open multipart upload, which must be for this bucket and key.
    async fn upload(
        &self,
        upload_id: &str,
        bucket: &str,
        key: &str,
    ) -> S3Result<(PathBuf, Upload)> {
        let dir = self.upload_dir(upload_id)?;
        let bytes = tokio::fs::read(dir.join("upload.json"))
            .await
            .map_err(|_| s3_error!(NoSuchUpload))?;
        let upload: Upload = serde_json::from_slice(&bytes).map_err(internal)?;
        if upload.bucket != bucket || upload.key != key {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok((dir, upload))
    }

    /// The upload's stride: the one in `dir`, or `len` when this part is the
    /// first to set it. The file appears whole (a hard link of a written temp
    /// file), so two first parts at once agree on one value.
    async fn stride(&self, dir: &Path, len: u64) -> S3Result<u64> {
        let path = dir.join("stride");
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            return text.trim().parse().map_err(internal);
        }
        let tmp = dir.join(format!("stride.{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, len.to_string())
            .await
            .map_err(internal)?;
        let linked = tokio::fs::hard_link(&tmp, &path).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        match linked {
            Ok(()) => Ok(len),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = tokio::fs::read_to_string(&path).await.map_err(internal)?;
                text.trim().parse().map_err(internal)
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Claims part `number` of `upload_id` for writing in place; `None` when
    /// it is being written already.
    fn claim(&self, upload_id: &str, number: i32) -> Option<Claim<'_>> {
        let key = (upload_id.to_owned(), number);
        let mut writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        writing.insert(key.clone()).then_some(Claim {
            writing: &self.writing,
            key,
        })
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

/// A part being written in place; released when dropped.
struct Claim<'a> {
    writing: &'a std::sync::Mutex<HashSet<(String, i32)>>,
    key: (String, i32),
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.writing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// Removes the file or marker of part `number` in `dir`.
async fn remove_part(dir: &Path, number: i32) -> std::io::Result<()> {
    let prefix = format!("{number:05}.");
    let mut old = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = old.next_entry().await? {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            tokio::fs::remove_file(entry.path()).await?;
        }
    }
    Ok(())
}

/// Where a part of a multipart upload is.
enum Piece {
    /// In the upload's data file, `len` bytes from `at`.
    InPlace { at: u64, len: u64 },
    /// A file of its own.
    File(PathBuf),
}

/// Joins the pieces into one file and returns its path: the upload's data
/// file itself when the pieces are its in-place run from the start (the last
/// one possibly a file of its own, appended), else a temp file at `tmp` that
/// they are copied into.
fn join(pieces: Vec<Piece>, in_place: &Path, tmp: &Path) -> std::io::Result<PathBuf> {
    let mut end = 0;
    let mut run = 0;
    for piece in &pieces {
        match piece {
            Piece::InPlace { at, len } if *at == end => {
                end += len;
                run += 1;
            }
            _ => break,
        }
    }
    let tail = pieces.get(run..).unwrap_or_default();
    let appendable = matches!(tail, [] | [Piece::File(_)]);
    if run > 0 && appendable {
        let mut file = std::fs::OpenOptions::new().write(true).open(in_place)?;
        file.set_len(end)?;
        if let [Piece::File(path)] = tail {
            file.seek(SeekFrom::Start(end))?;
            std::io::copy(&mut std::fs::File::open(path)?, &mut file)?;
        }
        return Ok(in_place.to_owned());
    }
    let copied = (|| {
        let mut out = std::fs::File::create(tmp)?;
        let mut data = None;
        for piece in &pieces {
            match piece {
                Piece::InPlace { at, len } => {
                    let data = match &mut data {
                        Some(f) => f,
                        None => data.insert(std::fs::File::open(in_place)?),
                    };
                    data.seek(SeekFrom::Start(*at))?;
                    let n = std::io::copy(&mut std::io::Read::take(&mut *data, *len), &mut out)?;
                    if n != *len {
                        return Err(std::io::Error::other("a part is shorter than uploaded"));
                    }
                }
                Piece::File(path) => {
                    std::io::copy(&mut std::fs::File::open(path)?, &mut out)?;
                }
            }
        }
        Ok(())
    })();
    if copied.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    copied.map(|()| tmp.to_owned())
}

/// How a body's ETag is made.
#[derive(Clone, Copy)]
enum Etag {
    /// The hex MD5 of the body, as S3 gives for an object PUT whole (clients
    /// compare it with their own MD5).
    Md5,
    /// For a part of a multipart upload: the hex CRC-32 and length of the
    /// body. No client reads a part's ETag as an MD5 (the object's ETag is
    /// `<hash>-<parts>` anyway), and CRC-32 runs at memory speed where MD5
    /// would cost more than everything else the part upload does.
    Crc32,
}

/// Bytes read from a file at a time when serving a GET.
const READ_CHUNK: usize = 512 * 1024;

/// Bytes gathered before each write to the file: fewer, larger writes on the
/// blocking pool than one per network chunk.
const WRITE_BUFFER: usize = 1 << 20;

/// Writes a request body to a new file at `tmp`, checking the declared
/// length; returns the ETag and the file. On error nothing is left behind.
async fn write_new(
    tmp: &Path,
    body: StreamingBlob,
    declared: Option<i64>,
    etag: Etag,
) -> S3Result<(String, std::fs::File)> {
    let written = async {
        let file = tokio::fs::File::create(tmp)
            .await
            .map_err(internal)?
            .into_std()
            .await;
        write_body(file, 0, body, declared, etag).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(tmp).await;
    }
    written
}

/// Writes a request body into `file` from byte `at`, checking the declared
/// length; returns the ETag and the file.
async fn write_body(
    mut file: std::fs::File,
    at: u64,
    mut body: StreamingBlob,
    declared: Option<i64>,
    etag: Etag,
) -> S3Result<(String, std::fs::File)> {
    file.seek(SeekFrom::Start(at)).map_err(internal)?;
    let mut md5 = md5::Md5::new();
    let mut crc = crc32fast::Hasher::new();
    let mut written: u64 = 0;
    // Network chunks gathered until a block is due, then written with one
    // vectored write each time (no copy into a buffer of our own).
    let mut block: Vec<Bytes> = Vec::new();
    let mut block_len = 0;
    loop {
        let chunk = body.next().await;
        if let Some(chunk) = chunk.as_ref() {
            let chunk: &Bytes = chunk
                .as_ref()
                .map_err(|e| s3_error!(IncompleteBody, "{e}"))?;
            match etag {
                Etag::Md5 => md5.update(chunk),
                Etag::Crc32 => crc.update(chunk),
            }
            written += chunk.len() as u64;
            block_len += chunk.len();
            block.push(chunk.clone());
        }
        if block_len >= WRITE_BUFFER || (chunk.is_none() && block_len > 0) {
            let full = std::mem::take(&mut block);
            block_len = 0;
            file =
                tokio::task::spawn_blocking(move || write_chunks(&mut file, &full).map(|()| file))
                    .await
                    .map_err(internal)?
                    .map_err(internal)?;
        }
        if chunk.is_none() {
            break;
        }
    }
    if declared.is_some_and(|n| n as u64 != written) {
        return Err(s3_error!(
            IncompleteBody,
            "the body is shorter or longer than declared"
        ));
    }
    let etag = match etag {
        Etag::Md5 => hex::encode(md5.finalize()),
        Etag::Crc32 => format!("{:08x}{written:016x}", crc.finalize()),
    };
    Ok((etag, file))
}

/// Writes every chunk, in order, with vectored writes.
fn write_chunks(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        chunks.iter().map(|c| std::io::IoSlice::new(c)).collect();
    let mut rest = slices.as_mut_slice();
    while !rest.is_empty() {
        let n = std::io::Write::write_vectored(file, rest)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Starts writing a part's bytes to disk without waiting for it, so the
/// sync when the upload completes finds little left to do instead of the
/// whole object.
fn write_back(file: std::fs::File) {
    drop(tokio::task::spawn_blocking(move || file.sync_data()));
}

/// Moves a finished temp file into place as the object, with its sidecar.
async fn place(tmp: &Path, data: &Path, meta: &Path, sidecar: &Sidecar) -> S3Result<()> {
    let placed: std::io::Result<()> = async {
        // On disk before it is renamed into place: an object that was
        // acknowledged survives a crash of the machine whole, not as a file
        // whose name made it to disk before its bytes.
        tokio::fs::File::open(tmp).await?.sync_data().await?;
        if let Some(parent) = data.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        if let Some(parent) = meta.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(meta, serde_json::to_vec(sidecar).unwrap_or_default()).await?;
        tokio::fs::rename(tmp, data).await
    }
    .await;
    if let Err(e) = placed {
        let _ = tokio::fs::remove_file(tmp).await;
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
    Ok(())
}

/// What a listing asks for: keys starting with `prefix`, greater than `after`.
struct Range<'a> {
    prefix: &'a str,
    after: &'a str,
}

impl Range<'_> {
    fn wants_key(&self, key: &str) -> bool {
        key.starts_with(self.prefix) && key > self.after
    }

    /// Whether a folder (`dir`, ending in `/`) can hold a wanted key: it must
    /// meet the prefix, and not lie wholly at or before `after`.
    fn wants_dir(&self, dir: &str) -> bool {
        let meets_prefix = dir.starts_with(self.prefix) || self.prefix.starts_with(dir);
        let all_before = dir < self.after && !self.after.starts_with(dir);
        meets_prefix && !all_before
    }
}

/// Collects `(key, size, modified)` of the wanted objects under `dir`. Names
/// are filtered before anything is stat'ed, so a listing of a narrow range in
/// a large folder costs one directory read.
fn walk(
    dir: &Path,
    dir_key: &str,
    range: &Range<'_>,
    out: &mut Vec<(String, u64, std::time::SystemTime)>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let key = format!("{dir_key}{name}");
        if kind.is_dir() {
            let sub = format!("{key}/");
            if range.wants_dir(&sub) {
                walk(&entry.path(), &sub, range, out);
            }
        } else if range.wants_key(&key) {
            let Ok(meta) = entry.metadata() else { continue };
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
        let Some(body) = input.body else {
            return Err(s3_error!(IncompleteBody));
        };
        let tmp = self.tmp_path();
        let (etag, _) = write_new(&tmp, body, input.content_length, Etag::Md5).await?;
        let sidecar = Sidecar {
            content_type: input.content_type.map(|c| c.to_string()),
            etag: etag.clone(),
        };
        place(&tmp, &data, &meta, &sidecar).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        self.bucket_exists(&input.bucket).await?;
        self.paths(&input.bucket, &input.key)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.upload_dir(&upload_id)?;
        let target = Upload {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            content_type: input.content_type.map(|c| c.to_string()),
        };
        async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(
                dir.join("upload.json"),
                serde_json::to_vec(&target).unwrap_or_default(),
            )
            .await
        }
        .await
        .map_err(internal)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let (dir, _) = self
            .upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        if !(1..=MAX_PARTS).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers are 1 to {MAX_PARTS}"
            ));
        }
        let Some(body) = input.body else {
            return Err(s3_error!(IncompleteBody));
        };
        let number = input.part_number;
        let len = input
            .content_length
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n >= MIN_STRIDE);
        let in_place = match len {
            Some(len) if self.stride(&dir, len).await? == len => {
                self.claim(&input.upload_id, number).map(|c| (c, len))
            }
            _ => None,
        };
        let etag = if let Some((_claim, len)) = in_place {
            // An earlier upload of this part goes first: its bytes are about
            // to be overwritten.
            remove_part(&dir, number).await.map_err(internal)?;
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join("data"))
                .await
                .map_err(internal)?
                .into_std()
                .await;
            let at = u64::try_from(number - 1).unwrap_or(0) * len;
            let (etag, file) =
                write_body(file, at, body, input.content_length, Etag::Crc32).await?;
            write_back(file);
            tokio::fs::write(dir.join(format!("{number:05}.{etag}.at")), b"")
                .await
                .map_err(internal)?;
            etag
        } else {
            let tmp = self.tmp_path();
            let (etag, file) = write_new(&tmp, body, input.content_length, Etag::Crc32).await?;
            write_back(file);
            // A part sent again replaces the earlier one.
            let part = dir.join(format!("{number:05}.{etag}"));
            let renamed = async {
                remove_part(&dir, number).await?;
                tokio::fs::rename(&tmp, &part).await
            }
            .await;
            if let Err(e) = renamed {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(internal(e));
            }
            etag
        };
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let (dir, upload) = self
            .upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let (data, meta) = self.paths(&input.bucket, &input.key)?;
        let asked = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if asked.is_empty() {
            return Err(s3_error!(MalformedXML, "no parts"));
        }
        // Parts in ascending order, each with the ETag its upload returned.
        let stride = match tokio::fs::read_to_string(dir.join("stride")).await {
            Ok(text) => text.trim().parse::<u64>().ok(),
            Err(_) => None,
        };
        let mut pieces = Vec::with_capacity(asked.len());
        let mut etags = Vec::with_capacity(asked.len());
        let mut previous = 0;
        for part in &asked {
            let (Some(n), Some(etag)) = (part.part_number, part.e_tag.as_ref()) else {
                return Err(s3_error!(InvalidPart));
            };
            if n <= previous {
                return Err(s3_error!(InvalidPartOrder));
            }
            previous = n;
            let etag = etag.value().trim_matches('"').to_owned();
            // ETags given out here are hex; anything else names no part (and
            // never a path outside the upload).
            if etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(s3_error!(InvalidPart, "part {n} has no such ETag"));
            }
            let marker = dir.join(format!("{n:05}.{etag}.at"));
            let file = dir.join(format!("{n:05}.{etag}"));
            let piece = match (stride, tokio::fs::metadata(&marker).await) {
                (Some(stride), Ok(_)) => Piece::InPlace {
                    at: u64::try_from(n - 1).unwrap_or(0) * stride,
                    len: stride,
                },
                _ => match tokio::fs::metadata(&file).await {
                    Ok(_) => Piece::File(file),
                    Err(_) => {
                        return Err(s3_error!(
                            InvalidPart,
                            "part {n} is not uploaded with that ETag"
                        ))
                    }
                },
            };
            pieces.push(piece);
            etags.push(etag);
        }
        let in_place = dir.join("data");
        let joined = tokio::task::spawn_blocking({
            let tmp = self.tmp_path();
            move || join(pieces, &in_place, &tmp)
        })
        .await
        .map_err(internal)?;
        let joined = match joined {
            Ok(path) => path,
            Err(e) => return Err(internal(e)),
        };
        // The S3 form of a multipart ETag: md5 of the parts' ETags, then `-N`.
        let mut md5 = md5::Md5::new();
        for etag in &etags {
            md5.update(hex::decode(etag).unwrap_or_default());
        }
        let etag = format!("{}-{}", hex::encode(md5.finalize()), etags.len());
        let sidecar = Sidecar {
            content_type: upload.content_type,
            etag: etag.clone(),
        };
        place(&joined, &data, &meta, &sidecar).await?;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let (dir, _) = self
            .upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        tokio::fs::remove_dir_all(&dir).await.map_err(internal)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
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
        let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK);
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
        let (start_dir, start_key) = match prefix.rfind('/') {
            Some(i) => {
                let folder = prefix.get(..=i).unwrap_or_default().to_owned();
                // The folder is joined to a path: no `..`, no absolute path.
                super::check_key(folder.trim_end_matches('/'))
                    .map_err(|e| s3_error!(InvalidArgument, "{e}"))?;
                (bucket_dir.join(&folder), folder)
            }
            None => (bucket_dir.clone(), String::new()),
        };
        let walk_prefix = prefix.clone();
        let mut keys = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let range = Range {
                prefix: &walk_prefix,
                after: &after,
            };
            walk(&start_dir, &start_key, &range, &mut out);
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
            max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            key_count: Some(i32::try_from(contents.len()).unwrap_or(i32::MAX)),
            continuation_token: input.continuation_token,
            is_truncated: Some(truncated),
            next_continuation_token: next,
            contents: Some(contents),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::Range;

    #[test]
    fn a_range_prunes_folders_that_cannot_hold_a_wanted_key() {
        let r = Range {
            prefix: "u/p/up_",
            after: "u/p/up_00",
        };
        assert!(r.wants_dir("u/"));
        assert!(r.wants_dir("u/p/"));
        assert!(r.wants_dir("u/p/up_x/"));
        assert!(!r.wants_dir("u/q/"));
        assert!(!r.wants_dir("u/p/task/"));
        assert!(r.wants_key("u/p/up_000.jpg"));
        assert!(!r.wants_key("u/p/up_00"));
        assert!(!r.wants_key("u/p/seed.jpg"));
        let after = Range {
            prefix: "u/",
            after: "u/m/5",
        };
        assert!(!after.wants_dir("u/a/"), "wholly before `after`");
        assert!(after.wants_dir("u/m/"), "holds keys after `after`");
        assert!(after.wants_dir("u/z/"));
    }
}
