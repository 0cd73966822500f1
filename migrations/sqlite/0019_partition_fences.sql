-- The instance that applied an event and the fencing token it held (the
-- embedded mode is one instance: no fencing, applied_fence stays NULL; see
-- migrations/mysql/0019_partition_fences.sql).
ALTER TABLE events ADD COLUMN applied_by TEXT NULL;
ALTER TABLE events ADD COLUMN applied_fence INTEGER NULL;
