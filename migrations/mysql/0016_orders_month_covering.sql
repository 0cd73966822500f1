-- The month facts of first processing (rules 4 and 5: the direct affiliate's
-- earlier orders this month, their count and eligible volume) read from the
-- index alone: original_eligible is written once, at intake, and never changes.
ALTER TABLE orders
    DROP KEY ix_orders_affiliate_placed,
    ADD KEY ix_orders_affiliate_placed (affiliate_id, placed_at, id, original_eligible);
