-- Every operator replay of an event, with the status it had then.
CREATE TABLE event_replays (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    at TEXT NOT NULL,
    previous_status TEXT NOT NULL
) STRICT;
CREATE INDEX ix_event_replays_event ON event_replays (event_id, id);
