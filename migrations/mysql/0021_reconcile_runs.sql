-- Reconcile runs (docs/RULES.md "Reconcile"): a background job checks the
-- invariants incrementally (what changed since the last runs) and in full
-- sweeps; each run is a row, so the last result is read at once, a run's
-- progress is visible while it runs, and a full sweep that stopped (a killed
-- process) is resumed after the last order it checked.
CREATE TABLE reconcile_runs (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- 'incremental' or 'full'.
    kind VARCHAR(16) CHARACTER SET ascii NOT NULL,
    -- 'running', 'done' or 'failed'.
    status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    -- The instance running it; its heartbeat shows it is alive.
    owner VARCHAR(128) CHARACTER SET ascii NOT NULL,
    started_at DATETIME(6) NOT NULL,
    heartbeat_at DATETIME(6) NOT NULL,
    finished_at DATETIME(6) NULL,
    -- The ledger and reward entries the run covers: ids above `*_from` up
    -- to `*_to` (the highest ids when it started).
    ledger_from BIGINT UNSIGNED NOT NULL,
    ledger_to BIGINT UNSIGNED NOT NULL,
    rewards_from BIGINT UNSIGNED NOT NULL,
    rewards_to BIGINT UNSIGNED NOT NULL,
    -- A full sweep's place: the last order id it checked.
    after_order VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    done_count BIGINT UNSIGNED NOT NULL DEFAULT 0,
    total_count BIGINT UNSIGNED NOT NULL DEFAULT 0,
    violations BIGINT UNSIGNED NOT NULL DEFAULT 0,
    -- The report so far (JSON: what was checked, the first violations).
    report MEDIUMTEXT NOT NULL,
    error TEXT NULL
) ENGINE = InnoDB;
INSERT INTO locks (name) VALUES ('reconcile');
