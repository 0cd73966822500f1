-- Order lines; refunded counts what refunds have taken back so far.
CREATE TABLE order_items (
    order_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    category TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    refunded INTEGER NOT NULL DEFAULT 0,
    unit_price TEXT NOT NULL,
    PRIMARY KEY (order_id, sku)
) STRICT;
