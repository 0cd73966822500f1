-- Each affiliate's volume and order count per calendar month (see
-- migrations/mysql/0023_affiliate_months.sql).
CREATE TABLE affiliate_months (
    affiliate_id TEXT NOT NULL,
    month_start TEXT NOT NULL,
    volume TEXT NOT NULL,
    orders INTEGER NOT NULL,
    PRIMARY KEY (affiliate_id, month_start)
) STRICT;
