-- How many events of each type were ever stored (docs/DESIGN.md "Event counts
-- without a scan"): every statement that inserts events adds to one of 16
-- shards of its type, at the end of its transaction (concurrent writers
-- rarely wait on the same row). Events are never deleted, so the counts only
-- grow; `/admin/events/counts` reads done = tally − open events (the open ones
-- through the status index). Checked by reconcile's full sweep. Filled here
-- from the events already stored.
CREATE TABLE event_tallies (
    type VARCHAR(32) CHARACTER SET ascii NOT NULL,
    shard SMALLINT UNSIGNED NOT NULL,
    n BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (type, shard)
) ENGINE = InnoDB;
INSERT INTO event_tallies (type, shard, n) SELECT type, 0, COUNT(*) FROM events GROUP BY type;
