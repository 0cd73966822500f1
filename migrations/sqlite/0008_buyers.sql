-- Buyer reward point balances (kept equal to reward entry sums).
CREATE TABLE buyers (
    id TEXT NOT NULL PRIMARY KEY,
    points INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
) STRICT;
