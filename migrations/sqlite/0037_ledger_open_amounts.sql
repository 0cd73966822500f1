-- An incremental reconcile checks the balances of the affiliates it touched
-- without reading their history (see the MySQL migration of the same number):
-- the amount in ix_ledger_unbatched makes an affiliate's approved entries a
-- range of the index alone.
DROP INDEX ix_ledger_unbatched;
CREATE INDEX ix_ledger_unbatched ON ledger_entries (status, payout_id, affiliate_id, amount);
