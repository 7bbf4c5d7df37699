-- The event log: one table of facts for every aggregate.
-- SQLite serialises writers, so positions are handed out in commit order and
-- tx_id is always 0: (tx_id, global_position) orders the same as on PostgreSQL.
CREATE TABLE events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id           INTEGER NOT NULL DEFAULT 0,
    event_id        TEXT    NOT NULL UNIQUE,
    stream_type     TEXT    NOT NULL,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    event_version   INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    -- microseconds since the Unix epoch
    recorded_at     INTEGER NOT NULL,
    CONSTRAINT events_stream_version UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_follow ON events (tx_id, global_position);

CREATE TABLE projection_checkpoints (
    name       TEXT    PRIMARY KEY,
    commit_id  INTEGER NOT NULL,
    position   INTEGER NOT NULL
);
