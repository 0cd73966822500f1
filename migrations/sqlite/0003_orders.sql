-- Orders as the storefront sent them, stamped with the program version at intake.
-- context holds what first processing resolved (upline chain, month position).
CREATE TABLE orders (
    id TEXT NOT NULL PRIMARY KEY,
    buyer_id TEXT NOT NULL,
    affiliate_id TEXT NULL,
    referral_code TEXT NULL,
    attribution_note TEXT NULL,
    currency TEXT NOT NULL,
    placed_at TEXT NOT NULL,
    status TEXT NOT NULL,
    total TEXT NOT NULL,
    original_eligible TEXT NOT NULL,
    program_version INTEGER NOT NULL,
    request_hash BLOB NOT NULL,
    commission_status TEXT NOT NULL,
    no_commission_reason TEXT NULL,
    context TEXT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX ix_orders_affiliate_placed ON orders (affiliate_id, placed_at, id);
CREATE INDEX ix_orders_buyer_placed ON orders (buyer_id, placed_at, id);
