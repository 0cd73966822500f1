-- The audit trail (GET /admin/audit): one row per audited write, written in
-- the write's own transaction. Read newest first, by actor or by action.
CREATE TABLE audit_log (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    request_id TEXT,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    before_state TEXT,
    after_state TEXT
) STRICT;
CREATE INDEX ix_audit_actor ON audit_log (actor, id);
CREATE INDEX ix_audit_action ON audit_log (action, id);

-- Manual adjustments (POST /admin/affiliates/{id}/adjustments,
-- /admin/buyers/{id}/points-adjustments): idempotent by id. The money or
-- points move as a ledger or reward entry of kind `adjustment`, of the
-- adjustment's event; this row keeps the request to answer a repeat.
CREATE TABLE adjustments (
    id TEXT NOT NULL PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    amount TEXT,
    points INTEGER,
    reason TEXT NOT NULL,
    event_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX ix_adjustments_subject ON adjustments (subject_kind, subject_id, created_at);
