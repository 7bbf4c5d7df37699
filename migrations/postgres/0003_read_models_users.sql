-- Read model `users` (inline): credential look-ups and the uniqueness of
-- usernames and emails, written in the same transaction as the user's events.
CREATE TABLE users (
    user_id      TEXT   PRIMARY KEY,
    username     TEXT   NOT NULL,
    username_key TEXT   NOT NULL,
    email        TEXT   NOT NULL,
    email_key    TEXT   NOT NULL,
    role         TEXT   NOT NULL,
    identity_id  TEXT   NOT NULL,
    confirmed    BIGINT NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username_key),
    CONSTRAINT users_email_key UNIQUE (email_key)
);
