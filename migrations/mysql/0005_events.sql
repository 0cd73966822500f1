-- The durable event log: MySQL is the record, the Redis journal only dispatches.
-- next_attempt_at: when recovery may journal the event again (lease or retry backoff).
CREATE TABLE events (
    id CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    type VARCHAR(32) CHARACTER SET ascii NOT NULL,
    order_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    partition_key VARCHAR(80) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    attempts INT UNSIGNED NOT NULL DEFAULT 0,
    last_error TEXT NULL,
    payload LONGTEXT NOT NULL,
    next_attempt_at DATETIME(6) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    applied_at DATETIME(6) NULL,
    KEY ix_events_status_next (status, next_attempt_at),
    KEY ix_events_order (order_id, created_at),
    KEY ix_events_created (created_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
