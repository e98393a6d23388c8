-- Codes sent per rule subject (a number, a region, a client address, all) per fixed window,
-- shared by every writer; rows whose window ended are pruned.
CREATE TABLE send_counters (
    counter_key  TEXT    NOT NULL,
    window_start INTEGER NOT NULL, -- unix milliseconds
    expires_at   INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (counter_key, window_start)
) WITHOUT ROWID;
CREATE INDEX send_counters_expiry ON send_counters (expires_at);
