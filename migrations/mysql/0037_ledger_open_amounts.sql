-- An incremental reconcile checks the balances of the affiliates it touched
-- without reading their history: the total from the last check's mark, paid
-- from their completed payout items, approved from their approved entries
-- that are not in a completed batch — a range of ix_ledger_unbatched per
-- affiliate. With the amount in that index the range is read from the index
-- alone (at 10 M orders a primary-key read per entry took over 2 minutes).
-- The amount never changes and the index's other columns already do, so no
-- write is added to the ledger's; only its entries are wider.
ALTER TABLE ledger_entries
    DROP KEY ix_ledger_unbatched,
    ADD KEY ix_ledger_unbatched (status, payout_id, affiliate_id, amount);
