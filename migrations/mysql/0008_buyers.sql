-- Buyer reward point balances (kept equal to reward entry sums).
CREATE TABLE buyers (
    id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL PRIMARY KEY,
    points BIGINT NOT NULL DEFAULT 0,
    updated_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
