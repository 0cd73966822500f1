-- Order lines; refunded counts what refunds have taken back so far.
CREATE TABLE order_items (
    order_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    sku VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    line_no SMALLINT UNSIGNED NOT NULL,
    category VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    quantity INT UNSIGNED NOT NULL,
    refunded INT UNSIGNED NOT NULL DEFAULT 0,
    unit_price DECIMAL(16,4) NOT NULL,
    PRIMARY KEY (order_id, sku)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
