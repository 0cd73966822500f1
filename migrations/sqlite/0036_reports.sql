-- Reports over time (GET /admin/reports/*), maintained by the transactions
-- that move the money, never computed from the ledger.
-- What was booked per quarter-hour of UTC time (every time zone's days are
-- whole quarter-hours), in shards (as on MySQL); a report sums a window's rows.
-- Money is exact decimal TEXT, added in Rust.
CREATE TABLE report_buckets (
    bucket_start TEXT NOT NULL,
    shard INTEGER NOT NULL,
    orders INTEGER NOT NULL DEFAULT 0,
    eligible_sales TEXT NOT NULL DEFAULT '0',
    commission TEXT NOT NULL DEFAULT '0',
    tier_bonus TEXT NOT NULL DEFAULT '0',
    milestone_bonus TEXT NOT NULL DEFAULT '0',
    reversals TEXT NOT NULL DEFAULT '0',
    adjustments TEXT NOT NULL DEFAULT '0',
    points_earned INTEGER NOT NULL DEFAULT 0,
    points_spent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket_start, shard)
) STRICT;

-- Per affiliate and day of the program's time zone: the orders it referred
-- (as direct affiliate), their eligible sales, and the net commission it
-- earned at every level.
CREATE TABLE report_affiliate_days (
    day_start TEXT NOT NULL,
    affiliate_id TEXT NOT NULL,
    orders INTEGER NOT NULL DEFAULT 0,
    sales TEXT NOT NULL DEFAULT '0',
    commission TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (day_start, affiliate_id)
) STRICT;
