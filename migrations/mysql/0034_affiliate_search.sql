-- Lists and search of affiliates (GET /v1/affiliates): a name prefix and a
-- status by index, each in id order. Affiliates are written rarely; orders
-- never touch these.
CREATE INDEX ix_affiliates_name ON affiliates (name, id);
CREATE INDEX ix_affiliates_status ON affiliates (status, id);
