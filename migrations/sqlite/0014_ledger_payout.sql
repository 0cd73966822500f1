-- The batch an approved entry was paid in; an entry has at most one.
ALTER TABLE ledger_entries ADD COLUMN payout_id INTEGER NULL;
CREATE INDEX ix_ledger_unbatched ON ledger_entries (status, payout_id, affiliate_id);
CREATE INDEX ix_ledger_payout ON ledger_entries (payout_id);
