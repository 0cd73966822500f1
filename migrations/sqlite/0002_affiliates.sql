-- Affiliates and their balances (kept equal to ledger sums in the same transaction).
-- Money is TEXT holding the exact decimal (4 decimals, as DECIMAL(28,4) keeps it):
-- never REAL, and never summed in SQL (SQLite would add it as a float).
-- Ids compare with SQLite's default BINARY collation (case-sensitive).
CREATE TABLE affiliates (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    parent_id TEXT NULL,
    referral_code TEXT NOT NULL,
    buyer_id TEXT NULL,
    status TEXT NOT NULL,
    pending TEXT NOT NULL DEFAULT '0.0000',
    approved TEXT NOT NULL DEFAULT '0.0000',
    paid TEXT NOT NULL DEFAULT '0.0000',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX uq_affiliates_referral_code ON affiliates (referral_code);
CREATE INDEX ix_affiliates_parent ON affiliates (parent_id);
