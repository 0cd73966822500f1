-- Buyer reward points ledger: append-only deltas, one per (event, buyer, kind).
CREATE TABLE reward_entries (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    buyer_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    points INTEGER NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX uq_reward_event_buyer_kind ON reward_entries (event_id, buyer_id, kind);
CREATE INDEX ix_reward_buyer ON reward_entries (buyer_id, id);
CREATE INDEX ix_reward_order ON reward_entries (order_id);
