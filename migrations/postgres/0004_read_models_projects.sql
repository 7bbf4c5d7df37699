-- Read model `projects` (inline): each user's projects, with names unique per
-- owner (case-insensitively) under concurrency; a deleted project's row goes,
-- freeing its name.
CREATE TABLE projects (
    project_id   TEXT   PRIMARY KEY,
    owner        TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    name_key     TEXT   NOT NULL,
    description  TEXT   NOT NULL,
    identity_id  TEXT   NOT NULL,
    s3_prefix    TEXT   NOT NULL,
    is_sample    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    CONSTRAINT projects_owner_name UNIQUE (owner, name_key)
);
CREATE INDEX projects_by_owner ON projects (owner, created_at);
