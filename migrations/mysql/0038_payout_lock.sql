-- 'payouts' serialises making and completing payout batches (see
-- begin_payout): concurrent batch requests queue instead of deadlocking.
INSERT INTO locks (name) VALUES ('payouts');
