-- Outbound webhooks (docs/API.md "Webhooks"). An endpoint subscribes to
-- message types; every money change writes one message per subscribed
-- endpoint in the transaction that commits the change (the outbox), and the
-- delivery worker sends it, retries it and records each attempt.
CREATE TABLE webhook_endpoints (
    id VARCHAR(40) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    url VARCHAR(2048) NOT NULL,
    -- JSON array of patterns: "*", "commission.*", "payout.paid", ...
    event_types TEXT NOT NULL,
    description VARCHAR(500) NULL,
    -- The signing secret as stored ("plain:whsec_…" or sealed "aead:…").
    secret VARCHAR(255) CHARACTER SET ascii NOT NULL,
    -- After a rotation the old secret also signs until it expires.
    previous_secret VARCHAR(255) CHARACTER SET ascii NULL,
    previous_secret_expires_at DATETIME(6) NULL,
    disabled TINYINT NOT NULL DEFAULT 0,
    disabled_reason VARCHAR(300) NULL,
    -- First failed attempt since the last success (NULL: not failing).
    failing_since DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE webhook_messages (
    -- Also the message's `sequence`: it is written under the row lock of
    -- its subject (the affiliate's or buyer's balance row, the payout), so
    -- one subject's messages are numbered in the order they committed.
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- The `webhook-id` header: the receiver's idempotency key.
    message_id VARCHAR(40) CHARACTER SET ascii NOT NULL,
    endpoint_id VARCHAR(40) CHARACTER SET ascii NOT NULL,
    type VARCHAR(40) CHARACTER SET ascii NOT NULL,
    subject_kind VARCHAR(16) CHARACTER SET ascii NOT NULL,
    subject_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    -- The body's `data` (JSON, without `sequence`).
    data MEDIUMTEXT NOT NULL,
    -- When the change committed (the body's `timestamp`).
    created_at DATETIME(6) NOT NULL,
    -- 'pending', 'delivered' or 'failed'.
    status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    -- Attempts since the message was (re)queued, and in all.
    tries INT UNSIGNED NOT NULL DEFAULT 0,
    attempts INT UNSIGNED NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(6) NULL,
    -- A delivery in flight: the claim (instance and claim id) and until when.
    leased_by VARCHAR(200) CHARACTER SET ascii NULL,
    leased_until DATETIME(6) NULL,
    delivered_at DATETIME(6) NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY uq_webhook_messages_message_id (message_id),
    KEY ix_webhook_messages_due (endpoint_id, status, next_attempt_at),
    KEY ix_webhook_messages_endpoint (endpoint_id, id),
    KEY ix_webhook_messages_status (status, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE webhook_attempts (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_row BIGINT UNSIGNED NOT NULL,
    at DATETIME(6) NOT NULL,
    status_code SMALLINT UNSIGNED NULL,
    duration_ms INT UNSIGNED NOT NULL,
    -- The first 1 KB of the response body.
    response VARCHAR(1024) NULL,
    error VARCHAR(500) NULL,
    KEY ix_webhook_attempts_message (message_row, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
