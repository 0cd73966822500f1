-- A buyer's points balance sums every reward entry the buyer ever earned:
-- INTEGER (9.2 × 10^18) could be reached by accepted input, so it is kept as
-- decimal text (up to 28 digits) and added in Rust, like money. Entries stay
-- INTEGER: one is below 10^12 + 10^9.
CREATE TABLE buyers_wide (
    id TEXT NOT NULL PRIMARY KEY,
    points TEXT NOT NULL DEFAULT '0',
    updated_at TEXT NOT NULL
) STRICT;
INSERT INTO buyers_wide (id, points, updated_at) SELECT id, CAST(points AS TEXT), updated_at FROM buyers;
DROP TABLE buyers;
ALTER TABLE buyers_wide RENAME TO buyers;
