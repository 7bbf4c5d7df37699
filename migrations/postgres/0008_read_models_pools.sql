-- Read model `pools` (inline): worker pools and who is in which.
-- `capacity` -1 means no limit (the default pool); `running` is 1 or 0.
CREATE TABLE worker_pools (
    name        TEXT   PRIMARY KEY,
    capacity    BIGINT NOT NULL,
    running     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
-- One pool per user, for good: a second assignment of the same user (even
-- to another pool, at the same moment) violates the primary key.
CREATE TABLE pool_members (
    user_id  TEXT   PRIMARY KEY,
    pool         TEXT   NOT NULL,
    event_id     TEXT   NOT NULL,
    assigned_at  BIGINT NOT NULL
);
CREATE INDEX pool_members_by_pool ON pool_members (pool);
