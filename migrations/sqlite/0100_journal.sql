-- The embedded dispatch journal (single-instance mode), in the same SQLite
-- file as the record. It is not the record: losing an entry delays its event
-- (recovery journals open events again), never loses it.

-- One row per live entry (journaled and not yet acknowledged). The id is the
-- entry id; AUTOINCREMENT so an acknowledged entry's id is never given out
-- again and a late ack of an old copy cannot remove a newer entry.
-- event_id is UNIQUE: at most one live entry per event.
-- consumer / delivered_at (unix ms): who the entry was last delivered to and
-- when; both NULL while it waits to be read.
CREATE TABLE journal_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    partition_key TEXT NOT NULL,
    order_id TEXT NOT NULL,
    consumer TEXT NULL,
    delivered_at INTEGER NULL
);

-- read: undelivered entries in id order.
CREATE INDEX ix_journal_entries_undelivered ON journal_entries (id) WHERE consumer IS NULL;
-- claim_idle: delivered entries by delivery time.
CREATE INDEX ix_journal_entries_delivered_at ON journal_entries (delivered_at) WHERE consumer IS NOT NULL;
-- claim_dead: the consumers holding entries, and each one's entries.
CREATE INDEX ix_journal_entries_consumer ON journal_entries (consumer, id) WHERE consumer IS NOT NULL;

-- Each consumer's heartbeat: alive while expires_at (unix ms) is ahead.
CREATE TABLE journal_consumers (
    name TEXT NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The journal's epoch: one row, written by the first `ensure` on this
-- database, so that call alone reports a new journal.
CREATE TABLE journal_epoch (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
