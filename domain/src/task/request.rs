//! The generation request: the checks of `generate/images`, the seeded
//! shuffle and split of the sources, the images to measure for reference
//! picking, and the counts. A pure decision: the project's images and run
//! counts, the task id, the seed and the time are inputs.

use std::collections::BTreeMap;

use super::{Candidate, Source, TaskEvent, TaskKind};
use crate::error::DomainError;
use crate::generation::{self, MethodKind, RawOverrides, SplitMix64};
use crate::project::data::{ClassType, DataEvent, DataKind};

/// Per-project run limits and the batch size of jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Augmentation runs per project.
    pub max_augment_runs: i64,
    /// Preprocessing runs per project.
    pub max_preprocess_runs: i64,
    /// Source images per job.
    pub batch_size: u32,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_augment_runs: 5,
            max_preprocess_runs: 5,
            batch_size: 4,
        }
    }
}

/// A generation request as the user made it.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    pub method_ids: Vec<String>,
    pub data_type: DataKind,
    pub num_aug_p_img: Option<i64>,
    /// `[train, val, test]`.
    pub data_number: Vec<i64>,
    /// Expert mode: method id → parameter → value.
    pub overrides: RawOverrides,
    /// Reference image (a file name of the project) per method.
    pub references: BTreeMap<String, String>,
}

/// Who asks, for which project, and the inputs a decision does not make
/// itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedBy<'a> {
    pub task_id: &'a str,
    pub project_id: &'a str,
    pub owner: &'a str,
    pub s3_prefix: &'a str,
    pub seed: u64,
    pub at: i64,
}

/// What the project holds that the request decides from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectImages {
    /// `(filename, s3_key)` of every item of the requested data type.
    pub images: Vec<(String, String)>,
    /// Runs the project has had, per kind.
    pub augment_runs: i64,
    pub preprocess_runs: i64,
}

/// Decides a generation request: the task's `GenerationRequested` and the
/// split it puts on the project's data items (`DataItemsSplit`).
pub fn request(
    r: &GenerationRequest,
    by: &RequestedBy<'_>,
    project: &ProjectImages,
    limits: &RunLimits,
) -> Result<(TaskEvent, DataEvent), DomainError> {
    let chosen = generation::validate_method_ids(&r.method_ids)?;
    let kind = match generation::kind_of(&chosen) {
        Some(MethodKind::Augment) => TaskKind::Augment,
        _ => TaskKind::Preprocess,
    };
    let plan = match kind {
        TaskKind::Augment => chosen.clone(),
        TaskKind::Preprocess => generation::preprocessing_plan(&chosen)?,
    };
    let overrides = generation::validate_overrides(&plan, &r.overrides)?;
    let num_aug_p_img = match (kind, r.num_aug_p_img) {
        (TaskKind::Augment, None) => 1,
        (TaskKind::Augment, Some(n)) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| DomainError::Invalid("num_aug_p_img must be 1-5".into()))?,
        (TaskKind::Preprocess, _) => 1,
    };
    let [train, val, test] = match r.data_number.as_slice() {
        [a, b, c] => [*a, *b, *c],
        _ => {
            return Err(DomainError::Invalid(
                "data_number must hold three numbers: train, val, test".into(),
            ))
        }
    };
    let counts = (
        u32::try_from(train).ok().filter(|n| *n > 0),
        u32::try_from(val).ok(),
        u32::try_from(test).ok(),
    );
    let (Some(train), Some(val), Some(test)) = counts else {
        return Err(DomainError::Invalid(
            "data_number must have a positive train count and no negative count".into(),
        ));
    };
    if r.data_type == DataKind::Augment {
        return Err(DomainError::Invalid(
            "data_type must be ORIGINAL or PREPROCESS".into(),
        ));
    }
    let available = &project.images;
    let wanted = u64::from(train) + u64::from(val) + u64::from(test);
    if usize::try_from(wanted).map_or(true, |w| w > available.len()) {
        return Err(DomainError::Invalid(format!(
            "data_number asks for {wanted} images; the project has {} {} images",
            available.len(),
            r.data_type.as_str()
        )));
    }
    let (runs, limit) = match kind {
        TaskKind::Augment => (project.augment_runs, limits.max_augment_runs),
        TaskKind::Preprocess => (project.preprocess_runs, limits.max_preprocess_runs),
    };
    if runs >= limit {
        return Err(DomainError::LimitExceeded(format!(
            "This project has used all {limit} {} runs.",
            kind.as_str().to_lowercase()
        )));
    }
    let mut references = BTreeMap::new();
    for (method, filename) in &r.references {
        if !plan.iter().any(|m| m.id == method.as_str()) {
            return Err(DomainError::Invalid(format!(
                "a reference image is given for {method}, which this request does not run"
            )));
        }
        let key = available
            .iter()
            .find(|(f, _)| f == filename)
            .map(|(_, k)| k.clone())
            .ok_or_else(|| {
                DomainError::Invalid(format!("reference image {filename} is not in the project"))
            })?;
        references.insert(method.clone(), key);
    }

    let sources = split(available, by.seed, [train, val, test]);
    // Methods without a picked reference use the project's image with the
    // median metric, which workers measure, over all the project's images
    // of this data type, before the first generation batch.
    let measure: Vec<String> = plan
        .iter()
        .filter(|m| m.uses_reference && !references.contains_key(m.id))
        .map(|m| m.id.to_owned())
        .collect();
    let candidates: Vec<Candidate> = if measure.is_empty() {
        Vec::new()
    } else {
        available
            .iter()
            .map(|(filename, s3_key)| Candidate {
                filename: filename.clone(),
                s3_key: s3_key.clone(),
            })
            .collect()
    };
    // Only TRAIN is augmented; preprocessing applies to every split.
    let to_process: Vec<u32> = (0u32..)
        .zip(&sources)
        .filter(|(_, s)| kind == TaskKind::Preprocess || s.classtype == ClassType::Train)
        .map(|(i, _)| i)
        .collect();
    let number_gen_images = u32::try_from(to_process.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(num_aug_p_img);
    let split = DataEvent::DataItemsSplit {
        project_id: by.project_id.to_owned(),
        assignments: sources
            .iter()
            .map(|s| (s.filename.clone(), s.classtype))
            .collect(),
        at: by.at,
    };
    let requested = TaskEvent::GenerationRequested {
        task_id: by.task_id.to_owned(),
        project_id: by.project_id.to_owned(),
        owner: by.owner.to_owned(),
        s3_prefix: by.s3_prefix.to_owned(),
        kind,
        methods: plan.iter().map(|m| m.id.to_owned()).collect(),
        overrides,
        references,
        measure,
        candidates,
        seed: by.seed,
        num_aug_p_img,
        data_number: [train, val, test],
        sources,
        to_process,
        batch_size: limits.batch_size,
        number_gen_images,
        at: by.at,
    };
    Ok((requested, split))
}

/// The sources of a run: the project's images shuffled with the seed
/// (Fisher–Yates on SplitMix64), the first `train + val + test` of them cut
/// into TRAIN, VAL and TEST in that order.
pub fn split(available: &[(String, String)], seed: u64, counts: [u32; 3]) -> Vec<Source> {
    let [train, val, _] = counts.map(u64::from);
    let wanted: u64 = counts.iter().copied().map(u64::from).sum();
    let mut order: Vec<usize> = (0..available.len()).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..order.len()).rev() {
        let j = i64::try_from(i)
            .map(|hi| rng.range_i64(0, hi))
            .ok()
            .and_then(|j| usize::try_from(j).ok())
            .unwrap_or(i);
        order.swap(i, j);
    }
    (0u64..)
        .zip(order)
        .take_while(|(position, _)| *position < wanted)
        .filter_map(|(position, index)| {
            let (filename, s3_key) = available.get(index)?;
            let classtype = if position < train {
                ClassType::Train
            } else if position < train + val {
                ClassType::Val
            } else {
                ClassType::Test
            };
            Some(Source {
                filename: filename.clone(),
                s3_key: s3_key.clone(),
                classtype,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BY: RequestedBy<'static> = RequestedBy {
        task_id: "t-1",
        project_id: "p_1",
        owner: "u1",
        s3_prefix: "tessera/r:u/p_1",
        seed: 42,
        at: 1000,
    };

    fn images(n: usize) -> ProjectImages {
        ProjectImages {
            images: (0..n)
                .map(|i| (format!("{i}.png"), format!("tessera/r:u/p_1/{i}.png")))
                .collect(),
            augment_runs: 0,
            preprocess_runs: 0,
        }
    }

    fn augment(data_number: Vec<i64>) -> GenerationRequest {
        GenerationRequest {
            method_ids: vec!["AUG-003".into()],
            data_type: DataKind::Original,
            num_aug_p_img: Some(2),
            data_number,
            overrides: RawOverrides::new(),
            references: BTreeMap::new(),
        }
    }

    fn requested(e: TaskEvent) -> (Vec<Source>, Vec<u32>, u32, [u32; 3]) {
        match e {
            TaskEvent::GenerationRequested {
                sources,
                to_process,
                number_gen_images,
                data_number,
                ..
            } => (sources, to_process, number_gen_images, data_number),
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn given_ten_images_when_seven_two_one_are_asked_then_only_train_is_augmented() {
        let (e, split) = request(
            &augment(vec![7, 2, 1]),
            &BY,
            &images(10),
            &RunLimits::default(),
        )
        .unwrap();
        let (sources, to_process, number, counts) = requested(e);
        assert_eq!(counts, [7, 2, 1]);
        let of = |c| sources.iter().filter(|s| s.classtype == c).count();
        assert_eq!(
            (
                of(ClassType::Train),
                of(ClassType::Val),
                of(ClassType::Test)
            ),
            (7, 2, 1)
        );
        assert_eq!(to_process.len(), 7);
        assert_eq!(number, 14, "two outputs per TRAIN image");
        let DataEvent::DataItemsSplit { assignments, .. } = split else {
            panic!("not a split")
        };
        assert_eq!(assignments.len(), 10);
    }

    #[test]
    fn given_the_same_seed_when_asked_twice_then_the_split_is_the_same() {
        let a = split(&images(50).images, 7, [30, 10, 10]);
        let b = split(&images(50).images, 7, [30, 10, 10]);
        let c = split(&images(50).images, 8, [30, 10, 10]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut names: Vec<_> = a.iter().map(|s| s.filename.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 50, "each image once");
    }

    #[test]
    fn given_preprocessing_when_requested_then_every_split_is_processed_once() {
        let mut r = augment(vec![3, 1, 1]);
        r.method_ids = vec!["PRE-001".into()];
        r.num_aug_p_img = Some(4);
        let (e, _) = request(&r, &BY, &images(5), &RunLimits::default()).unwrap();
        let (_, to_process, number, _) = requested(e);
        assert_eq!(to_process.len(), 5);
        assert_eq!(number, 5);
    }

    #[test]
    fn when_the_counts_are_malformed_then_the_request_is_refused() {
        let l = RunLimits::default();
        for bad in [vec![0, 1, 1], vec![3, -1, 0], vec![1, 1], vec![8, 2, 1]] {
            assert!(
                matches!(
                    request(&augment(bad.clone()), &BY, &images(10), &l),
                    Err(DomainError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        let mut many = augment(vec![1, 0, 0]);
        many.num_aug_p_img = Some(6);
        assert!(request(&many, &BY, &images(10), &l).is_err());
        let mut of_augment = augment(vec![1, 0, 0]);
        of_augment.data_type = DataKind::Augment;
        assert!(request(&of_augment, &BY, &images(10), &l).is_err());
    }

    #[test]
    fn given_a_used_up_run_limit_when_requested_then_it_is_refused() {
        let mut project = images(3);
        project.augment_runs = 5;
        assert!(matches!(
            request(
                &augment(vec![1, 0, 0]),
                &BY,
                &project,
                &RunLimits::default()
            ),
            Err(DomainError::LimitExceeded(_))
        ));
    }

    #[test]
    fn references_must_name_a_method_of_the_run_and_an_image_of_the_project() {
        let l = RunLimits::default();
        let mut r = augment(vec![1, 0, 0]);
        r.method_ids = vec!["PRE-002".into()];
        r.references.insert("PRE-002".into(), "1.png".into());
        let (e, _) = request(&r, &BY, &images(3), &l).unwrap();
        let TaskEvent::GenerationRequested {
            references,
            measure,
            ..
        } = e
        else {
            panic!()
        };
        assert_eq!(references["PRE-002"], "tessera/r:u/p_1/1.png");
        assert!(measure.is_empty(), "a picked reference is not measured");
        r.references.insert("PRE-002".into(), "missing.png".into());
        assert!(request(&r, &BY, &images(3), &l).is_err());
        let mut wrong_method = augment(vec![1, 0, 0]);
        wrong_method
            .references
            .insert("PRE-002".into(), "1.png".into());
        assert!(request(&wrong_method, &BY, &images(3), &l).is_err());
    }

    #[test]
    fn given_no_picked_reference_then_every_project_image_is_measured() {
        let mut r = augment(vec![1, 0, 0]);
        r.method_ids = vec!["PRE-002".into()];
        let (e, _) = request(&r, &BY, &images(6), &RunLimits::default()).unwrap();
        let TaskEvent::GenerationRequested {
            measure,
            candidates,
            ..
        } = e
        else {
            panic!()
        };
        assert_eq!(measure, vec!["PRE-002".to_owned()]);
        assert_eq!(candidates.len(), 6);
    }
}
