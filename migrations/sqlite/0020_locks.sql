-- Named locks (see migrations/mysql/0020_locks.sql). The single writer is
-- already the lock on SQLite; the rows exist so the same statements run.
CREATE TABLE locks (
    name TEXT NOT NULL PRIMARY KEY
) STRICT;
INSERT INTO locks (name) VALUES ('tree');
