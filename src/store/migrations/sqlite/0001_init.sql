-- The append-only event log: one stream per user, gapless sequences from 1.
CREATE TABLE events (
    aggregate_id   TEXT    NOT NULL,
    sequence       INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    created_at     INTEGER NOT NULL, -- unix milliseconds
    resource_owner TEXT    NOT NULL,
    PRIMARY KEY (aggregate_id, sequence)
) WITHOUT ROWID;

-- The projection Get reads; `state` holds the folded state the command rules need.
CREATE TABLE phones (
    user_id        TEXT    PRIMARY KEY,
    resource_owner TEXT    NOT NULL,
    phone          TEXT,
    verified       INTEGER NOT NULL,
    sequence       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    changed_at     INTEGER NOT NULL,
    state          TEXT    NOT NULL
) WITHOUT ROWID;

-- SMS waiting for delivery. `payload` is AES-GCM ciphertext, wiped once the message is final.
CREATE TABLE sms_outbox (
    id               TEXT    PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    resource_owner   TEXT    NOT NULL,
    code_sequence    INTEGER NOT NULL,
    recipient_masked TEXT    NOT NULL,
    payload          BLOB,
    status           TEXT    NOT NULL, -- pending | delivered | dropped | parked
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX sms_outbox_due ON sms_outbox (status, next_attempt_at);
