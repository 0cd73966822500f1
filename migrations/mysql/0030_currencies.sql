-- Orders in other currencies than the program's (docs/RULES.md "Currencies").

-- The rate frozen on an order at intake: 1 unit of the order's currency =
-- fx_rate units of the program's, as a plain decimal string (exact, at most
-- 12 significant digits); NULL for an order in the program currency.
ALTER TABLE orders
    ADD COLUMN fx_rate VARCHAR(40) CHARACTER SET ascii NULL,
    -- "order" or "table"
    ADD COLUMN fx_source VARCHAR(8) CHARACTER SET ascii NULL,
    -- the rate table's as_of (source "table")
    ADD COLUMN fx_as_of DATETIME(6) NULL;

-- The operator's rate tables, every version kept. An order takes the rates
-- of the latest table (of its program currency) whose as_of is not after
-- the order's placed_at. `rates`: a JSON object, code → decimal string.
CREATE TABLE fx_rates (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    base CHAR(3) CHARACTER SET ascii NOT NULL,
    as_of DATETIME(6) NOT NULL,
    rates TEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    KEY ix_fx_rates_base_as_of (base, as_of, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
