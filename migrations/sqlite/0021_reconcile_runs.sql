-- Reconcile runs (see migrations/mysql/0021_reconcile_runs.sql).
CREATE TABLE reconcile_runs (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    finished_at TEXT NULL,
    ledger_from INTEGER NOT NULL,
    ledger_to INTEGER NOT NULL,
    rewards_from INTEGER NOT NULL,
    rewards_to INTEGER NOT NULL,
    after_order TEXT NULL,
    done_count INTEGER NOT NULL DEFAULT 0,
    total_count INTEGER NOT NULL DEFAULT 0,
    violations INTEGER NOT NULL DEFAULT 0,
    report TEXT NOT NULL,
    error TEXT NULL
) STRICT;
INSERT INTO locks (name) VALUES ('reconcile');
