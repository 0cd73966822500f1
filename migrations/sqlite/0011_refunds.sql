-- Refund requests, idempotent on (order_id, refund_id).
CREATE TABLE refunds (
    order_id TEXT NOT NULL,
    refund_id TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    event_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (order_id, refund_id)
) STRICT;
