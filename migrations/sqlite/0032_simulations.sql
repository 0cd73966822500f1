-- Backtests of a candidate program (see migrations/mysql/0032_simulations.sql).
CREATE TABLE simulations (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    owner TEXT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT NULL,
    heartbeat_at TEXT NULL,
    finished_at TEXT NULL,
    done_count INTEGER NOT NULL DEFAULT 0,
    total_count INTEGER NOT NULL DEFAULT 0,
    result TEXT NULL,
    error TEXT NULL
) STRICT;
CREATE INDEX ix_simulations_status ON simulations (status, id);
