//! The compress-download task: one zip of a project's items of one kind (or
//! all), built by a worker and left in object storage for a presigned GET.
//!
//! A request fixes the selection: which items, under which names, with which
//! manifest. Its [`fingerprint`] names that selection; while a build of the
//! same fingerprint runs or has finished, a request gets that task back instead
//! of a second zip (the `downloads` read model keeps one such task per
//! fingerprint with a unique index, so two concurrent requests build one).

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::DomainError;
use crate::project::data::DataKind;

/// Download tasks are their own streams (id = task id).
pub const STREAM_TYPE: &str = "download";

/// Where compress jobs go.
pub const COMPRESS_SUBJECT: &str = "tessera.jobs.compress";

/// Where workers report finished (or failed) zips.
pub const COMPRESS_RESULTS_SUBJECT: &str = "tessera.results.compress";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DownType {
    All,
    Original,
    Preprocess,
    Augment,
}

impl DownType {
    pub fn parse(raw: &str) -> Result<DownType, DomainError> {
        match raw {
            "ALL" => Ok(DownType::All),
            "ORIGINAL" => Ok(DownType::Original),
            "PREPROCESS" => Ok(DownType::Preprocess),
            "AUGMENT" => Ok(DownType::Augment),
            other => Err(DomainError::Invalid(format!(
                "down_type must be ALL, ORIGINAL, PREPROCESS or AUGMENT, not {other:?}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DownType::All => "ALL",
            DownType::Original => "ORIGINAL",
            DownType::Preprocess => "PREPROCESS",
            DownType::Augment => "AUGMENT",
        }
    }

    /// The kinds of data items the zip holds.
    pub fn kinds(self) -> &'static [DataKind] {
        match self {
            DownType::All => &DataKind::ALL,
            DownType::Original => &[DataKind::Original],
            DownType::Preprocess => &[DataKind::Preprocess],
            DownType::Augment => &[DataKind::Augment],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DownloadStatus {
    Running,
    Finish,
    Error,
}

impl DownloadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DownloadStatus::Running => "RUNNING",
            DownloadStatus::Finish => "FINISH",
            DownloadStatus::Error => "ERROR",
        }
    }
}

/// One file of the zip: the object it comes from and its path in the zip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEntry {
    /// Object key (without the bucket).
    pub key: String,
    /// `<KIND>/<filename>`.
    pub path: String,
    /// Bytes the read model records; the object must still have them.
    pub size: u64,
}

/// One line of the zip's manifest (the field names clients know).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    #[serde(rename = "typeOfImage")]
    pub type_of_image: String,
    pub class: Option<String>,
    /// Method names, in the order they ran; empty for originals.
    #[serde(rename = "methodToCreate")]
    pub method_to_create: Vec<String>,
    pub size: u64,
    #[serde(rename = "nameOfProject")]
    pub name_of_project: String,
}

/// Everything the worker needs, stored as an object beside the zip (a large
/// export would not fit in a bus message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportSpec {
    /// Where the zip goes (object key).
    pub zip_key: String,
    pub entries: Vec<ExportEntry>,
    /// Zip path → manifest line, written as `manifest.json`.
    pub manifest: std::collections::BTreeMap<String, ManifestEntry>,
}

/// The bus job: which task, and where its spec is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressJob {
    pub task_id: String,
    pub spec_key: String,
}

/// What a worker reports: the zip's size, or why it could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressResult {
    pub task_id: String,
    pub size: Option<u64>,
    pub error: Option<String>,
}

/// The name of a selection: down type, project name and every entry with
/// its size. Same data, same fingerprint.
pub fn fingerprint(
    down_type: DownType,
    project_name: &str,
    entries: &[(String, String, u64, String)],
) -> String {
    let mut h = sha2::Sha256::new();
    h.update(down_type.as_str());
    h.update([0]);
    h.update(project_name);
    for (path, key, size, hash) in entries {
        h.update([0]);
        h.update(path);
        h.update([0]);
        h.update(key);
        h.update([0]);
        h.update(size.to_be_bytes());
        h.update(hash);
    }
    hex::encode(h.finalize())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum DownloadEvent {
    DownloadRequested {
        task_id: String,
        project_id: String,
        project_name: String,
        owner: String,
        down_type: DownType,
        fingerprint: String,
        /// Object keys of the zip and of the worker's spec.
        zip_key: String,
        spec_key: String,
        files: u64,
        bytes: u64,
        at: i64,
    },
    DownloadFinished {
        size: u64,
        at: i64,
    },
    DownloadFailed {
        reason: String,
        at: i64,
    },
}

impl crate::aggregate::DomainEvent for DownloadEvent {
    const STREAM_TYPE: &'static str = STREAM_TYPE;

    fn event_type(&self) -> &'static str {
        match self {
            DownloadEvent::DownloadRequested { .. } => "DownloadRequested",
            DownloadEvent::DownloadFinished { .. } => "DownloadFinished",
            DownloadEvent::DownloadFailed { .. } => "DownloadFailed",
        }
    }
}

/// The folded state of one download task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub task_id: String,
    pub project_id: String,
    pub owner: String,
    pub zip_key: String,
    pub spec_key: String,
    pub status: DownloadStatus,
}

impl crate::aggregate::Aggregate for Download {
    type Event = DownloadEvent;

    fn fold(_: &str, events: &[DownloadEvent]) -> Option<Download> {
        Download::fold(events)
    }
}

impl Download {
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a DownloadEvent>) -> Option<Download> {
        let mut iter = events.into_iter();
        let mut d = match iter.next()? {
            DownloadEvent::DownloadRequested {
                task_id,
                project_id,
                owner,
                zip_key,
                spec_key,
                ..
            } => Download {
                task_id: task_id.clone(),
                project_id: project_id.clone(),
                owner: owner.clone(),
                zip_key: zip_key.clone(),
                spec_key: spec_key.clone(),
                status: DownloadStatus::Running,
            },
            _ => return None,
        };
        for e in iter {
            match e {
                DownloadEvent::DownloadRequested { .. } => {}
                DownloadEvent::DownloadFinished { .. } => d.status = DownloadStatus::Finish,
                DownloadEvent::DownloadFailed { .. } => d.status = DownloadStatus::Error,
            }
        }
        Some(d)
    }

    /// Records a worker's report; a task that has ended records nothing (a
    /// redelivered report is harmless).
    pub fn record(&self, result: &CompressResult, now: i64) -> Vec<DownloadEvent> {
        if self.status != DownloadStatus::Running {
            return Vec::new();
        }
        match (&result.error, result.size) {
            (Some(reason), _) => vec![DownloadEvent::DownloadFailed {
                reason: reason.clone(),
                at: now,
            }],
            (None, Some(size)) => vec![DownloadEvent::DownloadFinished { size, at: now }],
            (None, None) => vec![DownloadEvent::DownloadFailed {
                reason: "the worker reported neither a zip nor an error".into(),
                at: now,
            }],
        }
    }
}

/// The zip's file name: `<project_name>_<down_type>_<task_id>.zip`.
pub fn zip_name(project_name: &str, down_type: DownType, task_id: &str) -> String {
    format!("{project_name}_{}_{task_id}.zip", down_type.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested() -> DownloadEvent {
        DownloadEvent::DownloadRequested {
            task_id: "t".into(),
            project_id: "p".into(),
            project_name: "n".into(),
            owner: "o".into(),
            down_type: DownType::All,
            fingerprint: "f".into(),
            zip_key: "z".into(),
            spec_key: "s".into(),
            files: 1,
            bytes: 1,
            at: 0,
        }
    }

    #[test]
    fn a_report_ends_a_running_task_once() {
        let d = Download::fold(&[requested()]).unwrap();
        let ok = CompressResult {
            task_id: "t".into(),
            size: Some(10),
            error: None,
        };
        let events = d.record(&ok, 1);
        assert!(matches!(
            events[0],
            DownloadEvent::DownloadFinished { size: 10, .. }
        ));
        let done = Download::fold(&[requested(), events[0].clone()]).unwrap();
        assert_eq!(done.status, DownloadStatus::Finish);
        assert!(
            done.record(&ok, 2).is_empty(),
            "a repeated report records nothing"
        );
        let failed = d.record(
            &CompressResult {
                task_id: "t".into(),
                size: None,
                error: Some("gone".into()),
            },
            1,
        );
        assert!(
            matches!(&failed[0], DownloadEvent::DownloadFailed { reason, .. } if reason == "gone")
        );
    }

    #[test]
    fn the_fingerprint_changes_with_the_data() {
        let a = vec![(
            "ORIGINAL/a.jpg".to_owned(),
            "k/a.jpg".to_owned(),
            3,
            "h".to_owned(),
        )];
        let mut b = a.clone();
        b[0].2 = 4;
        assert_eq!(
            fingerprint(DownType::All, "p", &a),
            fingerprint(DownType::All, "p", &a)
        );
        assert_ne!(
            fingerprint(DownType::All, "p", &a),
            fingerprint(DownType::All, "p", &b)
        );
        assert_ne!(
            fingerprint(DownType::All, "p", &a),
            fingerprint(DownType::Original, "p", &a)
        );
        assert_ne!(
            fingerprint(DownType::All, "p", &a),
            fingerprint(DownType::All, "q", &a)
        );
        assert!(DownType::parse("all").is_err());
        assert_eq!(
            DownType::parse("AUGMENT").unwrap().kinds(),
            &[DataKind::Augment]
        );
    }
}
