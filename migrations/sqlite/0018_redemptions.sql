-- Spending points (docs/RULES.md "Spending points"). A buyer's wallet
-- entries (redemption holds, their release, expiry) are reward entries with
-- no order: order_id '' (never a valid order id), the redemption in
-- redemption_id. An earned entry carries its lot's expiry.
ALTER TABLE reward_entries ADD COLUMN redemption_id TEXT NULL;
ALTER TABLE reward_entries ADD COLUMN expires_at TEXT NULL;
-- expire_due_at: the durable due time of the buyer's next expiring points.
ALTER TABLE buyers ADD COLUMN expire_due_at TEXT NULL;
CREATE INDEX ix_buyers_expire_due ON buyers (expire_due_at);
-- One hold per (buyer, redemption id): status held -> captured | released | expired.
-- value: points x points_value of the program in force at the hold, floored
-- to its scale (decimal text, like all money here).
CREATE TABLE redemptions (
    buyer_id TEXT NOT NULL,
    id TEXT NOT NULL,
    points INTEGER NOT NULL,
    order_id TEXT NULL,
    status TEXT NOT NULL,
    value TEXT NOT NULL,
    program_version INTEGER NOT NULL,
    hold_until TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (buyer_id, id)
) STRICT;
CREATE INDEX ix_redemptions_due ON redemptions (status, hold_until);
