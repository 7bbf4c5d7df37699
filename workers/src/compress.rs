//! The compress-download job: stream a selection of objects into one zip
//! that goes straight back to object storage as a multipart upload. Neither
//! the zip nor the selection is ever whole in memory or on local disk:
//!
//! ```text
//! fetch (async, objects in flight bounded by bytes) ──entries──▶
//!   zip writer (a blocking thread, zip crate, streaming mode) ──parts──▶
//!     upload (async, PARTS_IN_FLIGHT parts at a time)
//! ```
//!
//! Images (JPEG, PNG, …) are stored as they are; other files are deflated.
//! The zip is Zip64 where it must be (over 4 GiB or 65,535 entries). The
//! object appears only when the upload completes; any failure aborts the
//! upload, so no partial zip is ever visible.

use std::io::Write;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tessera_domain::download::ExportSpec;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::generate::{ObjectError, Objects};

/// Size of every part but the last (S3 wants at least 5 MiB; 10,000 parts
/// of 8 MiB allow zips up to 80 GiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts being uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Objects fetched ahead of the zip writer.
const FETCH_AHEAD: usize = 4;
/// Bytes of fetched objects held at once (one larger object is let through
/// alone).
const FETCH_BUDGET: usize = 32 * 1024 * 1024;

/// Object storage with multipart uploads.
#[async_trait::async_trait]
pub trait Multipart: Objects {
    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, ObjectError>;
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, ObjectError>;
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), ObjectError>;
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ObjectError>;
}

/// Why an export failed. `Missing` and `Changed` are final (the data is not
/// what was asked for); `Unavailable` is worth another try.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("{0} is no longer in storage")]
    Missing(String),
    #[error("{key} has {actual} bytes in storage, not the {expected} recorded")]
    Changed {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    Unavailable(String),
}

impl From<ObjectError> for ExportError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::Missing(k) => ExportError::Missing(k),
            ObjectError::Unavailable(m) => ExportError::Unavailable(m),
        }
    }
}

impl ExportError {
    pub fn is_final(&self) -> bool {
        !matches!(self, ExportError::Unavailable(_))
    }
}

/// Whether a file is stored as it is: formats that are compressed already.
fn already_compressed(path: &str) -> bool {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    matches!(
        ext.as_deref(),
        Some("jpg" | "jpeg" | "png" | "gif" | "webp" | "zip" | "gz")
    )
}

/// Builds the zip of `spec` at `spec.zip_key`; returns its size. `heartbeat`
/// is called after every file, so a long export is not taken for a dead one.
pub async fn run_export<F, Fut>(
    spec: &ExportSpec,
    store: Arc<dyn Multipart>,
    heartbeat: F,
) -> Result<u64, ExportError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let upload_id = store
        .create_multipart(&spec.zip_key, "application/zip")
        .await?;
    match build(spec, store.clone(), &upload_id, heartbeat).await {
        Ok((etags, size)) => {
            store
                .complete_multipart(&spec.zip_key, &upload_id, &etags)
                .await?;
            Ok(size)
        }
        Err(e) => {
            if let Err(abort) = store.abort_multipart(&spec.zip_key, &upload_id).await {
                tracing::warn!(error = %abort, key = %spec.zip_key, "cannot abort an unfinished zip upload");
            }
            Err(e)
        }
    }
}

struct Fetched {
    path: String,
    bytes: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

async fn build<F, Fut>(
    spec: &ExportSpec,
    store: Arc<dyn Multipart>,
    upload_id: &str,
    heartbeat: F,
) -> Result<(Vec<String>, u64), ExportError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let manifest = serde_json::to_vec_pretty(&spec.manifest)
        .map_err(|e| ExportError::Unavailable(e.to_string()))?;
    let (entry_tx, entry_rx) = mpsc::channel::<Fetched>(FETCH_AHEAD);
    let (part_tx, part_rx) = mpsc::channel::<Vec<u8>>(1);
    let zipper = tokio::task::spawn_blocking(move || write_zip(entry_rx, part_tx, &manifest));

    let budget = Arc::new(Semaphore::new(FETCH_BUDGET));
    let fetch = async {
        let mut fetched = futures::stream::iter(spec.entries.clone().into_iter().map(|entry| {
            let budget = budget.clone();
            let store = store.clone();
            async move {
                let want = u32::try_from(
                    usize::try_from(entry.size)
                        .unwrap_or(FETCH_BUDGET)
                        .min(FETCH_BUDGET),
                )
                .unwrap_or(u32::MAX);
                let permit = budget
                    .acquire_many_owned(want)
                    .await
                    .map_err(|e| ExportError::Unavailable(e.to_string()))?;
                let bytes = store.get(&entry.key).await?;
                if bytes.len() as u64 != entry.size {
                    return Err(ExportError::Changed {
                        key: entry.key,
                        expected: entry.size,
                        actual: bytes.len() as u64,
                    });
                }
                Ok::<_, ExportError>(Fetched {
                    path: entry.path,
                    bytes,
                    _permit: permit,
                })
            }
        }))
        .buffered(FETCH_AHEAD);
        while let Some(entry) = fetched.next().await {
            if entry_tx.send(entry?).await.is_err() {
                // The writer stopped; its error says why.
                break;
            }
            heartbeat().await;
        }
        drop(entry_tx);
        Ok::<(), ExportError>(())
    };
    let zip_key: Arc<str> = spec.zip_key.as_str().into();
    let upload_id: Arc<str> = upload_id.into();
    let upload = async {
        let numbered = tokio_stream_of(part_rx).enumerate().map(|(i, part)| {
            let (store, zip_key, upload_id) = (store.clone(), zip_key.clone(), upload_id.clone());
            async move {
                let number = i32::try_from(i + 1)
                    .map_err(|_| ExportError::Unavailable("too many parts".into()))?;
                store
                    .upload_part(&zip_key, &upload_id, number, part)
                    .await
                    .map_err(ExportError::from)
            }
        });
        numbered
            .buffered(PARTS_IN_FLIGHT)
            .try_collect::<Vec<String>>()
            .await
    };
    let (fetched, uploaded) = tokio::join!(fetch, upload);
    let written = zipper
        .await
        .map_err(|e| ExportError::Unavailable(format!("zip writer stopped: {e}")))?;
    fetched?;
    let etags = uploaded?;
    let size = written?;
    Ok((etags, size))
}

/// A stream of what a channel receives, until it closes.
fn tokio_stream_of<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

/// Writes the zip on a blocking thread: entries in, parts out. Returns the
/// zip's size.
fn write_zip(
    mut entries: mpsc::Receiver<Fetched>,
    parts: mpsc::Sender<Vec<u8>>,
    manifest: &[u8],
) -> Result<u64, ExportError> {
    let zip_error = |e: zip::result::ZipError| ExportError::Unavailable(format!("zip: {e}"));
    let io_error = |e: std::io::Error| ExportError::Unavailable(format!("zip: {e}"));
    let sink = PartSink {
        buf: Vec::with_capacity(PART_SIZE),
        parts,
        total: 0,
    };
    let mut zip = ZipWriter::new_stream(sink);
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let deflated = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    while let Some(entry) = entries.blocking_recv() {
        let options = if already_compressed(&entry.path) {
            stored
        } else {
            deflated
        };
        zip.start_file(
            entry.path.as_str(),
            options.large_file(entry.bytes.len() as u64 >= u64::from(u32::MAX)),
        )
        .map_err(zip_error)?;
        zip.write_all(&entry.bytes).map_err(io_error)?;
    }
    zip.start_file("manifest.json", deflated)
        .map_err(zip_error)?;
    zip.write_all(manifest).map_err(io_error)?;
    let sink = zip.finish().map_err(zip_error)?.into_inner();
    sink.finish().map_err(io_error)
}

/// Cuts the zip into parts of [`PART_SIZE`] and hands them to the uploader.
struct PartSink {
    buf: Vec<u8>,
    parts: mpsc::Sender<Vec<u8>>,
    total: u64,
}

impl PartSink {
    fn send(&mut self, part: Vec<u8>) -> std::io::Result<()> {
        self.parts
            .blocking_send(part)
            .map_err(|_| std::io::Error::other("the part uploader stopped"))
    }

    /// Sends the last part; returns the zip's size.
    fn finish(mut self) -> std::io::Result<u64> {
        let last = std::mem::take(&mut self.buf);
        self.send(last)?;
        Ok(self.total)
    }
}

impl Write for PartSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = PART_SIZE - self.buf.len();
        let n = data.len().min(room);
        self.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        self.total += n as u64;
        if self.buf.len() == PART_SIZE {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE));
            self.send(full)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};
    use std::io::Read;
    use std::sync::Mutex;
    use tessera_domain::download::{ExportEntry, ManifestEntry};

    /// Object storage in memory, for the zip logic alone; the real stores are
    /// covered by the HTTP tests.
    #[derive(Default)]
    struct Memory {
        objects: Mutex<HashMap<String, Vec<u8>>>,
        uploads: Mutex<HashMap<String, BTreeMap<i32, Vec<u8>>>>,
        aborted: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Objects for Memory {
        async fn get(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
            self.objects
                .lock()
                .unwrap()
                .get(key)
                .cloned()
                .ok_or_else(|| ObjectError::Missing(key.into()))
        }
        async fn put(&self, key: &str, body: Vec<u8>, _: &str) -> Result<(), ObjectError> {
            self.objects.lock().unwrap().insert(key.into(), body);
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl Multipart for Memory {
        async fn create_multipart(&self, key: &str, _: &str) -> Result<String, ObjectError> {
            let id = format!("up-{key}");
            self.uploads
                .lock()
                .unwrap()
                .insert(id.clone(), BTreeMap::new());
            Ok(id)
        }
        async fn upload_part(
            &self,
            _: &str,
            upload_id: &str,
            number: i32,
            body: Vec<u8>,
        ) -> Result<String, ObjectError> {
            self.uploads
                .lock()
                .unwrap()
                .get_mut(upload_id)
                .unwrap()
                .insert(number, body);
            Ok(format!("etag-{number}"))
        }
        async fn complete_multipart(
            &self,
            key: &str,
            upload_id: &str,
            etags: &[String],
        ) -> Result<(), ObjectError> {
            let parts = self.uploads.lock().unwrap().remove(upload_id).unwrap();
            assert_eq!(parts.len(), etags.len());
            let n = parts.len();
            for (i, (number, part)) in parts.iter().enumerate() {
                assert_eq!(*number as usize, i + 1);
                if i + 1 < n {
                    assert_eq!(part.len(), PART_SIZE, "only the last part may be short");
                }
            }
            let whole: Vec<u8> = parts.into_values().flatten().collect();
            self.objects.lock().unwrap().insert(key.into(), whole);
            Ok(())
        }
        async fn abort_multipart(&self, _: &str, upload_id: &str) -> Result<(), ObjectError> {
            self.uploads.lock().unwrap().remove(upload_id);
            self.aborted.lock().unwrap().push(upload_id.into());
            Ok(())
        }
    }

    fn spec(store: &Memory, files: &[(&str, Vec<u8>)]) -> ExportSpec {
        let mut entries = Vec::new();
        let mut manifest = BTreeMap::new();
        for (path, bytes) in files {
            let key = format!("u/p/{path}");
            store
                .objects
                .lock()
                .unwrap()
                .insert(key.clone(), bytes.clone());
            entries.push(ExportEntry {
                key,
                path: (*path).into(),
                size: bytes.len() as u64,
            });
            manifest.insert(
                (*path).to_owned(),
                ManifestEntry {
                    name: (*path).into(),
                    type_of_image: "ORIGINAL".into(),
                    class: None,
                    method_to_create: vec![],
                    size: bytes.len() as u64,
                    name_of_project: "p".into(),
                },
            );
        }
        ExportSpec {
            zip_key: "u/p/download/p.zip".into(),
            entries,
            manifest,
        }
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_come_back_byte_identical_over_several_parts() {
        let store = Arc::new(Memory::default());
        let files = vec![
            ("ORIGINAL/a.jpg", noise(15 * 1024 * 1024, 1)),
            ("AUGMENT/b.png", noise(7 * 1024 * 1024, 2)),
            ("ORIGINAL/c.txt", b"hello hello hello hello".repeat(1000)),
        ];
        let spec = spec(&store, &files);
        let size = run_export(&spec, store.clone(), || async {}).await.unwrap();
        let zip_bytes = store.objects.lock().unwrap()["u/p/download/p.zip"].clone();
        assert_eq!(size, zip_bytes.len() as u64);
        assert!(
            size > 2 * PART_SIZE as u64,
            "the test must span three parts"
        );
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
        assert_eq!(archive.len(), 4);
        for (path, bytes) in &files {
            let mut f = archive.by_name(path).unwrap();
            let method = f.compression();
            let mut out = Vec::new();
            f.read_to_end(&mut out).unwrap();
            assert_eq!(&out, bytes, "{path}");
            if path.ends_with(".txt") {
                assert_eq!(method, CompressionMethod::Deflated);
            } else {
                assert_eq!(method, CompressionMethod::Stored, "{path} is stored");
            }
        }
        let mut manifest = String::new();
        archive
            .by_name("manifest.json")
            .unwrap()
            .read_to_string(&mut manifest)
            .unwrap();
        let parsed: BTreeMap<String, ManifestEntry> = serde_json::from_str(&manifest).unwrap();
        assert_eq!(parsed, spec.manifest);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_than_65535_entries_make_a_zip64_archive() {
        let store = Arc::new(Memory::default());
        let files: Vec<(String, Vec<u8>)> = (0..66_000)
            .map(|i| (format!("ORIGINAL/{i:05}.jpg"), vec![(i % 251) as u8; 3]))
            .collect();
        let borrowed: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
        let spec = spec(&store, &borrowed);
        run_export(&spec, store.clone(), || async {}).await.unwrap();
        let zip_bytes = store.objects.lock().unwrap()["u/p/download/p.zip"].clone();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
        assert_eq!(archive.len(), 66_001);
        let mut out = Vec::new();
        archive
            .by_name("ORIGINAL/65999.jpg")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, vec![(65_999 % 251) as u8; 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_or_changed_object_aborts_the_upload() {
        let store = Arc::new(Memory::default());
        let mut spec = spec(
            &store,
            &[
                ("ORIGINAL/a.jpg", noise(1000, 3)),
                ("ORIGINAL/b.jpg", noise(10, 4)),
            ],
        );
        store.objects.lock().unwrap().remove("u/p/ORIGINAL/b.jpg");
        let err = run_export(&spec, store.clone(), || async {})
            .await
            .unwrap_err();
        assert_eq!(err, ExportError::Missing("u/p/ORIGINAL/b.jpg".into()));
        assert!(err.is_final());
        assert!(!store.objects.lock().unwrap().contains_key(&spec.zip_key));
        assert_eq!(store.aborted.lock().unwrap().len(), 1);

        spec.entries.pop();
        spec.entries[0].size = 999;
        let err = run_export(&spec, store.clone(), || async {})
            .await
            .unwrap_err();
        assert!(matches!(err, ExportError::Changed { actual: 1000, .. }));
        assert!(!store.objects.lock().unwrap().contains_key(&spec.zip_key));
    }
}
