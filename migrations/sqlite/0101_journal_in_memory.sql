-- The embedded journal moved into the process's memory: the file is the
-- record, and its open events are journaled again at every start. Entries
-- left here by an earlier version belong to open events, which that start
-- journals anyway.
DROP TABLE journal_entries;
DROP TABLE journal_consumers;
DROP TABLE journal_epoch;
