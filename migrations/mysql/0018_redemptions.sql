-- Spending points (docs/RULES.md "Spending points"). A buyer's wallet
-- entries (redemption holds, their release, expiry) are reward entries with
-- no order: order_id '' (never a valid order id), the redemption in
-- redemption_id. An earned entry carries its lot's expiry.
ALTER TABLE reward_entries
    ADD COLUMN redemption_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    ADD COLUMN expires_at DATETIME(6) NULL;
-- expire_due_at: the durable due time of the buyer's next expiring points.
ALTER TABLE buyers
    ADD COLUMN expire_due_at DATETIME(6) NULL,
    ADD KEY ix_buyers_expire_due (expire_due_at);
-- One hold per (buyer, redemption id): status held -> captured | released | expired.
-- value: points x points_value of the program in force at the hold, floored to its scale.
CREATE TABLE redemptions (
    buyer_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    points BIGINT NOT NULL,
    order_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    value DECIMAL(28,4) NOT NULL,
    program_version BIGINT UNSIGNED NOT NULL,
    hold_until DATETIME(6) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    PRIMARY KEY (buyer_id, id),
    KEY ix_redemptions_due (status, hold_until)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
