//! The data items of a project: the files in its storage prefix that the
//! service knows about, by kind (ORIGINAL / PREPROCESS / AUGMENT).
//!
//! A project's data items form one stream (`dataset`, id `<project_id>/data`)
//! whose decisions read the current items from the `data_items` read model
//! (kept inline, in the append's transaction) and are guarded by the stream's
//! version: two writers that read the same version cannot both append. Events
//! carry what they replaced, so the read model folds them without looking back.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::ProjectLimits;
use crate::error::DomainError;

pub const DATA_STREAM_TYPE: &str = "dataset";

/// The stream of a project's data items (`/` cannot occur in a project id).
pub fn data_stream_id(project_id: &str) -> String {
    format!("{project_id}/data")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DataKind {
    Original,
    Preprocess,
    Augment,
}

impl DataKind {
    pub const ALL: [DataKind; 3] = [DataKind::Original, DataKind::Preprocess, DataKind::Augment];

    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Original => "ORIGINAL",
            DataKind::Preprocess => "PREPROCESS",
            DataKind::Augment => "AUGMENT",
        }
    }

    pub fn parse(raw: &str) -> Result<DataKind, DomainError> {
        match raw {
            "ORIGINAL" => Ok(DataKind::Original),
            "PREPROCESS" => Ok(DataKind::Preprocess),
            "AUGMENT" => Ok(DataKind::Augment),
            other => Err(DomainError::Invalid(format!(
                "type_method must be ORIGINAL, PREPROCESS or AUGMENT, not {other:?}"
            ))),
        }
    }
}

/// The split an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ClassType {
    Train,
    Val,
    Test,
}

impl ClassType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClassType::Train => "TRAIN",
            ClassType::Val => "VAL",
            ClassType::Test => "TEST",
        }
    }

    pub fn parse(raw: &str) -> Option<ClassType> {
        match raw {
            "TRAIN" => Some(ClassType::Train),
            "VAL" => Some(ClassType::Val),
            "TEST" => Some(ClassType::Test),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataItem {
    pub filename: String,
    /// `<bucket>/<identity_id>/<project_id>/…/<filename>`.
    pub s3_key: String,
    pub size: u64,
    pub hash: String,
    pub kind: DataKind,
    #[serde(default)]
    pub gen_id: String,
    #[serde(default)]
    pub classtype: Option<ClassType>,
}

/// What an upload replaced (a file of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub size: u64,
    pub kind: DataKind,
    #[serde(default)]
    pub classtype: Option<ClassType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    #[serde(flatten)]
    pub item: DataItem,
    #[serde(default)]
    pub replaces: Option<Replaced>,
}

/// The current record of an item, as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub s3_key: String,
    pub size: u64,
    pub kind: DataKind,
    pub classtype: Option<ClassType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub filename: String,
    pub s3_key: String,
    pub size: u64,
    pub kind: DataKind,
    #[serde(default)]
    pub classtype: Option<ClassType>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum DataEvent {
    DataItemsUploaded {
        project_id: String,
        items: Vec<Uploaded>,
        at: i64,
    },
    DataItemsDeleted {
        project_id: String,
        items: Vec<Deleted>,
        at: i64,
    },
    /// A generation task split these files into TRAIN / VAL / TEST.
    DataItemsSplit {
        project_id: String,
        assignments: Vec<(String, ClassType)>,
        at: i64,
    },
}

impl crate::aggregate::DomainEvent for DataEvent {
    const STREAM_TYPE: &'static str = DATA_STREAM_TYPE;

    fn event_type(&self) -> &'static str {
        match self {
            DataEvent::DataItemsUploaded { .. } => "DataItemsUploaded",
            DataEvent::DataItemsDeleted { .. } => "DataItemsDeleted",
            DataEvent::DataItemsSplit { .. } => "DataItemsSplit",
        }
    }
}

/// A project's data items as one stream: its state is the inline
/// `data_items` read model (current as of the stream's version, since both
/// change in one transaction), so the stream is versioned, never folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dataset;

impl crate::aggregate::Aggregate for Dataset {
    type Event = DataEvent;
    const FOLDED: bool = false;

    fn fold(_: &str, _: &[DataEvent]) -> Option<Dataset> {
        Some(Dataset)
    }
}

/// A file name: 1–255 characters, no `/`, `\`, control characters, and not
/// `.` or `..`.
pub fn check_filename(name: &str) -> Result<(), DomainError> {
    let bad = name.is_empty()
        || name.chars().count() > 255
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.chars().any(char::is_control);
    if bad {
        return Err(DomainError::Invalid(format!(
            "filename {name:?} is not allowed"
        )));
    }
    Ok(())
}

/// A storage key inside the project: `<s3_prefix>/[<folder>/]<filename>` with
/// no empty, `.` or `..` segment.
pub fn check_key_in(s3_prefix: &str, s3_key: &str, filename: &str) -> Result<(), DomainError> {
    let inside = s3_key
        .strip_prefix(s3_prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| {
            rest.split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'))
                && !rest.chars().any(char::is_control)
        });
    match inside {
        Some(rest) if rest.rsplit('/').next() == Some(filename) => Ok(()),
        Some(_) => Err(DomainError::Invalid(format!(
            "s3_key {s3_key} does not end with its filename {filename}"
        ))),
        None => Err(DomainError::NotFound(format!(
            "s3_key {s3_key} is not in this project's storage prefix"
        ))),
    }
}

/// A batch of uploads that passed the checks needing no state: at most a
/// page of items, each with an allowed file name and a key inside the
/// project's prefix that ends with it, no name twice, bounded hash and
/// `gen_id`, originals within the size limit. Only [`UploadBatch::check`]
/// makes one, so [`plan_upload`] never sees an unchecked item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadBatch(Vec<DataItem>);

impl UploadBatch {
    pub fn check(
        s3_prefix: &str,
        items: Vec<DataItem>,
        limits: &ProjectLimits,
    ) -> Result<UploadBatch, DomainError> {
        if items.is_empty() {
            return Err(DomainError::Invalid("ls_object_info is empty".into()));
        }
        if items.len() > limits.max_batch {
            return Err(DomainError::Invalid(format!(
                "ls_object_info holds {} items; at most {} per request",
                items.len(),
                limits.max_batch
            )));
        }
        let mut seen = HashSet::with_capacity(items.len());
        for item in &items {
            check_filename(&item.filename)?;
            check_key_in(s3_prefix, &item.s3_key, &item.filename)?;
            if !seen.insert(item.filename.as_str()) {
                return Err(DomainError::Invalid(format!(
                    "{} appears twice in ls_object_info",
                    item.filename
                )));
            }
            if item.hash.len() > 256 {
                return Err(DomainError::Invalid(
                    "hash is longer than 256 characters".into(),
                ));
            }
            if item.gen_id.len() > 256 {
                return Err(DomainError::Invalid(
                    "gen_id is longer than 256 characters".into(),
                ));
            }
            if item.kind == DataKind::Original && item.size > limits.max_upload_bytes {
                return Err(DomainError::Invalid(format!(
                    "{} is {} bytes; uploads may be at most {} bytes",
                    item.filename, item.size, limits.max_upload_bytes
                )));
            }
        }
        Ok(UploadBatch(items))
    }

    pub fn items(&self) -> &[DataItem] {
        &self.0
    }

    /// The batch's file names, in order.
    pub fn filenames(&self) -> Vec<&str> {
        self.0.iter().map(|i| i.filename.as_str()).collect()
    }
}

/// What each upload of a checked batch records, given the current items of
/// the batch's file names (`existing`) and how many ORIGINAL items the
/// project holds now (`originals`): what it replaces, within the project's
/// limit of originals.
pub fn plan_upload(
    batch: &UploadBatch,
    existing: &HashMap<String, Existing>,
    originals: u64,
    limits: &ProjectLimits,
) -> Result<Vec<Uploaded>, DomainError> {
    let mut new_originals = originals;
    let mut planned = Vec::with_capacity(batch.0.len());
    for item in &batch.0 {
        let replaces = existing.get(&item.filename).map(|e| Replaced {
            size: e.size,
            kind: e.kind,
            classtype: e.classtype,
        });
        let was_original = replaces.is_some_and(|r| r.kind == DataKind::Original);
        if item.kind == DataKind::Original && !was_original {
            new_originals += 1;
        } else if item.kind != DataKind::Original && was_original {
            new_originals = new_originals.saturating_sub(1);
        }
        planned.push(Uploaded {
            item: item.clone(),
            replaces,
        });
    }
    if new_originals > limits.max_originals_per_project && new_originals > originals {
        return Err(DomainError::LimitExceeded(format!(
            "A project may hold at most {} original images.",
            limits.max_originals_per_project
        )));
    }
    Ok(planned)
}

/// Checks a delete request: every named file must exist (nothing is deleted
/// otherwise).
pub fn plan_delete(
    filenames: &[String],
    existing: &HashMap<String, Existing>,
    limits: &ProjectLimits,
) -> Result<Vec<Deleted>, DomainError> {
    if filenames.is_empty() {
        return Err(DomainError::Invalid("ls_object_info is empty".into()));
    }
    if filenames.len() > limits.max_batch {
        return Err(DomainError::Invalid(format!(
            "ls_object_info holds {} items; at most {} per request",
            filenames.len(),
            limits.max_batch
        )));
    }
    let mut seen = HashSet::with_capacity(filenames.len());
    let mut missing = Vec::new();
    let mut planned = Vec::with_capacity(filenames.len());
    for name in filenames {
        if !seen.insert(name.as_str()) {
            continue;
        }
        match existing.get(name) {
            Some(e) => planned.push(Deleted {
                filename: name.clone(),
                s3_key: e.s3_key.clone(),
                size: e.size,
                kind: e.kind,
                classtype: e.classtype,
            }),
            None => missing.push(name.as_str()),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(10).copied().collect();
        return Err(DomainError::NotFound(format!(
            "{} of the files are not in the project: {}",
            missing.len(),
            shown.join(", ")
        )));
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "tessera/us-east-2:u/p_1";

    fn item(name: &str) -> DataItem {
        DataItem {
            filename: name.into(),
            s3_key: format!("{P}/{name}"),
            size: 10,
            hash: "h".into(),
            kind: DataKind::Original,
            gen_id: String::new(),
            classtype: None,
        }
    }

    #[test]
    fn keys_must_stay_in_the_prefix_and_name_the_file() {
        assert!(check_key_in(P, &format!("{P}/a.png"), "a.png").is_ok());
        assert!(check_key_in(P, &format!("{P}/task/a.png"), "a.png").is_ok());
        assert!(check_key_in(P, &format!("{P}/../p_2/a.png"), "a.png").is_err());
        assert!(check_key_in(P, &format!("{P}2/a.png"), "a.png").is_err());
        assert!(check_key_in(P, "tessera/us-east-2:v/p_1/a.png", "a.png").is_err());
        assert!(check_key_in(P, &format!("{P}/b.png"), "a.png").is_err());
        assert!(check_filename("..").is_err());
        assert!(check_filename("a/b").is_err());
    }

    fn batch(items: Vec<DataItem>, limits: &ProjectLimits) -> UploadBatch {
        UploadBatch::check(P, items, limits).unwrap()
    }

    fn one_existing_original() -> HashMap<String, Existing> {
        let mut existing = HashMap::new();
        existing.insert(
            "a.png".to_owned(),
            Existing {
                s3_key: format!("{P}/a.png"),
                size: 7,
                kind: DataKind::Original,
                classtype: None,
            },
        );
        existing
    }

    #[test]
    fn given_an_existing_file_when_it_is_uploaded_again_then_the_upload_records_what_it_replaces() {
        let limits = ProjectLimits::default();
        let existing = one_existing_original();
        let planned = plan_upload(
            &batch(vec![item("a.png"), item("b.png")], &limits),
            &existing,
            1,
            &limits,
        )
        .unwrap();
        assert_eq!(planned[0].replaces.unwrap().size, 7);
        assert!(planned[1].replaces.is_none());
    }

    #[test]
    fn given_a_full_project_when_new_originals_arrive_then_the_limit_refuses_them() {
        let limits = ProjectLimits {
            max_originals_per_project: 2,
            ..Default::default()
        };
        let over = plan_upload(
            &batch(vec![item("b.png"), item("c.png")], &limits),
            &one_existing_original(),
            1,
            &limits,
        );
        assert!(matches!(over, Err(DomainError::LimitExceeded(_))));
        // Replacing an original does not count twice.
        let replace = plan_upload(
            &batch(vec![item("a.png"), item("b.png")], &limits),
            &one_existing_original(),
            1,
            &limits,
        );
        assert!(replace.is_ok());
    }

    #[test]
    fn a_batch_is_refused_whole_for_a_repeated_name_its_size_or_an_oversized_file() {
        let limits = ProjectLimits::default();
        assert!(UploadBatch::check(P, vec![item("b.png"), item("b.png")], &limits).is_err());
        assert!(UploadBatch::check(P, Vec::new(), &limits).is_err());
        let many: Vec<_> = (0..501).map(|i| item(&format!("{i}.png"))).collect();
        assert!(UploadBatch::check(P, many, &limits).is_err());
        let mut big = item("big.png");
        big.size = limits.max_upload_bytes + 1;
        assert!(UploadBatch::check(P, vec![big], &limits).is_err());
        let mut outside = item("x.png");
        outside.s3_key = "tessera/us-east-2:v/p_1/x.png".into();
        assert!(UploadBatch::check(P, vec![outside], &limits).is_err());
    }

    #[test]
    fn deletes_are_all_or_nothing() {
        let mut existing = HashMap::new();
        existing.insert(
            "a.png".to_owned(),
            Existing {
                s3_key: format!("{P}/a.png"),
                size: 7,
                kind: DataKind::Original,
                classtype: None,
            },
        );
        let l = ProjectLimits::default();
        assert_eq!(
            plan_delete(&["a.png".into()], &existing, &l).unwrap().len(),
            1
        );
        assert!(matches!(
            plan_delete(&["a.png".into(), "x.png".into()], &existing, &l),
            Err(DomainError::NotFound(_))
        ));
    }
}
