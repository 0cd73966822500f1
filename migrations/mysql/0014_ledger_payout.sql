-- The batch an approved entry was paid in; an entry has at most one.
ALTER TABLE ledger_entries
    ADD COLUMN payout_id BIGINT UNSIGNED NULL,
    ADD KEY ix_ledger_unbatched (status, payout_id, affiliate_id),
    ADD KEY ix_ledger_payout (payout_id);
