-- Payout batches: built from approved balances, completed when paid.
CREATE TABLE payouts (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    idempotency_key VARCHAR(128) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    min_amount DECIMAL(28,4) NOT NULL,
    total DECIMAL(28,4) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    completed_at DATETIME(6) NULL,
    UNIQUE KEY uq_payouts_idempotency_key (idempotency_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
