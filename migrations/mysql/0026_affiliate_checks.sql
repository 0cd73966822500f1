-- Each affiliate's checked ledger total (docs/DESIGN.md "Reconcile as a
-- background job"): Σ amount of its entries with id ≤ `ledger_mark`, as a
-- reconcile run found it equal to its stored balances. Amounts never change,
-- so an incremental run checks a touched affiliate's total balance as this
-- plus its entries above the mark (its new ones), not its whole history.
-- Written by reconcile only; a full sweep rewrites every row.
CREATE TABLE affiliate_checks (
    affiliate_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL PRIMARY KEY,
    ledger_mark BIGINT UNSIGNED NOT NULL,
    total DECIMAL(28,4) NOT NULL
) ENGINE = InnoDB;
