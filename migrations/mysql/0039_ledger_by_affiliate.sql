-- The ledger clustered by affiliate (docs/DESIGN.md "The ledger is stored by
-- affiliate"). InnoDB stores a table's rows in its primary key's order; with
-- the key `id` an affiliate's entries lay scattered over the whole table, one
-- page each, so a page of its ledger (50 entries, `ix_ledger_affiliate` then
-- 50 row lookups) read up to 50 pages, most of them from disk once the table
-- outgrew the buffer pool. Keyed (affiliate_id, id), an affiliate's entries
-- are adjacent in id order: a page of its ledger, either end, is one or two
-- pages, and a new entry goes to the end of its affiliate's range, the page
-- that affiliate's last entry is on. `id` stays unique and auto-incremented
-- (uq_ledger_id); the entries' order, their ids and every statement are as
-- before. SQLite keeps its rowid `id` and `ix_ledger_affiliate`.
--
-- This rebuilds the table: on an existing ten-million-order database it
-- takes minutes (docs/PERFORMANCE.md), with writes to the ledger blocked.
ALTER TABLE ledger_entries
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (affiliate_id, id),
    ADD UNIQUE KEY uq_ledger_id (id),
    DROP KEY ix_ledger_affiliate;
