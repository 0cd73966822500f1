-- Reconcile checks each payout item against the Σ of its entries: with the
-- affiliate in the payout's index that is one short range a payout item
-- (the entries of one affiliate in one batch), where the old index gave
-- either the whole batch or the affiliate's whole ledger (at 10 M orders
-- the full sweep's payout check ran for over 6 minutes and did not finish).
-- It replaces ix_ledger_payout (same leading column): no index is added to
-- the ledger's writes.
ALTER TABLE ledger_entries
    DROP KEY ix_ledger_payout,
    ADD KEY ix_ledger_payout (payout_id, affiliate_id);
