-- From which month on `affiliate_months` counts every order (one row, id 1,
-- written by komisi after its migrations): the beginning of time on a
-- database without orders; two days after the upgrade on one with orders
-- (whose months keep being counted from the orders table); moved two days
-- past a change of the program's time zone, so that no counted month mixes
-- two time zones.
CREATE TABLE affiliate_months_since (
    id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
    since DATETIME(6) NOT NULL
) ENGINE = InnoDB;
