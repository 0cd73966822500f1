-- The commission ledger: append-only deltas. The unique key makes it impossible
-- for one event to write two entries for one (beneficiary, kind).
CREATE TABLE ledger_entries (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    affiliate_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    order_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    event_id CHAR(36) CHARACTER SET ascii NOT NULL,
    level TINYINT UNSIGNED NOT NULL,
    kind VARCHAR(16) CHARACTER SET ascii NOT NULL,
    amount DECIMAL(28,4) NOT NULL,
    status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    rule_version BIGINT UNSIGNED NOT NULL,
    created_at DATETIME(6) NOT NULL,
    UNIQUE KEY uq_ledger_event_beneficiary_kind (event_id, affiliate_id, kind),
    KEY ix_ledger_affiliate (affiliate_id, id),
    KEY ix_ledger_order (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
