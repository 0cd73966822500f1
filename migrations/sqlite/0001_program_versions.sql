-- Immutable commission program versions; version 1 is inserted by the application.
-- SQLite twin of migrations/mysql/0001: times are TEXT 'YYYY-MM-DDTHH:MM:SS.ffffffZ'
-- (UTC, fixed width, so string order is time order).
CREATE TABLE program_versions (
    version INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
