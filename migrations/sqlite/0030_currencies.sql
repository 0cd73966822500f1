-- Orders in other currencies than the program's (see migrations/mysql/0030_currencies.sql).
ALTER TABLE orders ADD COLUMN fx_rate TEXT NULL;
ALTER TABLE orders ADD COLUMN fx_source TEXT NULL;
ALTER TABLE orders ADD COLUMN fx_as_of TEXT NULL;

CREATE TABLE fx_rates (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    base TEXT NOT NULL,
    as_of TEXT NOT NULL,
    rates TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX ix_fx_rates_base_as_of ON fx_rates (base, as_of, id);
