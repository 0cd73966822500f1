-- How many events of each type were ever stored (see
-- migrations/mysql/0025_event_tallies.sql).
CREATE TABLE event_tallies (
    type TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (type, shard)
) STRICT;
INSERT INTO event_tallies (type, shard, n) SELECT type, 0, COUNT(*) FROM events GROUP BY type;
