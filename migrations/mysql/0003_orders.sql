-- Orders as the storefront sent them, stamped with the program version at intake.
-- context holds what first processing resolved (upline chain, month position).
CREATE TABLE orders (
    id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL PRIMARY KEY,
    buyer_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    affiliate_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    referral_code VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    attribution_note VARCHAR(64) CHARACTER SET ascii NULL,
    currency CHAR(3) CHARACTER SET ascii NOT NULL,
    placed_at DATETIME(6) NOT NULL,
    status VARCHAR(24) CHARACTER SET ascii NOT NULL,
    total DECIMAL(28,4) NOT NULL,
    original_eligible DECIMAL(28,4) NOT NULL,
    program_version BIGINT UNSIGNED NOT NULL,
    request_hash BINARY(32) NOT NULL,
    commission_status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    no_commission_reason VARCHAR(32) CHARACTER SET ascii NULL,
    context LONGTEXT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    KEY ix_orders_affiliate_placed (affiliate_id, placed_at, id),
    KEY ix_orders_buyer_placed (buyer_id, placed_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
