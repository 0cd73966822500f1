-- Outbound webhooks (see migrations/mysql/0027_webhooks.sql).
CREATE TABLE webhook_endpoints (
    id TEXT NOT NULL PRIMARY KEY,
    url TEXT NOT NULL,
    event_types TEXT NOT NULL,
    description TEXT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT NULL,
    previous_secret_expires_at TEXT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    disabled_reason TEXT NULL,
    failing_since TEXT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE webhook_messages (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NULL,
    leased_by TEXT NULL,
    leased_until TEXT NULL,
    delivered_at TEXT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX uq_webhook_messages_message_id ON webhook_messages (message_id);
CREATE INDEX ix_webhook_messages_due ON webhook_messages (endpoint_id, status, next_attempt_at);
CREATE INDEX ix_webhook_messages_endpoint ON webhook_messages (endpoint_id, id);
CREATE INDEX ix_webhook_messages_status ON webhook_messages (status, created_at);

CREATE TABLE webhook_attempts (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    message_row INTEGER NOT NULL,
    at TEXT NOT NULL,
    status_code INTEGER NULL,
    duration_ms INTEGER NOT NULL,
    response TEXT NULL,
    error TEXT NULL
) STRICT;
CREATE INDEX ix_webhook_attempts_message ON webhook_attempts (message_row, id);
