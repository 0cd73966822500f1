-- Payout batches: built from approved balances, completed when paid.
CREATE TABLE payouts (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NULL,
    status TEXT NOT NULL,
    min_amount TEXT NOT NULL,
    total TEXT NOT NULL,
    created_at TEXT NOT NULL,
    completed_at TEXT NULL
) STRICT;
CREATE UNIQUE INDEX uq_payouts_idempotency_key ON payouts (idempotency_key);
