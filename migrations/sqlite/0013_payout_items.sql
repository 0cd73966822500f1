-- One line per affiliate of a payout batch.
CREATE TABLE payout_items (
    payout_id INTEGER NOT NULL,
    affiliate_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    PRIMARY KEY (payout_id, affiliate_id)
) STRICT;
