-- The running run, and the last finished ones, found without a scan.
ALTER TABLE reconcile_runs ADD KEY ix_reconcile_runs_status (status, id);
