-- Refund requests, idempotent on (order_id, refund_id).
CREATE TABLE refunds (
    order_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    refund_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    request_hash BINARY(32) NOT NULL,
    event_id CHAR(36) CHARACTER SET ascii NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (order_id, refund_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
