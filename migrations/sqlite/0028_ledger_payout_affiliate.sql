-- See migrations/mysql/0028_ledger_payout_affiliate.sql.
DROP INDEX ix_ledger_payout;
CREATE INDEX ix_ledger_payout ON ledger_entries (payout_id, affiliate_id);
