-- Codes sent per rule subject (a number, a region, a client address, all) per fixed window,
-- shared by every replica; rows whose window ended are pruned.
CREATE TABLE send_counters (
    counter_key  TEXT   NOT NULL,
    window_start BIGINT NOT NULL, -- unix milliseconds
    expires_at   BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (counter_key, window_start)
);
CREATE INDEX send_counters_expiry ON send_counters (expires_at);
