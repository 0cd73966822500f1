-- Reports over time (GET /admin/reports/*), maintained by the transactions
-- that move the money, never computed from the ledger.
-- What was booked per quarter-hour of UTC time (every time zone's days are
-- whole quarter-hours), in shards so that concurrent event transactions do
-- not queue on one row; a report sums a window's rows.
CREATE TABLE report_buckets (
    bucket_start DATETIME(6) NOT NULL,
    shard SMALLINT UNSIGNED NOT NULL,
    orders BIGINT NOT NULL DEFAULT 0,
    eligible_sales DECIMAL(28,4) NOT NULL DEFAULT 0,
    commission DECIMAL(28,4) NOT NULL DEFAULT 0,
    tier_bonus DECIMAL(28,4) NOT NULL DEFAULT 0,
    milestone_bonus DECIMAL(28,4) NOT NULL DEFAULT 0,
    reversals DECIMAL(28,4) NOT NULL DEFAULT 0,
    adjustments DECIMAL(28,4) NOT NULL DEFAULT 0,
    points_earned BIGINT NOT NULL DEFAULT 0,
    points_spent BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket_start, shard)
) ENGINE=InnoDB;

-- Per affiliate and day of the program's time zone: the orders it referred
-- (as direct affiliate), their eligible sales, and the net commission it
-- earned at every level.
CREATE TABLE report_affiliate_days (
    day_start DATETIME(6) NOT NULL,
    affiliate_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    orders BIGINT NOT NULL DEFAULT 0,
    sales DECIMAL(28,4) NOT NULL DEFAULT 0,
    commission DECIMAL(28,4) NOT NULL DEFAULT 0,
    PRIMARY KEY (day_start, affiliate_id)
) ENGINE=InnoDB;
