-- The running run, and the last finished ones, found without a scan.
CREATE INDEX ix_reconcile_runs_status ON reconcile_runs (status, id);
