-- Read model `tasks` (inline): every generation task with its progress.
-- `active_project` holds the project id while the task has not ended, so a
-- second unfinished task of the same project violates the unique index.
CREATE TABLE tasks (
    task_id           TEXT   PRIMARY KEY,
    project_id        TEXT   NOT NULL,
    owner             TEXT   NOT NULL,
    kind              TEXT   NOT NULL,
    status            TEXT   NOT NULL,
    number_finished   BIGINT NOT NULL,
    number_gen_images BIGINT NOT NULL,
    failures          BIGINT NOT NULL,
    error             TEXT   NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    active_project    TEXT,
    CONSTRAINT tasks_one_active UNIQUE (active_project)
);
CREATE INDEX tasks_by_project ON tasks (project_id, created_at);

-- The images a task could not process, with the reason.
CREATE TABLE task_failures (
    task_id   TEXT NOT NULL,
    filename  TEXT NOT NULL,
    reason    TEXT NOT NULL,
    PRIMARY KEY (task_id, filename)
);

-- The batches a task has recorded, with how many outputs each gave.
CREATE TABLE task_batches (
    task_id   TEXT   NOT NULL,
    batch_no  BIGINT NOT NULL,
    outputs   BIGINT NOT NULL,
    PRIMARY KEY (task_id, batch_no)
);
