-- Period caps and program budgets (see migrations/mysql/0031_caps.sql).
ALTER TABLE affiliates ADD COLUMN caps TEXT NULL;
ALTER TABLE orders ADD COLUMN limits TEXT NULL;
ALTER TABLE ledger_entries ADD COLUMN capped_by TEXT NULL;
ALTER TABLE ledger_entries ADD COLUMN cut TEXT NULL;
ALTER TABLE reward_entries ADD COLUMN capped_by TEXT NULL;
ALTER TABLE reward_entries ADD COLUMN cut INTEGER NULL;

CREATE TABLE cap_counters (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start TEXT NOT NULL,
    used_commission TEXT NOT NULL,
    used_points INTEGER NOT NULL,
    PRIMARY KEY (scope, subject, period, period_start)
) STRICT;
