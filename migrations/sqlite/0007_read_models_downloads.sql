-- Read model `downloads` (inline): every compress-download task.
-- `build_key` is `<project_id>:<fingerprint>` while the task runs or after it
-- finished, so a second build of the same selection violates the unique
-- constraint and the request gets the first task instead. A failed task
-- clears it, so the selection can be built again.
CREATE TABLE downloads (
    task_id       TEXT   PRIMARY KEY,
    project_id    TEXT   NOT NULL,
    project_name  TEXT   NOT NULL,
    owner         TEXT   NOT NULL,
    down_type     TEXT   NOT NULL,
    status        TEXT   NOT NULL,
    zip_key       TEXT   NOT NULL,
    files         BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    size          BIGINT NOT NULL,
    error         TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    build_key     TEXT,
    CONSTRAINT downloads_one_build UNIQUE (build_key)
);
CREATE INDEX downloads_by_project ON downloads (project_id, created_at);
