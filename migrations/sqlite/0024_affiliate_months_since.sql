-- From which month on affiliate_months counts every order (see
-- migrations/mysql/0024_affiliate_months_since.sql).
CREATE TABLE affiliate_months_since (
    id INTEGER NOT NULL PRIMARY KEY,
    since TEXT NOT NULL
) STRICT;
