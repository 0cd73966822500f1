-- The audit trail (GET /admin/audit): one row per audited write, written in
-- the write's own transaction. Read newest first, by actor or by action.
CREATE TABLE audit_log (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at DATETIME(6) NOT NULL,
    actor VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    request_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NULL,
    action VARCHAR(32) CHARACTER SET ascii NOT NULL,
    subject VARCHAR(160) NOT NULL,
    before_state MEDIUMTEXT NULL,
    after_state MEDIUMTEXT NULL,
    KEY ix_audit_actor (actor, id),
    KEY ix_audit_action (action, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Manual adjustments (POST /admin/affiliates/{id}/adjustments,
-- /admin/buyers/{id}/points-adjustments): idempotent by id. The money or
-- points move as a ledger or reward entry of kind `adjustment`, of the
-- adjustment's event; this row keeps the request to answer a repeat.
CREATE TABLE adjustments (
    id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL PRIMARY KEY,
    subject_kind VARCHAR(16) CHARACTER SET ascii NOT NULL,
    subject_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    amount DECIMAL(28,4) NULL,
    points BIGINT NULL,
    reason TEXT NOT NULL,
    event_id CHAR(36) CHARACTER SET ascii NOT NULL,
    actor VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    created_at DATETIME(6) NOT NULL,
    KEY ix_adjustments_subject (subject_kind, subject_id, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
