//! The `Project` aggregate: a named dataset owned by one user.

pub mod data;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

pub const STREAM_TYPE: &str = "project";

/// Limits of the original service, configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectLimits {
    pub max_name_chars: usize,
    pub max_description_chars: usize,
    pub max_projects_per_user: usize,
    pub max_originals_per_project: u64,
    /// Largest uploaded image, in bytes.
    pub max_upload_bytes: u64,
    /// Most items in one `upload_update` / `delete_images` / `list_data` page.
    pub max_batch: usize,
}

impl Default for ProjectLimits {
    fn default() -> Self {
        ProjectLimits {
            max_name_chars: 75,
            max_description_chars: 300,
            max_projects_per_user: 5,
            max_originals_per_project: 1000,
            max_upload_bytes: 5 * 1024 * 1024,
            max_batch: 500,
        }
    }
}

/// A project name: 1–75 characters of letters, digits, space, `_`, `-` and
/// `.` (it becomes part of ids and storage keys), not `.` or `..` alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(raw: &str, limits: &ProjectLimits) -> Result<ProjectName, DomainError> {
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 || n > limits.max_name_chars {
            return Err(DomainError::Invalid(format!(
                "project_name must be 1-{} characters",
                limits.max_name_chars
            )));
        }
        let ok = s
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'));
        if !ok || s == "." || s == ".." {
            return Err(DomainError::Invalid(
                "project_name may hold letters, digits, space, _ - and . only".into(),
            ));
        }
        Ok(ProjectName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness per owner uses.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// Checks a description against the limit.
pub fn parse_description(raw: &str, limits: &ProjectLimits) -> Result<String, DomainError> {
    if raw.chars().count() > limits.max_description_chars {
        return Err(DomainError::Invalid(format!(
            "project_info must be at most {} characters",
            limits.max_description_chars
        )));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(DomainError::Invalid(
            "project_info may not hold control characters".into(),
        ));
    }
    Ok(raw.to_owned())
}

/// A project as its owner asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewProject<'a> {
    /// The owner's user id and storage identity (`<region>:<uuid>`).
    pub owner: &'a str,
    pub identity_id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub is_sample: bool,
}

/// Decides a new project: a valid name and description, room under the
/// owner's project limit (`owned`: how many projects they have now), the id
/// `<name>_<id_hex>` (`id_hex`: 32 random hex digits) and the storage prefix
/// `<bucket>/<identity_id>/<project_id>`.
pub fn create(
    new: &NewProject<'_>,
    owned: usize,
    bucket: &str,
    id_hex: &str,
    limits: &ProjectLimits,
    now: i64,
) -> Result<ProjectEvent, DomainError> {
    let name = ProjectName::parse(new.name, limits)?;
    let description = parse_description(new.description, limits)?;
    if owned >= limits.max_projects_per_user {
        return Err(DomainError::LimitExceeded(format!(
            "A user may have at most {} projects.",
            limits.max_projects_per_user
        )));
    }
    let project_id = format!("{}_{id_hex}", name.as_str());
    Ok(ProjectEvent::ProjectCreated {
        s3_prefix: format!("{bucket}/{}/{project_id}", new.identity_id),
        project_id,
        owner: new.owner.to_owned(),
        identity_id: new.identity_id.to_owned(),
        name,
        description,
        is_sample: new.is_sample,
        at: now,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum ProjectEvent {
    ProjectCreated {
        project_id: String,
        owner: String,
        identity_id: String,
        name: ProjectName,
        description: String,
        is_sample: bool,
        s3_prefix: String,
        at: i64,
    },
    ProjectRenamed {
        name: ProjectName,
        at: i64,
    },
    ProjectDescribed {
        description: String,
        at: i64,
    },
    ProjectDeleted {
        at: i64,
    },
}

impl crate::aggregate::DomainEvent for ProjectEvent {
    const STREAM_TYPE: &'static str = STREAM_TYPE;

    fn event_type(&self) -> &'static str {
        match self {
            ProjectEvent::ProjectCreated { .. } => "ProjectCreated",
            ProjectEvent::ProjectRenamed { .. } => "ProjectRenamed",
            ProjectEvent::ProjectDescribed { .. } => "ProjectDescribed",
            ProjectEvent::ProjectDeleted { .. } => "ProjectDeleted",
        }
    }
}

/// The folded state of one project.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub project_id: String,
    pub owner: String,
    pub identity_id: String,
    pub name: ProjectName,
    pub description: String,
    pub is_sample: bool,
    pub s3_prefix: String,
    pub deleted: bool,
}

impl crate::aggregate::Aggregate for Project {
    type Event = ProjectEvent;

    fn fold(_: &str, events: &[ProjectEvent]) -> Option<Project> {
        Project::fold(events)
    }
}

impl Project {
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a ProjectEvent>) -> Option<Project> {
        let mut iter = events.into_iter();
        let mut p = match iter.next()? {
            ProjectEvent::ProjectCreated {
                project_id,
                owner,
                identity_id,
                name,
                description,
                is_sample,
                s3_prefix,
                ..
            } => Project {
                project_id: project_id.clone(),
                owner: owner.clone(),
                identity_id: identity_id.clone(),
                name: name.clone(),
                description: description.clone(),
                is_sample: *is_sample,
                s3_prefix: s3_prefix.clone(),
                deleted: false,
            },
            _ => return None,
        };
        for e in iter {
            match e {
                ProjectEvent::ProjectCreated { .. } => {}
                ProjectEvent::ProjectRenamed { name, .. } => p.name = name.clone(),
                ProjectEvent::ProjectDescribed { description, .. } => {
                    p.description = description.clone()
                }
                ProjectEvent::ProjectDeleted { .. } => p.deleted = true,
            }
        }
        Some(p)
    }

    /// Renames and/or re-describes; empty inputs change nothing.
    pub fn update(
        &self,
        new_name: Option<ProjectName>,
        new_description: Option<String>,
        now: i64,
    ) -> Result<Vec<ProjectEvent>, DomainError> {
        if self.deleted {
            return Err(DomainError::NotFound("project not found".into()));
        }
        let mut events = Vec::new();
        if let Some(name) = new_name.filter(|n| *n != self.name) {
            events.push(ProjectEvent::ProjectRenamed { name, at: now });
        }
        if let Some(d) = new_description.filter(|d| *d != self.description) {
            events.push(ProjectEvent::ProjectDescribed {
                description: d,
                at: now,
            });
        }
        Ok(events)
    }

    /// Deletes, unless tasks are running (`running` is how many).
    pub fn delete(&self, running: usize, now: i64) -> Result<Vec<ProjectEvent>, DomainError> {
        if self.deleted {
            return Err(DomainError::NotFound("project not found".into()));
        }
        if running > 0 {
            return Err(DomainError::Conflict(format!(
                "There are {running} tasks are running. Please stop all tasks before deleting the project!"
            )));
        }
        Ok(vec![ProjectEvent::ProjectDeleted { at: now }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: NewProject<'static> = NewProject {
        owner: "u1",
        identity_id: "us-east-2:abc",
        name: "cats",
        description: "",
        is_sample: false,
    };

    #[test]
    fn given_room_when_a_project_is_created_then_its_id_and_prefix_follow_the_name() {
        let l = ProjectLimits::default();
        let hex = "0123456789abcdef0123456789abcdef";
        let ProjectEvent::ProjectCreated {
            project_id,
            s3_prefix,
            owner,
            ..
        } = create(&NEW, 4, "tessera", hex, &l, 7).unwrap()
        else {
            panic!("not a creation")
        };
        assert_eq!(project_id, format!("cats_{hex}"));
        assert_eq!(s3_prefix, format!("tessera/us-east-2:abc/cats_{hex}"));
        assert_eq!(owner, "u1");
    }

    #[test]
    fn given_the_limit_of_projects_when_another_is_created_then_it_is_refused() {
        let l = ProjectLimits::default();
        let refused = create(&NEW, 5, "tessera", "00", &l, 7);
        assert!(matches!(refused, Err(DomainError::LimitExceeded(_))));
        let bad_name = NewProject {
            name: "../x",
            ..NEW
        };
        assert!(matches!(
            create(&bad_name, 0, "tessera", "00", &l, 7),
            Err(DomainError::Invalid(_))
        ));
    }

    #[test]
    fn names() {
        let l = ProjectLimits::default();
        assert!(ProjectName::parse("project_A", &l).is_ok());
        assert!(ProjectName::parse("", &l).is_err());
        assert!(ProjectName::parse(&"a".repeat(76), &l).is_err());
        assert!(ProjectName::parse("../etc", &l).is_err());
        assert!(ProjectName::parse("a/b", &l).is_err());
        assert!(ProjectName::parse("..", &l).is_err());
        assert!(parse_description(&"x".repeat(301), &l).is_err());
    }
}
