-- Period caps and program budgets (docs/RULES.md "Caps and budgets").

-- An affiliate's own caps, replacing the program's (JSON list of
-- {period, max_commission}); NULL: the program's.
ALTER TABLE affiliates ADD COLUMN caps TEXT NULL;

-- An order's caps for its whole life (JSON, domain::caps::OrderLimits):
-- whose level-1 lines count against which caps, and the grants of cut
-- lines. Kept by a reattribution, unlike the context.
ALTER TABLE orders ADD COLUMN limits TEXT NULL;

-- A line cut by a cap or budget: which one bound, and what it could not pay.
ALTER TABLE ledger_entries
    ADD COLUMN capped_by VARCHAR(16) CHARACTER SET ascii NULL,
    ADD COLUMN cut DECIMAL(28,4) NULL;
ALTER TABLE reward_entries
    ADD COLUMN capped_by VARCHAR(16) CHARACTER SET ascii NULL,
    ADD COLUMN cut BIGINT NULL;

-- Consumption per cap and budget window: Σ of the lines it covers, moved
-- in the event transaction that writes them, under this row's lock.
-- scope 'program' (subject '') or 'affiliate'; period 'day', 'month' or
-- 'total' (period_start 1970-01-01); a window's start in UTC.
CREATE TABLE cap_counters (
    scope VARCHAR(9) CHARACTER SET ascii NOT NULL,
    subject VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    period VARCHAR(5) CHARACTER SET ascii NOT NULL,
    period_start DATETIME(6) NOT NULL,
    used_commission DECIMAL(28,4) NOT NULL,
    used_points BIGINT NOT NULL,
    PRIMARY KEY (scope, subject, period, period_start)
) ENGINE = InnoDB;
