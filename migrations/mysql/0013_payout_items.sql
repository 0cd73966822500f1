-- One line per affiliate of a payout batch.
CREATE TABLE payout_items (
    payout_id BIGINT UNSIGNED NOT NULL,
    affiliate_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    amount DECIMAL(28,4) NOT NULL,
    PRIMARY KEY (payout_id, affiliate_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
