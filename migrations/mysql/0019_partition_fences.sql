-- Scale-out (docs/SCALING.md): each journal partition is read by one
-- instance at a time, the holder of its lease in Redis. Who may COMMIT for a
-- partition is decided here: its fencing token grows on every takeover (in
-- this table, under its row lock), and every event transaction checks, with
-- a shared lock on the rows of its partitions, that the tokens it holds are
-- still current. A takeover waits for the transactions holding the old token
-- and then fences them out for good.
CREATE TABLE journal_fences (
    part SMALLINT UNSIGNED NOT NULL PRIMARY KEY,
    token BIGINT UNSIGNED NOT NULL,
    owner VARCHAR(128) CHARACTER SET ascii NOT NULL,
    taken_at DATETIME(6) NOT NULL
) ENGINE = InnoDB;
-- Every token ever taken, for audits (which instance held a partition when).
CREATE TABLE journal_fence_log (
    part SMALLINT UNSIGNED NOT NULL,
    token BIGINT UNSIGNED NOT NULL,
    owner VARCHAR(128) CHARACTER SET ascii NOT NULL,
    previous_owner VARCHAR(128) CHARACTER SET ascii NULL,
    taken_at DATETIME(6) NOT NULL,
    PRIMARY KEY (part, token)
) ENGINE = InnoDB;
-- The instance that applied an event and the fencing token it held.
ALTER TABLE events
    ADD COLUMN applied_by VARCHAR(128) CHARACTER SET ascii NULL,
    ADD COLUMN applied_fence BIGINT UNSIGNED NULL;
