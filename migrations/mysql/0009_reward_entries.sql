-- Buyer reward points ledger: append-only deltas, one per (event, buyer, kind).
CREATE TABLE reward_entries (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    buyer_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    order_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    event_id CHAR(36) CHARACTER SET ascii NOT NULL,
    kind VARCHAR(24) CHARACTER SET ascii NOT NULL,
    points BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    UNIQUE KEY uq_reward_event_buyer_kind (event_id, buyer_id, kind),
    KEY ix_reward_buyer (buyer_id, id),
    KEY ix_reward_order (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
