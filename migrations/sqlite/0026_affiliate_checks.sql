-- Each affiliate's checked ledger total (see
-- migrations/mysql/0026_affiliate_checks.sql).
CREATE TABLE affiliate_checks (
    affiliate_id TEXT NOT NULL PRIMARY KEY,
    ledger_mark INTEGER NOT NULL,
    total TEXT NOT NULL
) STRICT;
