-- The commission ledger: append-only deltas. The unique key makes it impossible
-- for one event to write two entries for one (beneficiary, kind).
CREATE TABLE ledger_entries (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    affiliate_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    level INTEGER NOT NULL,
    kind TEXT NOT NULL,
    amount TEXT NOT NULL,
    status TEXT NOT NULL,
    rule_version INTEGER NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX uq_ledger_event_beneficiary_kind ON ledger_entries (event_id, affiliate_id, kind);
CREATE INDEX ix_ledger_affiliate ON ledger_entries (affiliate_id, id);
CREATE INDEX ix_ledger_order ON ledger_entries (order_id);
