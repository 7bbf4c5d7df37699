-- The event log: one table of facts for every aggregate.
CREATE TABLE events (
    global_position BIGSERIAL PRIMARY KEY,
    -- The writing transaction's id. Followers read in (tx_id, global_position)
    -- order and only below the oldest transaction still in flight, so an event
    -- committed late can never land behind a position a follower has passed.
    tx_id           BIGINT      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id        UUID        NOT NULL UNIQUE,
    stream_type     TEXT        NOT NULL,
    stream_id       TEXT        NOT NULL,
    stream_version  BIGINT      NOT NULL,
    event_type      TEXT        NOT NULL,
    event_version   INTEGER     NOT NULL,
    payload         JSON        NOT NULL,
    metadata        JSON        NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_follow ON events (tx_id, global_position);

-- Where each asynchronous projection stands in the log.
CREATE TABLE projection_checkpoints (
    name       TEXT   PRIMARY KEY,
    commit_id  BIGINT NOT NULL,
    position   BIGINT NOT NULL
);
