-- A buyer's points balance sums every reward entry the buyer ever earned:
-- BIGINT (9.2 × 10^18) could be reached by accepted input (orders below
-- 10^12 at points_rate 1), DECIMAL(28,0) cannot in practice (10^16 of the
-- largest orders). Entries stay BIGINT: one is below 10^12 + 10^9.
ALTER TABLE buyers MODIFY points DECIMAL(28,0) NOT NULL DEFAULT 0;
