-- Attribution beyond the referral code (see migrations/mysql/0029_attribution.sql).
CREATE TABLE coupons (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL,
    affiliate_id TEXT NOT NULL,
    active_code TEXT NULL,
    created_at TEXT NOT NULL,
    deleted_at TEXT NULL
) STRICT;
CREATE UNIQUE INDEX uq_coupons_active_code ON coupons (active_code);
CREATE INDEX ix_coupons_affiliate ON coupons (affiliate_id, id);

CREATE TABLE customer_links (
    buyer_id TEXT NOT NULL PRIMARY KEY,
    affiliate_id TEXT NOT NULL,
    source TEXT NOT NULL,
    order_id TEXT NULL,
    reason TEXT NULL,
    linked_at TEXT NOT NULL,
    expires_at TEXT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX ix_customer_links_affiliate ON customer_links (affiliate_id);

CREATE TABLE click_days (
    affiliate_id TEXT NOT NULL,
    day TEXT NOT NULL,
    clicks INTEGER NOT NULL,
    PRIMARY KEY (affiliate_id, day)
) STRICT;

CREATE TABLE click_keys (
    id INTEGER NOT NULL PRIMARY KEY,
    secret BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

ALTER TABLE orders ADD COLUMN attribution TEXT NULL;
ALTER TABLE orders ADD COLUMN buyer_email_hash TEXT NULL;
ALTER TABLE affiliates ADD COLUMN email_hash TEXT NULL;
