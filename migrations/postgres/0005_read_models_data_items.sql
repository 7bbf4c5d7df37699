-- Read models `data_items` and `data_groups` (inline): the files of each
-- project, and per kind their count, total size and split. `seq` orders items
-- newest first (the uploading event's global position × 1024 + its index).
CREATE TABLE data_items (
    project_id  TEXT   NOT NULL,
    filename    TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    s3_key      TEXT   NOT NULL,
    size        BIGINT NOT NULL,
    hash        TEXT   NOT NULL,
    gen_id      TEXT   NOT NULL,
    classtype   TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (project_id, filename)
);
CREATE INDEX data_items_by_kind ON data_items (project_id, kind, seq);
CREATE INDEX data_items_by_seq ON data_items (project_id, seq);

CREATE TABLE data_groups (
    project_id  TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    count       BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    train       BIGINT NOT NULL,
    val         BIGINT NOT NULL,
    test        BIGINT NOT NULL,
    PRIMARY KEY (project_id, kind)
);
