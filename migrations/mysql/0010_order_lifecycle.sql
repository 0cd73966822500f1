-- Completion and approval: approve_at is the durable due time of the holding
-- period (completion + holding_days); approved_at is set when it has passed.
ALTER TABLE orders
    ADD COLUMN completed_at DATETIME(6) NULL,
    ADD COLUMN approve_at DATETIME(6) NULL,
    ADD COLUMN approved_at DATETIME(6) NULL,
    ADD KEY ix_orders_approval_due (approved_at, approve_at);
