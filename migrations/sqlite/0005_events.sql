-- The durable event log: the database is the record, the journal only dispatches.
-- next_attempt_at: when recovery may journal the event again (lease or retry backoff).
CREATE TABLE events (
    id TEXT NOT NULL PRIMARY KEY,
    type TEXT NOT NULL,
    order_id TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NULL,
    payload TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    applied_at TEXT NULL
) STRICT;
CREATE INDEX ix_events_status_next ON events (status, next_attempt_at);
CREATE INDEX ix_events_order ON events (order_id, created_at);
CREATE INDEX ix_events_created ON events (created_at, id);
