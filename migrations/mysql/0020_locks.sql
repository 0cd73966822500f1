-- Named locks held to the end of a transaction: a transaction that locks a
-- row here (SELECT … FOR UPDATE) holds it until it commits or rolls back,
-- however it ends. 'tree' serialises changes of the affiliate tree's shape
-- (re-parenting), so that two cannot both pass the cycle check and close a
-- loop between them.
CREATE TABLE locks (
    name VARCHAR(32) CHARACTER SET ascii NOT NULL PRIMARY KEY
) ENGINE = InnoDB;
INSERT INTO locks (name) VALUES ('tree');
