-- The append-only event log: one stream per user, gapless sequences from 1.
CREATE TABLE events (
    aggregate_id   TEXT   NOT NULL,
    sequence       BIGINT NOT NULL,
    event_type     TEXT   NOT NULL,
    payload        TEXT   NOT NULL,
    created_at     BIGINT NOT NULL, -- unix milliseconds
    resource_owner TEXT   NOT NULL,
    PRIMARY KEY (aggregate_id, sequence)
);

-- The projection Get reads; `state` holds the folded state the command rules need.
CREATE TABLE phones (
    user_id        TEXT   PRIMARY KEY,
    resource_owner TEXT   NOT NULL,
    phone          TEXT,
    verified       BIGINT NOT NULL,
    sequence       BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    changed_at     BIGINT NOT NULL,
    state          TEXT   NOT NULL
);

-- SMS waiting for delivery. `payload` is AES-GCM ciphertext, wiped once the message is final.
CREATE TABLE sms_outbox (
    id               TEXT   PRIMARY KEY,
    user_id          TEXT   NOT NULL,
    resource_owner   TEXT   NOT NULL,
    code_sequence    BIGINT NOT NULL,
    recipient_masked TEXT   NOT NULL,
    payload          BYTEA,
    status           TEXT   NOT NULL, -- pending | delivered | dropped | parked
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX sms_outbox_due ON sms_outbox (status, next_attempt_at);

-- Server secrets shared by every replica (unless configured): written once, by whoever is first.
CREATE TABLE server_secrets (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    signing_key TEXT NOT NULL,
    code_key    TEXT NOT NULL,
    outbox_key  TEXT NOT NULL
);
