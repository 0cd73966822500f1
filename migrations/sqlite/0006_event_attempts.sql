-- Every failed attempt of an event, with its error, for the admin API.
CREATE TABLE event_attempts (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    at TEXT NOT NULL,
    error TEXT NOT NULL
) STRICT;
CREATE INDEX ix_event_attempts_event ON event_attempts (event_id, id);
