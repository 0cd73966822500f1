-- Completion and approval: approve_at is the durable due time of the holding
-- period (completion + holding_days); approved_at is set when it has passed.
ALTER TABLE orders ADD COLUMN completed_at TEXT NULL;
ALTER TABLE orders ADD COLUMN approve_at TEXT NULL;
ALTER TABLE orders ADD COLUMN approved_at TEXT NULL;
CREATE INDEX ix_orders_approval_due ON orders (approved_at, approve_at);
