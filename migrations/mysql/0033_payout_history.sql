-- An affiliate's payout history (GET /v1/affiliates/{id}/payouts): its
-- items newest batch first, by index.
CREATE INDEX ix_payout_items_affiliate ON payout_items (affiliate_id, payout_id);
