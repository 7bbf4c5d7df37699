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

impl ProjectEvent {
    pub fn event_type(&self) -> &'static str {
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
