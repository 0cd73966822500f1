-- Affiliates and their balances (kept equal to ledger sums in the same transaction).
CREATE TABLE affiliates (
    id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    parent_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    referral_code VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    buyer_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    pending DECIMAL(28,4) NOT NULL DEFAULT 0,
    approved DECIMAL(28,4) NOT NULL DEFAULT 0,
    paid DECIMAL(28,4) NOT NULL DEFAULT 0,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY uq_affiliates_referral_code (referral_code),
    KEY ix_affiliates_parent (parent_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
