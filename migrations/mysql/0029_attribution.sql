-- Attribution beyond the referral code (docs/RULES.md "Attribution"):
-- coupon codes, customers linked to an affiliate, signed click ids and their
-- daily counts, and the decision intake took, stored on the order.

-- A coupon code names one affiliate. `code` is stored uppercase (codes are
-- case-insensitive); `active_code` equals it until the coupon is deleted,
-- then NULL, so a code is held by one affiliate at a time and history stays.
CREATE TABLE coupons (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    code VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    affiliate_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    active_code VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    created_at DATETIME(6) NOT NULL,
    deleted_at DATETIME(6) NULL,
    UNIQUE KEY uq_coupons_active_code (active_code),
    KEY ix_coupons_affiliate (affiliate_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A buyer linked to the affiliate who brought them (program `customer_link`).
-- One row per buyer, kept after it expires: `first_touch_only` reads it.
CREATE TABLE customer_links (
    buyer_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL PRIMARY KEY,
    affiliate_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    -- "order" (the buyer's first attributed order) or "manual"
    source VARCHAR(16) CHARACTER SET ascii NOT NULL,
    order_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    reason VARCHAR(500) NULL,
    linked_at DATETIME(6) NOT NULL,
    -- NULL: for the buyer's lifetime
    expires_at DATETIME(6) NULL,
    updated_at DATETIME(6) NOT NULL,
    KEY ix_customer_links_affiliate (affiliate_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Tracked clicks per affiliate and day (UTC), added up in memory and written
-- every 5 seconds: no row per click, no IP address.
CREATE TABLE click_days (
    affiliate_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    -- midnight UTC of the day
    day DATETIME(6) NOT NULL,
    clicks BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (affiliate_id, day)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The key that signs click ids, made at first start and shared by every
-- instance on the database.
CREATE TABLE click_keys (
    id INT NOT NULL PRIMARY KEY,
    secret VARBINARY(64) NOT NULL,
    created_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The attribution decision (JSON: affiliate_id, source, detail, decided_at,
-- ignored), and the hashed e-mail the storefront sent for the self-referral rule.
ALTER TABLE orders
    ADD COLUMN attribution TEXT NULL,
    ADD COLUMN buyer_email_hash CHAR(64) CHARACTER SET ascii NULL;

ALTER TABLE affiliates
    ADD COLUMN email_hash CHAR(64) CHARACTER SET ascii NULL;
