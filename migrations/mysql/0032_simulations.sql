-- Backtests of a candidate program over past orders (docs/API.md
-- "Simulations"): a queued job per row, run in the background by one
-- instance at a time (its heartbeat shows it alive), its result stored.
CREATE TABLE simulations (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- 'queued', 'running', 'done', 'failed' or 'cancelled'.
    status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    -- The request (JSON: program, since, until, compare_to).
    request MEDIUMTEXT NOT NULL,
    owner VARCHAR(128) CHARACTER SET ascii NULL,
    created_at DATETIME(6) NOT NULL,
    started_at DATETIME(6) NULL,
    heartbeat_at DATETIME(6) NULL,
    finished_at DATETIME(6) NULL,
    done_count BIGINT UNSIGNED NOT NULL DEFAULT 0,
    total_count BIGINT UNSIGNED NOT NULL DEFAULT 0,
    -- The result (JSON), once done.
    result MEDIUMTEXT NULL,
    error TEXT NULL,
    KEY ix_simulations_status (status, id)
) ENGINE = InnoDB;

-- No index on orders.placed_at for them: measured, it cost intake 9 % at
-- saturation (docs/PERFORMANCE.md); a simulation reads the orders by
-- primary key instead, once, whatever its window.
