-- Each affiliate's volume and order count per calendar month (docs/DESIGN.md
-- "Month facts in constant time"): intake adds its orders' eligible amounts in
-- the transaction that stores them, so an order's month facts (rules 4 and 5)
-- cost the month's *later* orders (those not yet applied), not its earlier
-- ones. `month_start` is the month's start in the program's time zone, in
-- UTC. Checked by reconcile's full sweep.
CREATE TABLE affiliate_months (
    affiliate_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    month_start DATETIME(6) NOT NULL,
    volume DECIMAL(28,4) NOT NULL,
    orders BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (affiliate_id, month_start)
) ENGINE = InnoDB;
