-- Read model `event_counts`: how many events of each type the log holds.
-- Operators use it to see the shape of the log; it is also the reference
-- projection for rebuild and verify.
CREATE TABLE event_counts (
    stream_type     TEXT   NOT NULL,
    event_type      TEXT   NOT NULL,
    events          BIGINT NOT NULL,
    last_commit     BIGINT NOT NULL,
    last_position   BIGINT NOT NULL,
    PRIMARY KEY (stream_type, event_type)
);
